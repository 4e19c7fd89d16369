"""What a trained classifier folder is (`ClassifierInfo`, written once by the recipe and read here), loading
it back (full model, mean-pooled head or LoRA adapter) and class probabilities: what evaluate needs."""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ...console import show_progress
from ...errors import ConfigError
from ...records import read_json_dataclass
from ...models import require_safetensors_adapter, resolve_model
from .config import ClassifierConfig
from .data import encode_texts

CLASSIFIER_INFO = "tunelab_classifier.json"


@dataclass(kw_only=True)
class ClassifierInfo:
    """tunelab_classifier.json: the base, labels and problem type, thresholds, and the data layout it read.
    Defaults are what folders written before a field existed meant."""

    base: str
    labels: tuple[str, ...]
    problem_type: str = "multi_label"
    thresholds: dict[str, float] | None = None  # per label, tuned on the eval set (multi_label)
    max_length: int
    truncation: str = "head"
    pooling: str = "model"
    lora: bool
    label_source: str | None = None
    layout: dict = field(default_factory=dict)  # ClassifierConfig.layout; {} read moderation records

    def write(self, folder: Path) -> Path:
        path = Path(folder) / CLASSIFIER_INFO
        path.write_text(json.dumps(self.as_dict(), indent=2), encoding="utf-8")
        return path

    def as_dict(self) -> dict:
        """As written: plain JSON values."""
        return {**asdict(self), "labels": list(self.labels)}

    @classmethod
    def read(cls, folder: str | Path) -> ClassifierInfo:
        path = Path(folder) / CLASSIFIER_INFO
        if not path.exists():
            raise ConfigError(f"{folder} is not a tunelab classifier folder (no {CLASSIFIER_INFO})")
        info = read_json_dataclass(cls, path, "a classifier description")
        info.labels = tuple(info.labels)
        return info

    def data_layout(self) -> ClassifierConfig:
        """The settings that read the data the classifier was trained on."""
        return ClassifierConfig(**self.layout)


def load_classifier(model_dir: str | Path):
    """A trained classifier folder (adapter or full model) -> (model, tokenizer, ClassifierInfo)."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .modeling import load_classifier_base, load_mean_pooled, match_pad_token

    model_dir = Path(model_dir)
    info = ClassifierInfo.read(model_dir)
    if info.lora:
        require_safetensors_adapter(model_dir)
        model = PeftModel.from_pretrained(load_classifier_base(resolve_model(info.base), info.labels,
                                                               pooling=info.pooling, problem_type=info.problem_type),
                                          model_dir)
    elif info.pooling == "mean":
        model = load_mean_pooled(model_dir)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    match_pad_token(model, tokenizer)  # a LoRA classifier's config is its base's, saved before the run
    model.eval()
    return model, tokenizer, info


def predict_proba(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32,
                  problem_type: str | None = None, truncation: str = "head", dtype: str = "float32") -> np.ndarray:
    """Class probabilities, one row per text, in input order (batches sorted by length): softmax for a
    single_label model, one sigmoid per label for multi_label. `problem_type` defaults to the model's.
    `dtype` bfloat16 runs the encoder under autocast (about 2x faster on CPUs with native bf16)."""
    import torch

    if problem_type is None:
        problem_type = ("single_label" if getattr(model.config, "problem_type", None) == "single_label_classification"
                        else "multi_label")
    encoded = encode_texts(tokenizer, texts, max_length, truncation)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    probs = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    device = next(model.parameters()).device
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bfloat16"
                else contextlib.nullcontext())
    with torch.no_grad(), autocast:
        for start in tqdm(range(0, len(order), batch_size), desc="classify", unit="batch",
                          disable=not show_progress()):
            idx = order[start:start + batch_size]
            enc = tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt").to(device)
            logits = model(**enc).logits.float()
            p = torch.softmax(logits, dim=-1) if problem_type == "single_label" else torch.sigmoid(logits)
            probs[idx] = p.cpu().numpy()
    return probs

"""Encoder classifiers (BERT, MiniLM, DistilBERT, ...) with the HF Trainer, full or LoRA.

Multi-label: one sigmoid per taxonomy label, BCE loss, a record with no label is all zeros.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


CLASSIFIER_INFO = "tunelab_classifier.json"


@dataclass
class ClassifierConfig:
    """Settings of the encoder-classifier task (`task: classify`)."""

    taxonomy: str = field(default="jigsaw", metadata={"help": "Label taxonomy for classify (a name in data/taxonomies or a path)."})


def encode_labels(records: list[dict], labels: tuple[str, ...]) -> np.ndarray:
    y = np.zeros((len(records), len(labels)), dtype=np.float32)
    for i, r in enumerate(records):
        for label in r["labels"]:
            y[i, labels.index(label)] = 1.0
    return y


def load_classifier_base(path: str, labels: tuple[str, ...], *, trust_remote_code: bool = False):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(labels), problem_type="multi_label_classification",
        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
        use_safetensors=True, trust_remote_code=trust_remote_code,
    )


def _dataset(records, labels, tokenizer, max_length):
    from datasets import Dataset

    y = encode_labels(records, labels)
    ds = Dataset.from_dict({"text": [r["text"] for r in records], "labels": [row.tolist() for row in y]})
    return ds.map(lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length),
                  batched=True, remove_columns=["text"])


def compute_metrics_fn(labels: tuple[str, ...]):
    def compute(eval_pred):
        from ..metrics.classification import multilabel_metrics

        logits, y_true = eval_pred
        probs = 1 / (1 + np.exp(-logits))
        m = multilabel_metrics(y_true.astype(int), probs, labels)
        return {"micro_f1": m["micro"]["f1"], "macro_f1": m["macro"]["f1"],
                "mean_roc_auc": m["mean_roc_auc"] if m["mean_roc_auc"] is not None else float("nan")}

    return compute


def build_classifier_trainer(model, tokenizer, train_records, eval_records, labels, args, max_length: int):
    from transformers import DataCollatorWithPadding, Trainer

    return Trainer(
        model=model, args=args, processing_class=tokenizer,
        train_dataset=_dataset(train_records, labels, tokenizer, max_length),
        eval_dataset=_dataset(eval_records, labels, tokenizer, max_length) if eval_records else None,
        data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics_fn(labels),
    )


def save_classifier_info(out_dir: Path, base: str, labels: tuple[str, ...], taxonomy: str, max_length: int, lora: bool):
    (Path(out_dir) / CLASSIFIER_INFO).write_text(json.dumps(
        {"base": base, "labels": list(labels), "taxonomy": taxonomy, "max_length": max_length, "lora": lora}, indent=2),
        encoding="utf-8")


def load_classifier(model_dir: str | Path):
    """A trained classifier folder (adapter or full model) -> (model, tokenizer, info)."""
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    info_path = model_dir / CLASSIFIER_INFO
    if not info_path.exists():
        from ..errors import ConfigError

        raise ConfigError(f"{model_dir} is not a tunelab classifier folder (no {CLASSIFIER_INFO})")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    labels = tuple(info["labels"])
    if info["lora"]:
        from peft import PeftModel

        from ..models import resolve_model
        model = PeftModel.from_pretrained(load_classifier_base(resolve_model(info["base"]), labels), model_dir)
    else:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model.eval()
    return model, tokenizer, info


def predict_proba(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32) -> np.ndarray:
    """Sigmoid probabilities, one row per text, in input order (batches sorted by length)."""
    import torch
    from tqdm.auto import tqdm

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    probs = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in tqdm(range(0, len(order), batch_size), desc="classify", unit="batch"):
            idx = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt").to(device)
            probs[idx] = torch.sigmoid(model(**enc).logits.float()).cpu().numpy()
    return probs


def finetune_classifier(ctx) -> dict:
    """Tune an encoder classifier on moderation records; full fine-tuning or LoRA."""
    from ..models import load_tokenizer, model_type, resolve_model
    from ..paths import resolve_input
    from ..records import read_records
    from ..taxonomy import load_taxonomy
    from .lora import lora_from_settings
    from .runner import train_and_save

    mcfg, dcfg, args, record = ctx.model, ctx.data, ctx.train, ctx.record
    base = resolve_model(mcfg.base)
    taxonomy = load_taxonomy(ctx.classifier.taxonomy)
    record.models["base"] = mcfg.base
    record.add_input("taxonomy", taxonomy.path)

    def read(paths):
        rows = []
        for p in paths:
            p = resolve_input(p)
            record.add_input(f"{p.name}", p)
            rows += [r.data for r in read_records(p, "moderation", taxonomy.labels)]
        return rows

    train = read(dcfg.data)[: dcfg.max_examples]
    evals = read(dcfg.eval_data) if dcfg.eval_data else None
    tokenizer = load_tokenizer(base, trust_remote_code=args.trust_remote_code)
    model = load_classifier_base(base, taxonomy.labels, trust_remote_code=args.trust_remote_code)
    if mcfg.use_lora:
        from peft import get_peft_model

        model = get_peft_model(model, lora_from_settings(mcfg, model_type(base), "classify", "SEQ_CLS"))
    trainer = build_classifier_trainer(model, tokenizer, train, evals, taxonomy.labels, args, args.max_length)
    for callback in ctx.callbacks:
        trainer.add_callback(callback)
    summary = {"examples": len(train), **train_and_save(trainer, ctx)}
    if not trainer.is_world_process_zero():
        return summary
    save_classifier_info(ctx.out, mcfg.base, taxonomy.labels, str(taxonomy.path), args.max_length, mcfg.use_lora)
    if evals:
        summary["eval"] = {k: v for k, v in trainer.evaluate().items() if k.startswith("eval_")}
    return summary

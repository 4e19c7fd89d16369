"""The classifier's trainer: the stock `Trainer` with a class-weighted loss and an optional balanced
sampler (as TRL's `SFTTrainer(Trainer)` changes only what it must), its tokenized datasets and the
metrics it logs during training."""

from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset
from torch.utils.data import WeightedRandomSampler
from transformers import DataCollatorWithPadding, Trainer

from ...metrics.classification import multilabel_metrics, singlelabel_metrics
from .data import LabeledTexts, encode_texts
from .imbalance import sample_weights
from .modeling import classification_loss


class ClassifierTrainer(Trainer):
    """The stock Trainer with its loss replaced by `classification_loss` (class weights) and, when
    `sample_weights` is given, its train sampler by a seeded `WeightedRandomSampler`."""

    loss_is_scaled_for_ga = False  # the loss is a per-batch mean: let the Trainer divide for accumulation

    def __init__(self, *args, problem_type: str, loss_weights=None, sample_weights=None, sampler_seed: int = 0,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.problem_type = problem_type
        self.loss_weights = None if loss_weights is None else torch.tensor(loss_weights, dtype=torch.float32)
        self.sample_weights = sample_weights
        self.sampler_seed = sampler_seed

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        weights = None if self.loss_weights is None else self.loss_weights.to(logits.device)
        loss = classification_loss(logits, labels, self.problem_type, weights, self.args.label_smoothing_factor)
        return (loss, outputs) if return_outputs else loss

    def _get_train_sampler(self, train_dataset=None):
        if self.sample_weights is None:
            return super()._get_train_sampler(train_dataset)
        generator = torch.Generator().manual_seed(self.sampler_seed)
        return WeightedRandomSampler(torch.as_tensor(self.sample_weights, dtype=torch.double),
                                     num_samples=len(self.sample_weights), replacement=True, generator=generator)


def _tokenized_dataset(data: LabeledTexts, tokenizer, max_length: int, truncation: str = "head"):
    y = data.y()
    ds = Dataset.from_dict({"text": data.texts, "labels": y.tolist()})
    return ds.map(lambda batch: dict(encode_texts(tokenizer, batch["text"], max_length, truncation)),
                  batched=True, remove_columns=["text"])


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def compute_metrics_fn(labels: tuple[str, ...], problem_type: str = "multi_label"):
    """`compute_metrics` for the Trainer: accuracy and macro-F1 (single_label); micro/macro-F1 at 0.5
    and mean ROC-AUC (multi_label; NaN when no label has both classes in the eval set)."""

    def compute(eval_pred):
        logits, y_true = eval_pred
        if problem_type == "single_label":
            m = singlelabel_metrics(y_true, softmax(logits), labels)
            return {"accuracy": m["accuracy"], "macro_f1": m["macro"]["f1"]}
        m = multilabel_metrics(y_true.astype(int), sigmoid(logits), labels)
        return {"micro_f1": m["micro"]["f1"], "macro_f1": m["macro"]["f1"],
                "mean_roc_auc": m["mean_roc_auc"] if m["mean_roc_auc"] is not None else float("nan")}

    return compute


def build_classifier_trainer(model, tokenizer, train: LabeledTexts, evals: LabeledTexts | None, args, max_length: int,
                             *, loss_weights=None, balanced_sampling: bool = False, callbacks=None,
                             truncation: str = "head"):
    seed = args.data_seed if args.data_seed is not None else args.seed
    return ClassifierTrainer(
        model=model, args=args, processing_class=tokenizer,
        train_dataset=_tokenized_dataset(train, tokenizer, max_length, truncation),
        eval_dataset=_tokenized_dataset(evals, tokenizer, max_length, truncation) if evals else None,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics_fn(train.labels, train.problem_type),
        callbacks=callbacks, problem_type=train.problem_type, loss_weights=loss_weights,
        sample_weights=sample_weights(train) if balanced_sampling else None, sampler_seed=seed,
    )

"""evaluate: scores for generated text and for classifiers.

    python evaluate/score.py --config demo_text
    python evaluate/score.py --config demo_classifier
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field


from ..errors import ConfigError, RecordError
from ..paths import STAGE_CONFIG_DIRS, resolve_input
from ..records import iter_json_objects, write_json, write_jsonl
from ..runs import RunRecord, ensure_output_dir
from .common import quiet_libraries, run_main


@dataclass
class ScoreConfig:
    task: str = field(default="text", metadata={"help": "text (BLEU, ROUGE-L, BERTScore) or classification."})
    output_dir: str = field(default="runs/evaluate", metadata={"help": "Gets scores, per-example rows and the run record."})
    predictions: str | None = field(default=None, metadata={"help": "text: inference.py's predictions.jsonl (prediction + reference per row)."})
    allow_empty_predictions: bool = field(default=False, metadata={"help": "text: score an empty prediction 0 instead of stopping."})
    bertscore_model: str = field(default="tunelab:minilm", metadata={"help": "BERTScore encoder: hub id, local path or tunelab:minilm."})
    bertscore_num_layers: int | None = field(default=6, metadata={"help": "Layer whose embeddings are compared (needed for local paths)."})
    bertscore_batch_size: int = field(default=64)
    model: str | None = field(default=None, metadata={"help": "classification: a finetune classifier folder."})
    data: str | None = field(default=None, metadata={
        "help": "classification: labeled texts in the layout the classifier was trained on (its tunelab_classifier.json): "
                "moderation records, or a CSV/TSV/JSONL table with the same columns."})
    threshold: float | None = field(default=None, metadata={
        "help": "classification, multi-label: probability at or above which a label is predicted, for every label. "
                "Default: the per-label thresholds tuned at training time, or 0.5 when none were."})
    batch_size: int = field(default=32)
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing, non-empty output_dir."})


def read_prediction_rows(path, allow_empty: bool) -> list[dict]:
    rows = []
    for line, obj in iter_json_objects(path):
        for key in ("prediction", "reference"):
            if not isinstance(obj, dict) or not isinstance(obj.get(key), str):
                raise RecordError(path, line, f"row needs a string '{key}'")
        if not obj["reference"].strip():
            raise RecordError(path, line, f"record {obj.get('id', line)}: empty reference")
        if not obj["prediction"].strip() and not allow_empty:
            raise RecordError(path, line, f"record {obj.get('id', line)}: empty prediction "
                              "(pass --allow_empty_predictions to score it 0)")
        rows.append(obj)
    if not rows:
        raise RecordError(path, None, "holds no predictions")
    return rows


def score_text(cfg: ScoreConfig, record: RunRecord, out) -> dict:
    from ..metrics.text import BERTScore, BERTScoreSettings, bleu, rouge_l
    from ..models import resolve_model

    if not cfg.predictions:
        raise ConfigError("task text needs --predictions (a predictions.jsonl from inference.py)")
    path = resolve_input(cfg.predictions)
    record.add_input("predictions", path)
    rows = read_prediction_rows(path, cfg.allow_empty_predictions)
    preds, refs = [r["prediction"] for r in rows], [r["reference"] for r in rows]
    b, r = bleu(preds, refs), rouge_l(preds, refs)
    bert_model = resolve_model(cfg.bertscore_model)
    record.models["bertscore"] = cfg.bertscore_model
    bs = BERTScore(BERTScoreSettings(bert_model, cfg.bertscore_num_layers, cfg.bertscore_batch_size))(preds, refs)
    scores = {"examples": len(rows), "empty_predictions": sum(not p.strip() for p in preds),
              "bleu": b["score"], "bleu_signature": b["signature"], "rouge_l_f1": r["score"],
              "bertscore_f1": bs["score"], "bertscore_model": cfg.bertscore_model,
              "bertscore_num_layers": cfg.bertscore_num_layers}
    write_jsonl(out / "per_example.jsonl", [
        {"id": row.get("id"), "bleu": b["per_example"][i], "rouge_l_f1": r["per_example"][i],
         "bertscore_f1": bs["per_example"][i], "prediction": row["prediction"], "reference": row["reference"]}
        for i, row in enumerate(rows)])
    record.add_output("per_example", out / "per_example.jsonl")
    return scores


def score_classification(cfg: ScoreConfig, record: RunRecord, out) -> dict:
    import numpy as np

    from ..metrics.classification import multilabel_metrics, singlelabel_metrics
    from ..training.classifier import classifier_layout, load_classifier, load_labeled_texts, predict_proba

    if not cfg.model or not cfg.data:
        raise ConfigError("task classification needs --model (a classifier folder) and --data (labeled texts)")
    model, tokenizer, info = load_classifier(resolve_input(cfg.model))
    labels, problem_type = tuple(info["labels"]), info["problem_type"]
    data_path = resolve_input(cfg.data)
    record.add_input("data", data_path)
    record.models["classifier"] = str(cfg.model)
    layout = classifier_layout(info)
    # Every row counts in a score: a bad one stops the run, naming file and line.
    data = load_labeled_texts([data_path], layout, labels=labels, problem_type=problem_type,
                              split_value=layout.eval_split_value if layout.split_column else None, bad_records="error")
    probs = predict_proba(model, tokenizer, data.texts, info["max_length"], cfg.batch_size, problem_type=problem_type)
    if problem_type == "single_label":
        metrics = singlelabel_metrics(data.y(), probs, labels)
        rows = [{"id": rid, "text": text, "label": labels[target[0]], "predicted": labels[int(probs[i].argmax())]}
                for i, (rid, text, target) in enumerate(zip(data.ids, data.texts, data.targets))]
    else:
        saved = info.get("thresholds")
        if cfg.threshold is not None:
            threshold, source = cfg.threshold, "given"
        elif saved:
            threshold, source = np.array([saved[label] for label in labels]), "tuned at training"
        else:
            threshold, source = 0.5, "default"
        metrics = multilabel_metrics(data.y().astype(int), probs, labels, threshold)
        metrics["threshold_source"] = source
        cut = np.broadcast_to(threshold, probs.shape[1:])
        rows = [{"id": rid, "text": text, "labels": [labels[j] for j in target],
                 "predicted": [label for j, label in enumerate(labels) if probs[i, j] >= cut[j]]}
                for i, (rid, text, target) in enumerate(zip(data.ids, data.texts, data.targets))]
    if data.other_split_rows:
        metrics["rows_in_other_splits"] = data.other_split_rows
    for i, row in enumerate(rows):
        row["probs"] = {label: round(float(probs[i, j]), 6) for j, label in enumerate(labels)}
    write_jsonl(out / "predictions.jsonl", rows)
    record.add_output("predictions", out / "predictions.jsonl")
    return metrics


def score(argv: Sequence[str] | None = None) -> dict:
    from ..config import parse_config

    (cfg,), config_file = parse_config(
        (ScoreConfig,), argv, configs_dir=STAGE_CONFIG_DIRS["evaluate"], prog="evaluate/score.py",
        description="Score generated text (BLEU, ROUGE-L, BERTScore) or a classifier (P/R/F1, ROC-AUC).")
    if cfg.task not in ("text", "classification"):
        raise ConfigError(f"task must be text or classification, got {cfg.task!r}")
    quiet_libraries()
    out = ensure_output_dir(cfg.output_dir, cfg.overwrite)
    record = RunRecord(out, "evaluate", [cfg], config_file)
    scores = (score_text if cfg.task == "text" else score_classification)(cfg, record, out)
    write_json(out / "scores.json", scores)
    record.add_output("scores", out / "scores.json")
    record.write()
    print(json.dumps(_headline(cfg.task, scores), indent=2))
    print(f"evaluate: scores in {out / 'scores.json'}")
    return scores


def _headline(task: str, scores: dict) -> dict:
    if task == "text":
        return {k: scores[k] for k in ("examples", "bleu", "rouge_l_f1", "bertscore_f1", "empty_predictions")}
    return {"examples": scores["examples"], **({"accuracy": scores["accuracy"]} if "accuracy" in scores else {}),
            "micro_f1": scores["micro"]["f1"], "macro_f1": scores["macro"]["f1"],
            "mean_roc_auc": scores["mean_roc_auc"],
            "per_label_f1": {k: round(v["f1"], 3) for k, v in scores["per_label"].items()}}


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(score, argv)

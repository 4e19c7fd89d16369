"""evaluate: scores for generated text and for classifiers.

    python evaluate/score.py --config demo_text
    python evaluate/score.py --config demo_classifier
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


from ..errors import ConfigError, RecordError
from ..paths import STAGE_CONFIG_DIRS, resolve_input
from ..records import iter_json_objects, write_json, write_jsonl
from ..runs import RunRecord, drop_finished_record, ensure_output_dir
from ..settings import HelpLayout
from .common import quiet_libraries, run_main


@dataclass
class ScoreConfig:
    task: str = field(default="text", metadata={"help": "text (BLEU, ROUGE-L, BERTScore) or classification."})
    output_dir: str = field(default="runs/evaluate", metadata={"help": "Gets scores, per-example rows and the run record."})
    predictions: str | None = field(default=None, metadata={"help": "text: inference.py's predictions.jsonl (prediction + reference per row)."})
    allow_empty_predictions: bool = field(default=False, metadata={
        "group": "text", "help": "text: score an empty prediction 0 instead of stopping."})
    bertscore_model: str = field(default="tunelab:minilm", metadata={
        "group": "text", "help": "BERTScore encoder: hub id, local path or tunelab:minilm."})
    bertscore_num_layers: int | None = field(default=6, metadata={"range": (1, None),
        "group": "text", "help": "Layer whose embeddings are compared (needed for local paths)."})
    bertscore_batch_size: int = field(default=32, metadata={"range": (1, None), "group": "text",
        "help": "Sentences per BERTScore encoder batch, sorted by token count; speed only, never the scores. "
                "32 suits a CPU; raise it on a GPU."})
    bertscore_dtype: str = field(default="auto", metadata={"group": "text",
        "help": "BERTScore encoder precision: float32; bfloat16 (autocast; ~2x faster on CPUs with native bf16, "
                "F1 within ~1e-3 per example, ~1e-5 on the mean); auto: bfloat16 on such CPUs, else float32. "
                "scores.json records the one used."})
    compare: list[str] = field(default_factory=list, metadata={"group": "text",
        "help": "text: more predictions.jsonl files answering the same examples (matched by id), e.g. a tuned model "
                "or a sweep's settings; each is scored beside --predictions (the baseline) with paired deltas."})
    run_names: list[str] = field(default_factory=list, metadata={"group": "text",
        "help": "text: a name per run, --predictions first (default: each file's folder name); per_example.jsonl "
                "keys are '<name>.prediction', '<name>.bleu', ..."})
    bootstrap_resamples: int = field(default=1000, metadata={"range": (0, None),
        "help": "Bootstrap resamples behind each confidence interval (95 percent) and delta (text scores; a "
                "classifier's headline numbers); 0: none."})
    bootstrap_seed: int = field(default=12345, metadata={
        "help": "Seed of the resamples (same seed, same intervals)."})
    model: str | None = field(default=None, metadata={
        "group": "classification", "help": "classification: a finetune classifier folder."})
    data: str | None = field(default=None, metadata={"group": "classification",
        "help": "classification: labeled texts in the layout the classifier was trained on (its tunelab_classifier.json): "
                "moderation records, or a CSV/TSV/JSONL table with the same columns. With --predictions: optional "
                "references (moderation or alpaca records) matched to the answers by id, instead of each row's 'reference'."})
    threshold: float | None = field(default=None, metadata={"range": (0, 1), "group": "classification",
        "help": "classification, multi-label: probability at or above which a label is predicted, for every label. "
                "Default: the per-label thresholds tuned at training time, or 0.5 when none were."})
    split: str | None = field(default=None, metadata={"group": "classification",
        "help": "classification with --model, instead of --data: score a split the classifier's run held out "
                "(test, or eval), read again from its training files as listed in its data_splits.json."})
    tfidf_baseline: bool = field(default=False, metadata={"group": "classification",
        "help": "classification with --model: also fit TF-IDF (word 1-2 grams) + logistic regression on exactly "
                "the classifier's training rows and score it on the same rows, beside the classifier "
                "(multi-label thresholds tuned on the run's eval split, as the classifier's were)."})
    classifier_dtype: str = field(default="float32", metadata={"group": "classification",
        "help": "classification with --model: float32, or bfloat16 (autocast; about 2x faster on CPUs with "
                "native bf16, probabilities within about 1e-2)."})
    batch_size: int = field(default=32, metadata={"range": (1, None), "group": "classification",
        "help": "classification with --model: texts per forward pass; speed and memory only, never the scores."})
    # classification of an LLM's answers (--predictions), and what both classification paths share
    taxonomy: str | None = field(default=None, metadata={"group": "classification",
        "help": "classification with --predictions: the label set, a name in data/taxonomies (jigsaw) or a YAML path."})
    labels: list[str] = field(default_factory=list, metadata={"group": "classification",
        "help": "classification with --predictions: label names, instead of --taxonomy (single-label tasks: the classes)."})
    none_label: str = field(default="none", metadata={
        "group": "classification", "help": "With --labels: the answer that means no label applies."})
    problem_type: str = field(default="auto", metadata={"group": "classification",
        "help": "classification with --predictions: multi_label, single_label, or auto (single_label when every "
                "reference holds exactly one label)."})
    dev_data: str | None = field(default=None, metadata={"group": "classification",
        "help": "classification, multi-label classifier: a dev split (same layout as --data) on which per-label "
                "thresholds are tuned and then applied to --data; reported beside the default thresholds."})
    plots: bool = field(default=True, metadata={
        "group": "classification", "help": "classification: confusion matrices and ROC/PR curves as PNG."})
    # zero- and k-shot baselines of a base model, beside the main scores
    baseline_model: str | None = field(default=None, metadata={"group": "baseline",
        "help": "classification: a base model (hub id, folder, tunelab:tiny-llama) answering the eval set with "
                "--shots solved examples in its prompt, once per --seeds seed; mean ± std per metric."})
    baseline_data: str | None = field(default=None, metadata={"group": "baseline",
        "help": "Eval set of the baseline: alpaca records (moderation_test.alpaca.json). Default: the rows of --predictions."})
    shots_data: str | None = field(default=None, metadata={"group": "baseline",
        "help": "Alpaca records the solved examples are drawn from (moderation_train.alpaca.json); never the eval set."})
    shots: list[int] = field(default_factory=lambda: [0], metadata={"range": (0, None),
        "group": "baseline", "help": "Numbers of solved examples, e.g. 0 4."})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"group": "baseline",
        "help": "One run per seed: the seed draws the shots (and seeds sampling when baseline_temperature > 0)."})
    baseline_template: str = field(default="auto", metadata={"group": "baseline",
        "help": "Prompt format of the baseline: auto (the model's chat template, else alpaca_student), chat, or a template."})
    baseline_max_new_tokens: int = field(default=32, metadata={"range": (1, None),
        "group": "baseline", "help": "A label list is short; a refusal shows in 32 tokens."})
    baseline_temperature: float = field(default=0.0, metadata={"range": (0, None),
        "group": "baseline", "help": "0 = greedy: only the shots differ between seeds."})
    baseline_batch_size: int = field(default=8, metadata={"range": (1, None), "group": "baseline",
        "help": "Baseline prompts per generate() call: faster, more memory; answers do not change."})
    baseline_dtype: str = field(default="auto", metadata={"group": "baseline",
        "help": "Baseline weights dtype: auto (the checkpoint's), bfloat16 or float16 (half of float32's memory), "
                "float32."})
    baseline_label_probs: bool = field(default=False, metadata={"group": "baseline",
        "help": "Also score each label's probability from the baseline's next-token distributions (as inference.py "
                "--label_probs), for its ROC-AUC and PR-AUC; one teacher-forced pass per label and place."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing, non-empty output_dir."})


CONFIG_TYPES = (ScoreConfig,)
HELP = HelpLayout(
    prog="evaluate/score.py",
    description="Score generated text (BLEU, ROUGE-L, BERTScore) or a classifier (P/R/F1, ROC-AUC).",
    groups={"run": "task, input and output", "text": "text scores (task text)",
            "classification": "classification (task classification)",
            "baseline": "zero- and k-shot baselines of a base model (task classification)"},
    defaults={ScoreConfig: "run"},
)


def _read_prediction_lines(path, allow_empty: bool) -> list[tuple[int, dict]]:
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
        rows.append((line, obj))
    if not rows:
        raise RecordError(path, None, "holds no predictions")
    return rows


def read_prediction_rows(path, allow_empty: bool) -> list[dict]:
    """inference.py's rows ({id, prediction, reference, ...}): a string prediction and a non-empty reference
    each; an empty prediction stops the run unless allowed. A bad row is a RecordError naming file and line."""
    return [obj for _, obj in _read_prediction_lines(path, allow_empty)]


def align_runs(paths: Sequence, runs: Sequence[Sequence[tuple[int, dict]]]) -> list[list[dict]]:
    """The rows of every run, in the first run's order, matched by id. Runs are compared on the same
    examples: each file must hold exactly the first file's ids, once each, with the same references;
    otherwise a RecordError names the file, the line and the id."""
    if len(runs) == 1:  # ids are optional for one run, but an id twice means two answers to one example
        seen: dict = {}
        for line, obj in runs[0]:
            rid = obj.get("id")
            if isinstance(rid, (str, int)) and not isinstance(rid, bool):
                if rid in seen:
                    raise RecordError(paths[0], line, f"record {rid}: id already on line {seen[rid]}")
                seen[rid] = line
        return [[obj for _, obj in runs[0]]]
    index = []
    for path, rows in zip(paths, runs, strict=True):
        by_id: dict = {}
        for line, obj in rows:
            rid = obj.get("id")
            if not isinstance(rid, (str, int)) or isinstance(rid, bool):
                raise RecordError(path, line, "row has no 'id' (a string or number): runs are matched by id")
            if rid in by_id:
                raise RecordError(path, line, f"record {rid}: id already on line {by_id[rid][0]}")
            by_id[rid] = (line, obj)
        index.append(by_id)
    base_path, base = paths[0], index[0]
    for path, by_id in zip(paths[1:], index[1:]):
        for rid, (line, obj) in by_id.items():
            if rid not in base:
                raise RecordError(path, line, f"record {rid}: not in {base_path}; runs are compared on the same "
                                  f"examples ({len(by_id)} records here, {len(base)} there)")
            if obj["reference"] != base[rid][1]["reference"]:
                raise RecordError(path, line,
                                  f"record {rid}: reference differs from line {base[rid][0]} of {base_path}")
        missing = [rid for rid in base if rid not in by_id]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise RecordError(path, None, f"has no record {missing[0]}{more}, which {base_path} holds on line "
                              f"{base[missing[0]][0]}; runs are compared on the same examples "
                              f"({len(by_id)} records here, {len(base)} there)")
    return [[by_id[rid][1] for rid in base] for by_id in index]


def _run_names(paths: Sequence, given: Sequence[str]) -> list[str]:
    """--run_names, or the shortest distinguishing name: each file's folder, its file name, or more folders."""
    if given:
        if len(given) != len(paths):
            raise ConfigError(f"--run_names gives {len(given)} names for {len(paths)} prediction files "
                              "(--predictions, then each --compare)")
        if any(not n or "." in n for n in given) or len(set(given)) != len(given):
            raise ConfigError(f"--run_names must be distinct, non-empty and without '.' (per-example keys are "
                              f"'<name>.prediction'): {list(given)}")
        return list(given)
    paths = [Path(p).resolve() for p in paths]
    # A file named predictions.jsonl is named by its folder; a sweep's files (t0.7_k50_b1.jsonl) by themselves.
    ways = [lambda p: p.parent.name if p.stem == "predictions" else p.stem, lambda p: p.parent.name,
            lambda p: p.stem] + [
        (lambda p, d=d: "/".join(p.parent.parts[-d:])) for d in range(2, max(len(p.parts) for p in paths))]
    for way in ways:
        names = [way(p).replace(".", "_") or f"run{i}" for i, p in enumerate(paths)]
        if len(set(names)) == len(names):
            return names
    raise ConfigError("the same predictions file is given twice; name the runs with --run_names")


def score_text(cfg: ScoreConfig, record: RunRecord, out) -> dict:
    """BLEU, ROUGE-L and BERTScore of --predictions and each --compare run, with bootstrap intervals and
    paired deltas against the first. Writes per_example.jsonl: the examples with every run's answer and
    scores side by side ('<run>.prediction', '<run>.bleu', ...; unprefixed for a single run)."""
    from ..metrics.bootstrap import Bootstrap
    from ..metrics.text import METRICS, BERTScore, BERTScoreSettings, resolve_dtype, score_runs
    from ..models import resolve_model

    if not cfg.predictions:
        raise ConfigError("task text needs --predictions (a predictions.jsonl from inference.py)")
    try:
        dtype = resolve_dtype(cfg.bertscore_dtype)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    try:
        boot = Bootstrap(cfg.bootstrap_resamples, cfg.bootstrap_seed)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    paths = [resolve_input(p) for p in (cfg.predictions, *cfg.compare)]
    names = _run_names(paths, cfg.run_names)
    for name, path in zip(names, paths):
        record.add_input("predictions" if len(paths) == 1 else f"predictions {name}", path)
    runs = align_runs(paths, [_read_prediction_lines(p, cfg.allow_empty_predictions) for p in paths])
    record.models["bertscore"] = cfg.bertscore_model
    bertscore = BERTScore(BERTScoreSettings(resolve_model(cfg.bertscore_model), cfg.bertscore_num_layers,
                                            cfg.bertscore_batch_size, dtype=dtype))
    result = score_runs({name: [row["prediction"] for row in run] for name, run in zip(names, runs)},
                        [row["reference"] for row in runs[0]], bertscore, boot)
    empty = [sum(not row["prediction"].strip() for row in run) for run in runs]
    first = result["runs"][0]
    scores = {"examples": len(runs[0]), "empty_predictions": empty[0],
              # the first run's values stay at the top level, as a single run's scores always were
              **{m: first[m]["value"] for m in METRICS}, "bleu_signature": result["bleu_signature"],
              "bertscore_model": cfg.bertscore_model, "bertscore_num_layers": cfg.bertscore_num_layers,
              "bertscore_dtype": dtype, "baseline": names[0], "bootstrap": boot.describe(),
              "runs": [{"name": r["name"], "predictions": str(path), "empty_predictions": e,
                        **{m: r[m] for m in METRICS}} for r, path, e in zip(result["runs"], paths, empty)],
              "comparisons": result["comparisons"]}
    write_jsonl(out / "per_example.jsonl", _side_by_side(names, runs, result["per_example"]))
    record.add_output("per_example", out / "per_example.jsonl")
    return scores


def _side_by_side(names: list[str], runs: list[list[dict]], per_example: dict) -> list[dict]:
    from ..metrics.text import METRICS

    rows = []
    for i, row in enumerate(runs[0]):
        item = {"id": row.get("id"), **{k: row[k] for k in ("instruction", "input") if k in row},
                "reference": row["reference"]}
        for name, run in zip(names, runs):
            prefix = f"{name}." if len(names) > 1 else ""
            item[f"{prefix}prediction"] = run[i]["prediction"]
            item |= {f"{prefix}{m}": per_example[name][m][i] for m in METRICS}
        rows.append(item)
    return rows


def _text_headline(scores: dict) -> dict:
    """Each run's scores as 'value [low, high]', and each delta against the baseline ('*': its CI excludes 0)."""
    digits = {"bleu": 2, "rouge_l_f1": 4, "bertscore_f1": 4}

    def text(value: float, low, high, d: int, star: bool = False) -> str:
        return f"{value:.{d}f}" + (f" [{low:.{d}f}, {high:.{d}f}]" if low is not None else "") + (" *" if star else "")

    out = {"examples": scores["examples"],
           "empty_predictions": {r["name"]: r["empty_predictions"] for r in scores["runs"]},
           "scores [95% CI]": {r["name"]: {m: text(r[m]["value"], r[m]["ci_low"], r[m]["ci_high"], d)
                                           for m, d in digits.items()} for r in scores["runs"]}}
    if scores["comparisons"]:
        deltas = out[f"delta vs {scores['baseline']} [95% CI], * = excludes 0"] = {}
        for c in scores["comparisons"]:
            deltas.setdefault(c["run"], {})[c["metric"]] = text(c["delta"], c["ci_low"], c["ci_high"],
                                                                digits[c["metric"]], bool(c["excludes_zero"]))
    return out


def score_classification(cfg: ScoreConfig, record: RunRecord, out) -> dict:
    """An encoder classifier (--model, --data) or an LLM's answers in words (--predictions), optionally with
    zero/k-shot baselines of a base model beside it (--baseline_model). Writes per_example.jsonl (one row
    per example) and PNG plots next to scores.json."""
    if cfg.problem_type not in ("auto", "single_label", "multi_label"):
        raise ConfigError(f"problem_type must be auto, single_label or multi_label, got {cfg.problem_type!r}")
    if cfg.model and cfg.predictions:
        raise ConfigError("give --model (a classifier folder) or --predictions (an LLM's answers), not both")
    if cfg.predictions:  # settings of the encoder path would be silently ignored
        given = [name for name, on in (("--split", cfg.split), ("--tfidf_baseline", cfg.tfidf_baseline),
                                       ("--classifier_dtype", cfg.classifier_dtype != "float32")) if on]
        if given:
            raise ConfigError(f"{', '.join(given)} apply to an encoder classifier (--model), not to --predictions")
    if cfg.baseline_label_probs and not cfg.baseline_model:
        raise ConfigError("--baseline_label_probs scores a k-shot baseline's labels: it needs --baseline_model")
    if cfg.split not in (None, "test", "eval"):
        raise ConfigError(f"--split must be test or eval (the rows a classifier's run held out), got {cfg.split!r}")
    if cfg.baseline_model:  # settings checked before any scoring, not after
        if not cfg.shots or any(k < 0 for k in cfg.shots) or not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
            raise ConfigError(f"baselines need shots >= 0 and distinct seeds, got shots {cfg.shots}, seeds {cfg.seeds}")
        if any(k > 0 for k in cfg.shots) and not cfg.shots_data:
            raise ConfigError("k-shot baselines need --shots_data (alpaca records to draw solved examples from, "
                              "e.g. moderation_train.alpaca.json)")
        if cfg.model and not cfg.baseline_data:
            raise ConfigError("a baseline beside a --model classifier needs its eval set as instructions: "
                              "--baseline_data (alpaca records, e.g. moderation_test.alpaca.json)")
    if cfg.predictions:
        scores, eval_rows = _score_llm_answers(cfg, record, out)
        labels, none_label = tuple(scores["labels"]), scores["none_label"]
    elif cfg.model:
        scores, eval_rows = _score_classifier(cfg, record, out), None
        labels = tuple(scores["labels"])
        none_label = _label_set(cfg, record)[1] if cfg.taxonomy or cfg.labels else cfg.none_label
    else:
        raise ConfigError("task classification needs --model (a classifier folder) and --data (labeled texts), "
                          "or --predictions (an LLM's answers from inference.py) and --taxonomy")
    if cfg.baseline_model:
        _add_baselines(cfg, record, out, scores, eval_rows, labels, none_label)
    return scores


def _label_set(cfg: ScoreConfig, record: RunRecord) -> tuple[tuple[str, ...], str]:
    """The labels and the none answer, from --taxonomy or --labels."""
    if cfg.taxonomy and cfg.labels:
        raise ConfigError("give --taxonomy or --labels, not both")
    if cfg.taxonomy:
        from ..taxonomy import load_taxonomy

        taxonomy = load_taxonomy(cfg.taxonomy)
        record.add_input("taxonomy", taxonomy.path)
        return taxonomy.labels, taxonomy.none_label
    if cfg.labels:
        if len(set(cfg.labels)) != len(cfg.labels) or cfg.none_label in cfg.labels:
            raise ConfigError(f"--labels must be distinct and differ from none_label {cfg.none_label!r}: {cfg.labels}")
        return tuple(cfg.labels), cfg.none_label
    raise ConfigError("classification of --predictions needs the label set: --taxonomy (e.g. jigsaw) or --labels")


def _write_plots(cfg: ScoreConfig, record: RunRecord, out, report: dict, metrics: dict, **kwargs) -> None:
    """The plots of `metrics` into `out`, listed in the run record and in `report["plots"]`."""
    if not cfg.plots:
        return
    from ..metrics.plots import classification_plots

    made = classification_plots(metrics, out, **kwargs)
    for name, path in made.items():
        record.add_output(name, path)
    report.setdefault("plots", {}).update({name: path.name for name, path in made.items()})


def _score_classifier(cfg: ScoreConfig, record: RunRecord, out) -> dict:
    import numpy as np

    from ..metrics.classification import multilabel_metrics, singlelabel_metrics, tune_thresholds
    from ..training.classify.data import load_labeled_texts
    from ..training.classify.held_out import load_split_rows
    from ..training.classify.predict import load_classifier, predict_proba

    if bool(cfg.data) == bool(cfg.split):
        raise ConfigError("task classification with --model needs --data (labeled texts) or --split (test: the rows "
                          "its run held out), one of them")
    if cfg.classifier_dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"classifier_dtype must be float32 or bfloat16, got {cfg.classifier_dtype!r}")
    model_dir = resolve_input(cfg.model)
    model, tokenizer, info = load_classifier(model_dir)
    labels, problem_type = info.labels, info.problem_type
    record.models["classifier"] = str(cfg.model)
    layout = info.data_layout()

    def predict(m, texts):
        return predict_proba(m, tokenizer, texts, info.max_length, cfg.batch_size, problem_type=problem_type,
                             truncation=info.truncation, dtype=cfg.classifier_dtype)

    def read(path):
        # Every row counts in a score: a bad one stops the run, naming file and line.
        return load_labeled_texts([path], layout, labels=labels, problem_type=problem_type,
                                  split_value=layout.eval_split_value if layout.split_column else None,
                                  bad_records="error")

    if cfg.split:
        data, files = load_split_rows(model_dir, cfg.split, layout, labels, problem_type)
        for i, path in enumerate(files):
            record.add_input(f"{cfg.split}_split[{i}]", path)
    else:
        data_path = resolve_input(cfg.data)
        record.add_input("data", data_path)
        data = read(data_path)
    started = time.monotonic()
    probs = predict(model, data.texts)
    predict_seconds = round(time.monotonic() - started, 2)
    y = data.y()
    if problem_type == "single_label":
        if cfg.dev_data:
            raise ConfigError("--dev_data tunes per-label thresholds of a multi-label classifier; this one is "
                              "single_label (its prediction is the most probable class)")
        metrics = singlelabel_metrics(y, probs, labels)
        predicted = [[labels[int(p.argmax())]] for p in probs]
        rows = [{"id": rid, "text": text, "label": labels[target[0]], "predicted": predicted[i][0]}
                for i, (rid, text, target) in enumerate(zip(data.ids, data.texts, data.targets))]
        y_matrix = np.eye(len(labels), dtype=int)[y]
    else:
        saved = info.thresholds
        if cfg.threshold is not None:
            threshold, source = cfg.threshold, "given"
        elif saved:
            threshold, source = np.array([saved[label] for label in labels]), "tuned at training"
        else:
            threshold, source = 0.5, "default"
        metrics = multilabel_metrics(y.astype(int), probs, labels, threshold)
        metrics["threshold_source"] = source
        cut = np.broadcast_to(threshold, probs.shape[1:])
        predicted = [[label for j, label in enumerate(labels) if p[j] >= cut[j]] for p in probs]
        rows = [{"id": rid, "text": text, "labels": [labels[j] for j in target], "predicted": predicted[i]}
                for i, (rid, text, target) in enumerate(zip(data.ids, data.texts, data.targets))]
        y_matrix = y.astype(int)
    metrics = {"source": "classifier", "labels": list(labels), "examples": len(data),
               "split": cfg.split, "predict_seconds": predict_seconds, "dtype": cfg.classifier_dtype, **metrics}
    if cfg.split == "eval" and metrics.get("threshold_source") == "tuned at training":
        metrics["note"] = "thresholds were tuned on these eval rows at training: optimistic; score --split test"
    if data.other_split_rows:
        metrics["rows_in_other_splits"] = data.other_split_rows
    tuned_predicted = None
    if cfg.dev_data:
        # Thresholds tuned on the set they are scored on flatter it; tuned on dev and applied to test they do not.
        dev_path = resolve_input(cfg.dev_data)
        record.add_input("dev_data", dev_path)
        dev = read(dev_path)
        dev_probs = predict(model, dev.texts)
        tuned = tune_thresholds(dev.y(), dev_probs)
        metrics["tuned_on_dev"] = {"dev_data": str(dev_path), "dev_examples": len(dev),
                                   "thresholds": dict(zip(labels, map(float, tuned))),
                                   **multilabel_metrics(y_matrix, probs, labels, tuned)}
        tuned_predicted = [[label for j, label in enumerate(labels) if p[j] >= tuned[j]] for p in probs]
    from ..metrics.bootstrap import Bootstrap
    from ..metrics.classification import headline_deltas, headline_intervals, headline_resamples

    boot = Bootstrap(cfg.bootstrap_resamples, cfg.bootstrap_seed)
    hard = probs.argmax(axis=1) if problem_type == "single_label" else probs >= np.asarray(metrics["threshold"])
    resampled = headline_resamples(y, hard, probs, problem_type, boot)
    metrics["intervals"] = {"bootstrap": boot.describe(), **headline_intervals(resampled, boot)}
    if cfg.tfidf_baseline:
        baseline, baseline_hard, baseline_probs = _tfidf_baseline(cfg, model_dir, layout, metrics, data)
        baseline_resampled = headline_resamples(y, baseline_hard, baseline_probs, problem_type, boot)
        baseline["intervals"] = headline_intervals(baseline_resampled, boot)
        baseline["classifier_minus_baseline"] = headline_deltas(resampled, baseline_resampled, boot)
        metrics["tfidf_baseline"] = baseline
    for i, row in enumerate(rows):
        row["probs"] = {label: round(float(probs[i, j]), 6) for j, label in enumerate(labels)}
    write_jsonl(out / "predictions.jsonl", rows)
    record.add_output("predictions", out / "predictions.jsonl")
    per_example = []
    for i, (rid, text, target) in enumerate(zip(data.ids, data.texts, data.targets)):
        reference = [labels[j] for j in target]
        row = {"id": rid, "text": text, "reference": reference, "predicted": predicted[i],
               "outcome": "labels" if predicted[i] else "none", "correct": predicted[i] == reference,
               "scores": rows[i]["probs"]}
        if tuned_predicted is not None:
            row["predicted_tuned_on_dev"] = tuned_predicted[i]
        per_example.append(row)
    write_jsonl(out / "per_example.jsonl", per_example)
    record.add_output("per_example", out / "per_example.jsonl")
    _write_plots(cfg, record, out, metrics, metrics, y_true=y_matrix, scores=probs, labels=labels)
    if "tuned_on_dev" in metrics:
        _write_plots(cfg, record, out, metrics, metrics["tuned_on_dev"], labels=labels, prefix="tuned_on_dev_",
                     title="thresholds tuned on dev")
    return metrics


def _tfidf_baseline(cfg: ScoreConfig, model_dir, layout, metrics: dict, data) -> tuple[dict, object, object]:
    """TF-IDF + logistic regression fitted on the classifier's own training rows, scored on `data` as it was.

    Multi-label thresholds follow the classifier's: tuned on the run's eval split when the classifier's
    were tuned there, else the same fixed threshold. Returns (its scores, its hard predictions, its
    probabilities).
    """
    import numpy as np

    from ..metrics.classification import multilabel_metrics, singlelabel_metrics, tune_thresholds
    from ..training.classify.held_out import load_split_rows
    from ..training.tfidf import SETTINGS, fit_tfidf_baseline

    labels, problem_type = tuple(metrics["labels"]), metrics["problem_type"]
    train, _ = load_split_rows(model_dir, "train", layout, labels, problem_type)
    baseline = fit_tfidf_baseline(train.texts, train.y(), problem_type, len(labels))
    started = time.monotonic()
    probs = baseline.predict_proba(data.texts)
    result = {"model": "TF-IDF + logistic regression", "settings": SETTINGS, "train_rows": len(train),
              "fit_seconds": baseline.fit_seconds, "predict_seconds": round(time.monotonic() - started, 2)}
    if problem_type == "single_label":
        return result | singlelabel_metrics(data.y(), probs, labels), probs.argmax(axis=1), probs
    threshold, source = (cfg.threshold, "given") if cfg.threshold is not None else (0.5, "default")
    if cfg.threshold is None and metrics.get("threshold_source") == "tuned at training":
        dev, _ = load_split_rows(model_dir, "eval", layout, labels, problem_type)
        threshold = tune_thresholds(dev.y(), baseline.predict_proba(dev.texts))
        source = "tuned on the classifier run's eval split"
    result["threshold_source"] = source
    result |= multilabel_metrics(data.y().astype(int), probs, labels, np.asarray(threshold))
    return result, probs >= np.asarray(threshold), probs


def _score_llm_answers(cfg: ScoreConfig, record: RunRecord, out) -> tuple[dict, list]:
    import numpy as np

    from ..metrics.llm_answers import (attach_references, label_matrix, label_parser, read_answer_rows,
                                       read_reference_file, resolve_problem_type, score_answers)

    labels, none_label = _label_set(cfg, record)
    path = resolve_input(cfg.predictions)
    record.add_input("predictions", path)
    rows = read_answer_rows(path, labels, none_label, allow_empty=cfg.allow_empty_predictions,
                            with_references=not cfg.data)
    if cfg.data:  # references in their own file (alpaca or moderation records), matched by id
        ref_path = resolve_input(cfg.data)
        record.add_input("references", ref_path)
        attach_references(rows, path, read_reference_file(ref_path, labels, none_label), ref_path)
    references = [row.reference for row in rows]
    problem_type = resolve_problem_type(cfg.problem_type, references)
    if problem_type == "single_label":
        for row in rows:
            if len(row.reference) != 1:
                raise RecordError(*row.reference_at, f"record {row.id}: a single_label reference holds exactly one "
                                                     f"label, this one {list(row.reference) or none_label!r}")
    parser = label_parser(labels, none_label)
    parsed = [parser.parse(row.answer) for row in rows]
    probs = (np.array([[row.label_probs[label] for label in labels] for row in rows], dtype=np.float64)
             if rows[0].label_probs is not None else None)
    scores = {"source": "llm_answers", "labels": list(labels), "none_label": none_label,
              **score_answers(references, parsed, labels, none_label, problem_type, probs),
              "scores_from": "label_probs" if probs is not None else None}
    write_jsonl(out / "per_example.jsonl", [
        {"id": row.id, "instruction": row.instruction, "text": row.text, "answer": row.answer,
         "outcome": p.outcome, "reason": p.reason, "reference": list(row.reference),
         "predicted": list(p.labels) if p.outcome in ("labels", "none") else None,
         "correct": p.outcome in ("labels", "none") and p.labels == row.reference, "scores": row.label_probs}
        for row, p in zip(rows, parsed)])
    record.add_output("per_example", out / "per_example.jsonl")
    y = label_matrix(references, labels)
    _write_plots(cfg, record, out, scores, scores, y_true=y, scores=probs, labels=labels,
                 title="all examples, refusals counted as wrong")
    kept = [i for i, p in enumerate(parsed) if p.outcome != "refusal"]
    if "per_label" in scores["refusals_excluded"] and len(kept) < len(rows):
        _write_plots(cfg, record, out, scores, scores["refusals_excluded"], y_true=y[kept],
                     scores=None if probs is None else probs[kept], labels=labels, prefix="refusals_excluded_",
                     title="refusals excluded")
    eval_rows = [{"id": row.id, "instruction": row.instruction, "input": row.text, "reference": row.reference}
                 for row in rows]
    return scores, eval_rows


def _add_baselines(cfg: ScoreConfig, record: RunRecord, out, scores: dict, eval_rows, labels, none_label) -> None:
    """Zero/k-shot answers of cfg.baseline_model on the eval set, once per seed, beside the main scores."""
    from ..teachers.decoding import generate_texts
    from ..metrics.llm_answers import few_shot_prompt, kshot_baselines, label_parser
    from ..models import is_tiny_random, load_causal_lm_with_adapter, load_tokenizer
    from ..prompts import student_prompt
    from ..records import read_records
    from ..teachers.base import SamplingParams
    from ..inference.backend import resolve_student

    parser = label_parser(tuple(labels), none_label)
    problem_type = scores["problem_type"]
    if cfg.baseline_data:
        eval_path = resolve_input(cfg.baseline_data)
        record.add_input("baseline_data", eval_path)
        eval_rows = []
        for i, r in enumerate(read_records(eval_path, "alpaca")):
            rid = str(r.get("id", i))
            reference = parser.read_reference(r["output"])
            if isinstance(reference, str):
                raise RecordError(eval_path, None, f"record {rid}: output {reference}")
            if problem_type == "single_label" and len(reference) != 1:
                raise RecordError(eval_path, None, f"record {rid}: a single_label reference holds exactly one label, "
                                                   f"this one {list(reference) or none_label!r}")
            eval_rows.append({"id": rid, "instruction": r["instruction"], "input": r["input"], "reference": reference})
    elif not all(r["instruction"] for r in eval_rows):
        raise ConfigError(f"{cfg.predictions}: rows carry no 'instruction' to ask the baseline; give --baseline_data")
    pool = []
    if cfg.shots_data:
        shots_path = resolve_input(cfg.shots_data)
        record.add_input("shots_data", shots_path)
        pool = [dict(r.data) for r in read_records(shots_path, "alpaca")]

    base, adapter, _ = resolve_student(cfg.baseline_model)
    tokenizer = load_tokenizer(adapter or base)
    prompt = student_prompt(cfg.baseline_template, tokenizer)
    record.models["baseline"] = cfg.baseline_model
    record.add_template(f"baseline_{prompt.name}",
                        tokenizer.chat_template if prompt.is_chat else prompt.template.source)
    model = load_causal_lm_with_adapter(base, adapter, dtype=cfg.baseline_dtype)
    model.eval()

    def prompts_for(shots: list[dict]) -> list[str]:
        return [few_shot_prompt(prompt, tokenizer, shots, r["instruction"], r["input"]) for r in eval_rows]

    def label_scores(shots: list[dict], seed: int, answers: list[str]):
        import numpy as np

        from ..teachers.label_probs import label_probabilities

        probs = label_probabilities(model, tokenizer, prompts_for(shots), answers, labels,
                                    add_special_tokens=prompt.tokenize_with_special_tokens,
                                    batch_size=cfg.baseline_batch_size * 2)
        return np.array([[p[label] for label in labels] for p in probs], dtype=np.float64)

    def answer(shots: list[dict], seed: int) -> list[str]:
        prompts = prompts_for(shots)
        params = SamplingParams(max_new_tokens=cfg.baseline_max_new_tokens, temperature=cfg.baseline_temperature,
                                seed=seed)
        sampled = cfg.baseline_temperature > 0
        generations = generate_texts(model, tokenizer, prompts, params, batch_size=cfg.baseline_batch_size,
                                     add_special_tokens=prompt.tokenize_with_special_tokens,
                                     desc=f"baseline {len(shots)}-shot seed {seed}",
                                     seeds=[seed * 1_000_003 + i for i in range(len(prompts))] if sampled else None)
        return [g.text for g in generations]

    by_shots, examples = kshot_baselines(answer, eval_rows, pool, list(cfg.shots), list(cfg.seeds), labels, none_label,
                                         problem_type, deterministic=cfg.baseline_temperature == 0,
                                         label_scores_fn=label_scores if cfg.baseline_label_probs else None)
    (out / "baselines").mkdir(exist_ok=True)
    for (k, seed), rows in examples.items():
        path = write_jsonl(out / "baselines" / f"{k}shot_seed{seed}.jsonl", rows)
        record.add_output(f"baseline_{k}shot_seed{seed}", path)
    scores["baselines"] = {
        "model": cfg.baseline_model, "template": prompt.name, "examples": len(eval_rows),
        "eval_data": str(cfg.baseline_data or cfg.predictions), "shots_data": cfg.shots_data,
        "decoding": {"max_new_tokens": cfg.baseline_max_new_tokens, "temperature": cfg.baseline_temperature},
        "spread": "mean and sample standard deviation (ddof 1) over seeds; each seed draws its own shots",
        **({"note": "tiny random model: its answers are noise"} if is_tiny_random(base) else {}),
        "by_shots": by_shots}
    scores["comparison"] = _comparison(cfg, scores)


def _comparison(cfg: ScoreConfig, scores: dict) -> list[dict]:
    """One row per system (the scored model, then each k-shot baseline): the headline numbers, as mean ± std."""
    from ..metrics.classification import headline

    main_key = "accuracy" if scores.get("problem_type") == "single_label" else "subset_accuracy"
    keys = ("refusal_rate", main_key, "micro_f1", "macro_f1", "macro_f1_refusals_excluded")

    def pick(h, rates, excluded):
        return {"refusal_rate": rates, main_key: h[main_key], "micro_f1": h["micro_f1"], "macro_f1": h["macro_f1"],
                "macro_f1_refusals_excluded": excluded["macro_f1"] if excluded else None}

    def fmt(mean, std):
        if mean is None:
            return "n/a"
        return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"

    if "outcomes" in scores:  # an LLM's answers
        excluded = scores["refusals_excluded"]
        main = pick(headline(scores), scores["refusal_rate"], headline(excluded) if "per_label" in excluded else None)
    else:  # an encoder classifier never refuses: both views are the same
        main = pick(headline(scores), 0.0, headline(scores))
    rows = [{"system": "scored model", "model": cfg.model or cfg.predictions, "shots": None, "runs": 1,
             "mean": main, "std": dict.fromkeys(keys), "text": {k: fmt(main[k], None) for k in keys}}]
    for k, entry in scores["baselines"]["by_shots"].items():
        mean, std = entry["mean"], entry["std"]
        m = pick(mean["refusals_as_wrong"], mean["refusal_rate"], mean.get("refusals_excluded"))
        s = pick(std["refusals_as_wrong"], std["refusal_rate"], std.get("refusals_excluded"))
        rows.append({"system": f"{k}-shot baseline", "model": cfg.baseline_model, "shots": int(k),
                     "runs": len(entry["runs"]), "mean": m, "std": s,
                     "text": {key: fmt(m[key], s[key]) for key in keys}})
    return rows


def score(argv: Sequence[str] | None = None) -> dict:
    from ..config import parse_config

    (cfg,), config_file = parse_config(CONFIG_TYPES, argv, configs_dir=STAGE_CONFIG_DIRS["evaluate"], layout=HELP)
    if cfg.task not in ("text", "classification"):
        raise ConfigError(f"task must be text or classification, got {cfg.task!r}")
    quiet_libraries()
    out = ensure_output_dir(cfg.output_dir, cfg.overwrite)
    drop_finished_record(out)  # an overwritten run that fails must not leave the older run's record as finished
    record = RunRecord(out, "evaluate", [cfg], config_file)
    scores = (score_text if cfg.task == "text" else score_classification)(cfg, record, out)
    write_json(out / "scores.json", scores)
    record.add_output("scores", out / "scores.json")
    record.write()
    from ..report import write_report

    report = write_report(out)  # derived from the files above; rewritten by `python -m tunelab.report`
    print(json.dumps(_headline(cfg.task, scores), indent=2))
    print(f"evaluate: scores in {out / 'scores.json'}; report for people in {report}")
    return scores


def _headline(task: str, scores: dict) -> dict:
    if task == "text":
        return _text_headline(scores)
    out = {"examples": scores["examples"], **({"accuracy": scores["accuracy"]} if "accuracy" in scores else {}),
           "micro_f1": scores["micro"]["f1"], "macro_f1": scores["macro"]["f1"],
           "mean_roc_auc": scores["mean_roc_auc"],
           "per_label_f1": {k: round(v["f1"], 3) for k, v in scores["per_label"].items()}}
    if "outcomes" in scores:  # an LLM's answers: how many were refusals, and the scores without them
        excluded = scores["refusals_excluded"]
        out |= {"outcomes": scores["outcomes"], "scored_as": "refusals counted as wrong",
                "macro_f1_refusals_excluded": excluded["macro"]["f1"] if "macro" in excluded else None}
    if "tuned_on_dev" in scores:
        out["macro_f1_thresholds_tuned_on_dev"] = scores["tuned_on_dev"]["macro"]["f1"]
    if "comparison" in scores:
        # "+/-": the console summary is printed as ASCII JSON, where "±" would read "\u00b1"
        out["comparison"] = {r["system"]: {k: v.replace("±", "+/-") for k, v in r["text"].items()}
                             for r in scores["comparison"]}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(score, argv, interrupted_hint="rerun the same command with --overwrite")

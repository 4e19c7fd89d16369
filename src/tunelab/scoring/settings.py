"""evaluate's settings: one dataclass per thing it scores, and the checks that tell them apart.

What a run scores follows from its task and inputs: `text` (predictions against references), a
`classifier` (an encoder classifier folder, --model) or `answers` (an LLM's answers in words,
--predictions with task classification). A setting of a part the run does not use is refused, not
silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..judge import JudgeRubricConfig
from ..settings import HelpLayout


@dataclass
class ScoreRunConfig:
    task: str = field(default="text", metadata={"help": "text (BLEU, ROUGE-L, BERTScore) or classification."})
    output_dir: str = field(default="runs/evaluate", metadata={"help": "Gets scores, per-example rows and the run record."})
    predictions: str | None = field(default=None, metadata={
        "help": "inference.py's predictions.jsonl: text, a prediction and a reference per row; classification, "
                "an LLM's answers in words."})
    data: str | None = field(default=None, metadata={
        "help": "classification: labeled texts in the layout the classifier was trained on (its tunelab_classifier.json): "
                "moderation records, or a CSV/TSV/JSONL table with the same columns. With --predictions: optional "
                "references (moderation or alpaca records) matched to the answers by id, instead of each row's 'reference'."})
    allow_empty_predictions: bool = field(default=False, metadata={
        "help": "Score an empty prediction 0 (text) or as an unparsed answer (classification) instead of stopping."})
    bootstrap_resamples: int = field(default=1000, metadata={"range": (0, None),
        "help": "Bootstrap resamples behind each confidence interval (95 percent) and delta (text scores; a "
                "classifier's headline numbers); 0: none."})
    bootstrap_seed: int = field(default=12345, metadata={
        "help": "Seed of the resamples (same seed, same intervals)."})
    plots: bool = field(default=True, metadata={
        "help": "classification: confusion matrices and ROC/PR curves as PNG."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing, non-empty output_dir."})


@dataclass
class TextConfig:
    bertscore_model: str = field(default="tunelab:minilm", metadata={
        "help": "BERTScore encoder: hub id, local path or tunelab:minilm."})
    bertscore_num_layers: int | None = field(default=6, metadata={"range": (1, None),
        "help": "Layer whose embeddings are compared (needed for local paths)."})
    bertscore_batch_size: int = field(default=32, metadata={"range": (1, None),
        "help": "Sentences per BERTScore encoder batch, sorted by token count; speed only, never the scores. "
                "32 suits a CPU; raise it on a GPU."})
    bertscore_dtype: str = field(default="auto", metadata={
        "help": "BERTScore encoder precision: float32; bfloat16 (autocast; ~2x faster on CPUs with native bf16, "
                "F1 within ~1e-3 per example, ~1e-5 on the mean); auto: bfloat16 on such CPUs, else float32. "
                "scores.json records the one used."})
    compare: list[str] = field(default_factory=list, metadata={
        "help": "More predictions.jsonl files answering the same examples (matched by id), e.g. a tuned model "
                "or a sweep's settings; each is scored beside --predictions (the baseline) with paired deltas."})
    run_names: list[str] = field(default_factory=list, metadata={
        "help": "A name per run, --predictions first (default: each file's folder name); per_example.jsonl "
                "keys are '<name>.prediction', '<name>.bleu', ..."})


@dataclass
class ClassifierConfig:
    model: str | None = field(default=None, metadata={"help": "A finetune classifier folder."})
    split: str | None = field(default=None, metadata={
        "help": "Instead of --data: score a split the classifier's run held out (test, or eval), read again from "
                "its training files as listed in its data_splits.json."})
    threshold: float | None = field(default=None, metadata={"range": (0, 1),
        "help": "Multi-label: probability at or above which a label is predicted, for every label. "
                "Default: the per-label thresholds tuned at training time, or 0.5 when none were."})
    dev_data: str | None = field(default=None, metadata={
        "help": "Multi-label: a dev split (same layout as --data) on which per-label thresholds are tuned and then "
                "applied to --data; reported beside the default thresholds."})
    tfidf_baseline: bool = field(default=False, metadata={
        "help": "Also fit TF-IDF (word 1-2 grams) + logistic regression on exactly the classifier's training rows "
                "and score it on the same rows, beside the classifier (multi-label thresholds tuned on the run's "
                "eval split, as the classifier's were)."})
    classifier_dtype: str = field(default="float32", metadata={
        "help": "float32, or bfloat16 (autocast; about 2x faster on CPUs with native bf16, probabilities within "
                "about 1e-2)."})
    batch_size: int = field(default=32, metadata={"range": (1, None),
        "help": "Texts per forward pass; speed and memory only, never the scores."})


@dataclass
class LabelSetConfig:
    taxonomy: str | None = field(default=None, metadata={
        "help": "The label set, a name in data/taxonomies (jigsaw) or a YAML path."})
    labels: list[str] = field(default_factory=list, metadata={
        "help": "Label names, instead of --taxonomy (single-label tasks: the classes)."})
    none_label: str = field(default="none", metadata={"help": "With --labels: the answer that means no label applies."})
    problem_type: str = field(default="auto", metadata={
        "help": "multi_label, single_label, or auto (single_label when every reference holds exactly one label)."})


@dataclass
class BaselineConfig:
    baselines: list[str] = field(default_factory=list, metadata={
        "help": "predictions.jsonl files of zero- and k-shot inference runs of a base model (python inference.py "
                "--shots K --shots_data FILE --shots_seed S) answering the same examples: each is scored as an "
                "LLM's answers, and runs with the same number of shots are summarized as mean ± std over their "
                "seeds, beside the scored model."})


@dataclass
class JudgeScoreConfig(JudgeRubricConfig):
    judge: str | None = field(default=None, metadata={
        "help": "A judge model (hub id, folder, tunelab:smollm2; for openai the served name): adds the judge's "
                "scores and, with --compare, win rates against the first run. Default: no judge."})
    judge_backend: str = field(default="transformers", metadata={
        "help": "transformers (in process), openai (any OpenAI-compatible server: vLLM, llama.cpp, ...) or vllm."})
    judge_base_url: str | None = field(default=None, metadata={"help": "openai backend: e.g. http://localhost:8000/v1."})
    judge_api_key_env: str | None = field(default=None, metadata={
        "help": "Name of the environment variable holding the judge server's API key."})
    judge_batch_size: int = field(default=8, metadata={"range": (1, None), "help": "In-process verdicts per batch."})
    judge_dtype: str = field(default="auto", metadata={"help": "In process: auto (the checkpoint's), bfloat16, "
                                                             "float16 or float32."})
    judge_device_map: str | None = field(default=None, metadata={
        "help": "In process: 'auto' spreads a large judge over all GPUs."})
    judge_quantization: str = field(default="none", metadata={
        "help": "In process: none | 4bit (NF4: a 70B judge in ~40 GB) | 8bit; bitsandbytes."})


CONFIG_TYPES = (ScoreRunConfig, TextConfig, JudgeScoreConfig, ClassifierConfig, LabelSetConfig, BaselineConfig)
HELP = HelpLayout(
    prog="evaluate/score.py",
    description="Score generated text (BLEU, ROUGE-L, BERTScore, an LLM judge's scores and win rates) or a "
                "classifier (P/R/F1, ROC-AUC).",
    groups={"run": "task, input and output", "text": "text scores (task text)",
            "judge": "an LLM judge's scores and win rates (task text)",
            "classifier": "an encoder classifier (task classification, --model)",
            "labels": "the label set (task classification)",
            "baseline": "zero- and k-shot baselines of a base model (task classification)"},
    defaults={ScoreRunConfig: "run", TextConfig: "text", JudgeScoreConfig: "judge", ClassifierConfig: "classifier",
              LabelSetConfig: "labels", BaselineConfig: "baseline"},
)
# What each kind of run reads: a setting of any other part is refused.
PARTS_READ = {"text": (TextConfig, JudgeScoreConfig), "classifier": (ClassifierConfig, LabelSetConfig, BaselineConfig),
              "answers": (LabelSetConfig, BaselineConfig)}
WHAT = {"text": "generated text (task text)", "classifier": "an encoder classifier (--model)",
        "answers": "an LLM's answers (--predictions)"}


@dataclass
class ScoreSettings:
    """evaluate's settings, one part per thing scored; `kind` says which parts this run reads."""

    run: ScoreRunConfig
    text: TextConfig
    judge: JudgeScoreConfig
    classifier: ClassifierConfig
    label_set: LabelSetConfig
    baseline: BaselineConfig

    @property
    def kind(self) -> str:
        if self.run.task == "text":
            return "text"
        return "classifier" if self.classifier.model else "answers"

    @property
    def parts(self) -> tuple:
        return self.run, self.text, self.judge, self.classifier, self.label_set, self.baseline


def _changed(part) -> list[str]:
    """The settings of `part` that differ from their defaults, as flags."""
    names = []
    for f in dataclasses.fields(part):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if getattr(part, f.name) != default:
            names.append(f"--{f.name}")
    return names


def check_settings(settings: ScoreSettings) -> None:
    """Every setting checked before any output folder is claimed, the baseline runs' folders included; a
    ConfigError names the setting. (What the files hold is checked as they are read.)"""
    run, cls, labels = settings.run, settings.classifier, settings.label_set
    if run.task not in ("text", "classification"):
        raise ConfigError(f"task must be text or classification, got {run.task!r}")
    if run.task == "classification" and cls.model and run.predictions:
        raise ConfigError("give --model (a classifier folder) or --predictions (an LLM's answers), not both")
    if run.task == "classification" and not (cls.model or run.predictions):
        raise ConfigError("task classification needs --model (a classifier folder) and --data (labeled texts), "
                          "or --predictions (an LLM's answers from inference.py) and --taxonomy")
    kind = settings.kind
    for part in settings.parts[1:]:
        if type(part) not in PARTS_READ[kind] and (given := _changed(part)):
            raise ConfigError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to "
                              f"{HELP.groups[HELP.defaults[type(part)]]}, not to {WHAT[kind]}")
    if kind == "text":
        if not run.predictions:
            raise ConfigError("task text needs --predictions (a predictions.jsonl from inference.py)")
        if run.data:
            raise ConfigError("--data gives labeled texts or references of a classification; task text reads "
                              "each prediction's 'reference'")
        if settings.judge.judge:
            check_judge(settings.judge)
        return
    if labels.problem_type not in ("auto", "single_label", "multi_label"):
        raise ConfigError(f"problem_type must be auto, single_label or multi_label, got {labels.problem_type!r}")
    if kind == "classifier":
        if bool(run.data) == bool(cls.split):
            raise ConfigError("task classification with --model needs --data (labeled texts) or --split (test: the "
                              "rows its run held out), one of them")
        if cls.split not in (None, "test", "eval"):
            raise ConfigError(f"--split must be test or eval (the rows a classifier's run held out), got {cls.split!r}")
        if cls.classifier_dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"classifier_dtype must be float32 or bfloat16, got {cls.classifier_dtype!r}")
    if labels.taxonomy and labels.labels:
        raise ConfigError("give --taxonomy or --labels, not both")
    if settings.baseline.baselines:
        from .baselines import check_baseline_file

        for path in settings.baseline.baselines:
            check_baseline_file(path)


def check_judge(cfg: JudgeScoreConfig) -> None:
    from ..teachers.factory import BACKENDS

    if cfg.judge_backend not in BACKENDS:
        raise ConfigError(f"judge_backend must be one of {sorted(BACKENDS)}, got {cfg.judge_backend!r}")
    if cfg.judge_backend == "openai" and not cfg.judge_base_url:
        raise ConfigError("judge_backend openai needs --judge_base_url")
    from ..models import QUANTIZATIONS

    if cfg.judge_quantization not in QUANTIZATIONS:
        raise ConfigError(f"judge_quantization must be one of {list(QUANTIZATIONS)}, got {cfg.judge_quantization!r}")
    if cfg.judge_backend == "openai" and (cfg.judge_quantization != "none" or cfg.judge_device_map
                                          or cfg.judge_dtype != "auto"):
        raise ConfigError("judge_dtype, judge_device_map and judge_quantization load an in-process judge: "
                          "a server judge (judge_backend openai) is loaded by its server")
    from ..judge import Judging

    Judging(cfg, pairwise=False, backend=cfg.judge_backend)  # the rubric's settings and template, checked before anything loads
    Judging(cfg, pairwise=True, backend=cfg.judge_backend)

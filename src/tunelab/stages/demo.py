"""demo: the whole workbench end to end, offline, through every stage's real entry point.

    tunelab demo                       # or: make demo
    tunelab demo --output_dir runs/my-demo

Runs the shipped demo configs of each stage with their paths moved under one output folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..console import PLAIN, get_logger, verbosity
from ..errors import ConfigError
from ..metrics.scores import TextScores
from ..paths import STAGE_CONFIG_DIRS
from ..records import write_json
from ..runs import ensure_output_dir
from ..settings import HelpLayout
from .common import quiet_libraries, run_main

_log = get_logger("demo")


def _say(text: str) -> None:
    """A line of the demo's own summary, written as it is."""
    _log.info(text, extra=PLAIN)


MODEL_NOTE = ("The teacher and student are SmolLM2-135M-Instruct, a real instruction-tuned model small enough for a "
              "CPU: its tasks, QA and answers are real but weak, and the rejects say what it got wrong. Put a larger "
              "model in its place (--teacher, --base: a hub id, a local folder or a server) for better data.")


DEMO_ROOT = Path("runs") / "demo"
LATEST = "latest"  # runs/demo/latest -> the newest finished default demo; the demo configs read from it


@dataclass
class DemoConfig:
    output_dir: str | None = field(default=None, metadata={
        "help": "Where every artifact goes; default runs/demo/<time>, then linked as runs/demo/latest."})
    overwrite: bool = field(default=False, metadata={"help": "Reuse an existing output_dir, replacing its outputs."})
    quick: bool = field(default=False, metadata={"help": "A smoke run: two training steps and a few examples per stage."})
    full: bool = field(default=False, metadata={
        "help": "The larger loop (about 10 minutes on 2 CPU cores) instead of the default slice: 32 self-instruct "
                "requests instead of 8, 24 comments for QA instead of 8, and the student trained on every example."})


CONFIG_TYPES = (DemoConfig,)
HELP = HelpLayout(prog="tunelab demo",
                  description="Run generate -> finetune -> inference -> evaluate on the embedded default.",
                  groups={"demo": "demo"})


# With --quick, each stage keeps its real code path but does only a token amount of work.
QUICK = {
    "generate": ["--max_requests", "1", "--max_posts", "1", "--max_new_tokens", "16"],
    "finetune": ["--max_steps", "2", "--max_examples", "32", "--logging_steps", "1"],
    "inference": ["--limit", "4", "--max_new_tokens", "8"],
}
# The default demo is a slice that fits in minutes on 2 CPU cores; --full asks for more of every stage.
SLICE = {"student": ["--max_examples", "160"]}  # the teacher's tasks come first in the data list: all of them stay
FULL = {"generate": ["--max_requests", "32", "--requests_per_round", "16", "--max_posts", "24"]}
FULL_COMMAND = "tunelab demo --full"
SHOWN = 3  # kept records and answers printed at the end, for a person to read


def demo(argv: Sequence[str] | None = None) -> list[dict]:
    from ..config import parse_config

    (cfg,), _ = parse_config(CONFIG_TYPES, argv, configs_dir=None, layout=HELP)
    if cfg.quick and cfg.full:
        raise ConfigError("--quick and --full contradict each other: choose one")
    quiet_libraries()
    root = Path(cfg.output_dir or DEMO_ROOT / time.strftime("%Y%m%d-%H%M%S"))
    ensure_output_dir(root, cfg.overwrite, what="demo folder")
    run = DemoRun(root, cfg)
    gen = run.generate()
    run.finetune()
    run.inference()
    run.evaluate()
    shown = examples(run.dirs, gen)
    write_json(root / "summary.json", {"rows": run.rows, "seconds": run.timings, "note": MODEL_NOTE,
                                       "examples": shown})
    print_examples(shown)
    print_table(run.rows)
    where = str(root)
    # A --quick smoke run takes `latest` only when there is none: the next commands want a full demo's outputs.
    keep_full = cfg.quick and (root.parent / LATEST).exists()
    if cfg.output_dir is None and not keep_full and link_latest(root):
        where = f"{root} (also {root.parent / LATEST}, where the demo configs look)"
    _say(f"\n{MODEL_NOTE}\nStage times (s): {run.timings}\nEverything is under {where}; summary.json lists it.")
    if not cfg.full and not cfg.quick:
        _say(f"This was a slice sized for minutes (8 teacher requests, 8 comments, 160 training examples); "
              f"a larger loop, about 10 minutes on 2 cores: {FULL_COMMAND}")
    return run.rows


class DemoRun:
    """The demo's steps, each a stage's real entry point on its shipped demo config, into one folder; each
    adds rows to the summary table and its time."""

    def __init__(self, root: Path, cfg: DemoConfig):
        self.root = root
        self.over = ["--overwrite"] if cfg.overwrite else []
        self.extra = {stage: (extra if cfg.quick else FULL.get(stage, []) if cfg.full else [])
                      for stage, extra in QUICK.items()}
        self.extra["student"] = self.extra["finetune"] if cfg.quick or cfg.full else SLICE["student"]
        self.dirs = {name: root / name for name in ("generate", "student", "classifier", "inference_base", "inference",
                                                    "scores_text", "scores_classifier")}
        self.rows: list[dict] = []
        self.timings: dict[str, float] = {}

    def step(self, name: str, fn, argv: list[str]):
        _say(f"\n=== {name} ===")
        start = time.time()
        # each stage parses its own --quiet / --verbose: the demo's carries on to them
        level = verbosity()
        result = fn([*argv, *({"quiet": ["--quiet"], "verbose": ["--verbose"]}.get(level, []))])
        self.timings[name] = round(time.time() - start, 1)
        return result

    def row(self, stage: str, what: str, result: str, where) -> None:
        self.rows.append({"stage": stage, "what": what, "result": result, "where": str(where)})

    def generate(self) -> dict:
        from .generate import generate

        d = self.dirs
        gen = self.step("generate", generate, ["--config", str(STAGE_CONFIG_DIRS["generate"] / "demo.yaml"),
                                               "--output_dir", str(d["generate"]), *self.over, *self.extra["generate"]])
        mod, si = gen["moderation"], gen["self_instruct"]
        self.row("generate", "moderation set: Jigsaw sample, 6 labels + none", f"train {mod['train']}, test {mod['test']}",
                 d["generate"])
        self.row("generate", "self-instruct round, SmolLM2 teacher",
                 f"{si['kept']} tasks kept, {si['rejected']} rejected, {si['sent']} requests sent",
                 d["generate"] / "self_instruct.alpaca.json")
        if qa := gen.get("moderation_qa"):
            self.row("generate", "moderation QA about comments, SmolLM2 teacher",
                     f"{qa['kept_posts']} of {qa['posts']} comments kept, {qa['pairs']} pairs",
                     d["generate"] / "moderation_qa.alpaca.json")
        return gen

    def finetune(self) -> None:
        from .finetune import finetune

        d = self.dirs
        student = self.step("finetune: student", finetune, [
            "--config", str(STAGE_CONFIG_DIRS["finetune"] / "demo_student.yaml"), "--output_dir", str(d["student"]),
            "--data", str(d["generate"] / "self_instruct.alpaca.json"), "data/alpaca_sample.json", *self.over,
            *self.extra["student"]])
        self.row("finetune", "LoRA SFT, SmolLM2 student",
                 f"{student['examples']} examples, {student['steps']} steps, " + (
                     f"loss {student['first_loss']:.3f} -> {student['last_loss']:.3f}"
                     if student["last_loss"] is not None else f"train loss {student['train_loss']:.3f}"),
                 d["student"])
        classifier = self.step("finetune: classifier", finetune, [
            "--config", str(STAGE_CONFIG_DIRS["finetune"] / "demo_classifier.yaml"), "--output_dir", str(d["classifier"]),
            "--data", str(d["generate"] / "moderation_train.jsonl"), *self.over, *self.extra["finetune"]])
        self.row("finetune", "LoRA all-MiniLM-L6-v2, 6-label toxicity",
                 f"{classifier['examples']} examples, {classifier['steps']} steps, "
                 f"train loss {classifier['train_loss']:.3f}", d["classifier"])

    def inference(self) -> None:
        from .infer import infer

        config = str(STAGE_CONFIG_DIRS["inference"] / "demo.yaml")
        for name, model, who in (("inference_base", "tunelab:smollm2", "SmolLM2 as it is"),
                                 ("inference", str(self.dirs["student"]), "the tuned student")):
            answers = self.step(f"inference: {who}", infer, ["--config", config, "--model", model, "--output_dir",
                                                            str(self.dirs[name]), *self.over, *self.extra["inference"]])
            self.row("inference", f"{who} answers the held-aside Alpaca set",
                     f"{answers['examples']} answers ({answers['empty_predictions']} empty)",
                     self.dirs[name] / "predictions.jsonl")

    def evaluate(self) -> None:
        from .evaluate import score

        d = self.dirs
        text = self.step("evaluate: text", score, [
            "--config", str(STAGE_CONFIG_DIRS["evaluate"] / "demo_text.yaml"),
            "--predictions", str(d["inference_base"] / "predictions.jsonl"),
            "--compare", str(d["inference"] / "predictions.jsonl"), "--run_names", "base", "tuned",
            "--output_dir", str(d["scores_text"]), *self.over])
        self.row("evaluate", "tuned student vs SmolLM2 as it is, on the references", text_deltas(text),
                 d["scores_text"] / "report.html")
        cls = self.step("evaluate: classifier", score, [
            "--config", str(STAGE_CONFIG_DIRS["evaluate"] / "demo_classifier.yaml"), "--model", str(d["classifier"]),
            "--data", str(d["generate"] / "moderation_test.jsonl"), "--output_dir", str(d["scores_classifier"]),
            *self.over])
        auc = f"{cls['mean_roc_auc']:.3f}" if cls["mean_roc_auc"] is not None else "n/a"
        self.row("evaluate", "classifier on the moderation test split",
                 f"micro-F1 {cls['micro']['f1']:.3f}, macro-F1 {cls['macro']['f1']:.3f}, mean ROC-AUC {auc}",
                 d["scores_classifier"] / "scores.json")


def text_deltas(scores: dict) -> str:
    """'BLEU 3.10 -> 5.20 (+2.10 [+0.80, +3.40] *), ...': base -> tuned, with the paired delta and its interval."""
    text_scores = TextScores(scores)
    base, tuned = text_scores.runs[0], text_scores.runs[-1]
    deltas = {c["metric"]: c for c in text_scores.comparisons if c["run"] == tuned["name"]}
    parts = []
    for metric, label, digits in (("bleu", "BLEU", 2), ("rouge_l_f1", "ROUGE-L", 3), ("bertscore_f1", "BERTScore", 3)):
        text = f"{label} {base[metric]['value']:.{digits}f} -> {tuned[metric]['value']:.{digits}f}"
        if (c := deltas.get(metric)) and c["ci_low"] is not None:
            star = " *" if c["excludes_zero"] else ""
            text += f" ({c['delta']:+.{digits}f} [{c['ci_low']:+.{digits}f}, {c['ci_high']:+.{digits}f}]{star})"
        parts.append(text)
    return ", ".join(parts)


def _read_rows(path: Path) -> list[dict]:
    import json

    if not path.exists():
        return []
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _commonest(stats: dict | None) -> dict[str, int]:
    """A build's four commonest reject reasons (generate's stats list them commonest first)."""
    return dict(list((stats or {}).get("reject_reasons", {}).items())[:4])


def examples(d: dict[str, Path], gen_stats: dict) -> dict:
    """A few kept teacher records, the commonest reject reasons, and answers before and after tuning."""
    gen = d["generate"]
    shown: dict = {
        "self_instruct_kept": [{k: r[k] for k in ("instruction", "input", "output")}
                               for r in _read_rows(gen / "self_instruct.alpaca.json")[:SHOWN]],
        "self_instruct_rejects": _commonest(gen_stats.get("self_instruct")),
        "moderation_qa_kept": [{"comment": r["text"], "qa": r["qa"], "labels": r["labels"]}
                               for r in _read_rows(gen / "moderation_qa.jsonl")[:SHOWN]],
        "moderation_qa_rejects": _commonest(gen_stats.get("moderation_qa")),
    }
    side_by_side = _read_rows(d["scores_text"] / "per_example.jsonl")
    shown["answers"] = [{k: r.get(k) for k in ("instruction", "input", "reference", "base.prediction", "tuned.prediction")}
                        for r in side_by_side[:SHOWN]]
    return shown


def _clip(text, width: int = 300) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= width else text[:width - 3] + "..."


def print_examples(shown: dict) -> None:
    _say("\n--- What the teacher wrote (kept records; every record and reject is in the generate folder) ---")
    for task in shown["self_instruct_kept"]:
        _say(f"task:    {_clip(task['instruction'])}" + (f"\n  input: {_clip(task['input'])}" if task["input"] else "")
              + f"\n  output: {_clip(task['output'])}")
    _say(f"self-instruct rejects, commonest reasons: {shown['self_instruct_rejects'] or 'none'}")
    for post in shown["moderation_qa_kept"]:
        _say(f"comment: {_clip(post['comment'], 120)}\n  verdict: {', '.join(post['labels']) or 'none'}")
        for qa in post["qa"]:
            _say(f"  Q: {_clip(qa['question'], 150)}\n  A: {_clip(qa['answer'], 150)}")
    _say(f"moderation QA rejects, commonest reasons: {shown['moderation_qa_rejects'] or 'none'}")
    _say("\n--- Answers to held-aside Alpaca instructions, before and after tuning ---")
    for row in shown["answers"]:
        _say(f"instruction: {_clip(row['instruction'], 200)}" + (f"\n  input:     {_clip(row['input'], 200)}"
                                                                   if row.get("input") else "")
              + f"\n  reference: {_clip(row['reference'])}\n  base:      {_clip(row['base.prediction'])}"
              + f"\n  tuned:     {_clip(row['tuned.prediction'])}")


def link_latest(root: Path) -> bool:
    """Point `<root's folder>/latest` at `root`, atomically, so the next commands find the newest demo
    whatever its time stamp. Only a finished demo is linked: an interrupted one leaves the last good link."""
    link = root.parent / LATEST
    if link.exists() and not link.is_symlink():
        _log.info(f"{link} is not a link; left as it is")
        return False
    tmp = root.parent / f".{LATEST}.{root.name}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        tmp.symlink_to(root.name, target_is_directory=True)  # relative: the runs folder can move
        os.replace(tmp, link)
    except OSError as e:  # no symlinks here (some Windows setups): the timed folder still holds everything
        tmp.unlink(missing_ok=True)
        _log.info(f"could not link {link}: {e}")
        return False
    return True


def print_table(rows: list[dict]) -> None:
    columns = ("stage", "what", "result", "where")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    _say("\n" + line + "\n" + "-" * len(line))
    for r in rows:
        _say("  ".join(r[c].ljust(widths[c]) for c in columns))


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(demo, argv, interrupted_hint="run `tunelab demo` again (it starts a new folder)")

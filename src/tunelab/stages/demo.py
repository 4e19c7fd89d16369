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

from ..paths import STAGE_CONFIG_DIRS
from ..records import write_json
from ..runs import ensure_output_dir
from ..settings import HelpLayout
from .common import quiet_libraries, run_main

TINY_NOTE = ("The causal teacher and student are tiny random Llama models: they exercise every code path and know "
             "nothing, so their text and scores are noise. Put a hub id or a local path in their place "
             "(--teacher, --base) for real data and real scores.")


DEMO_ROOT = Path("runs") / "demo"
LATEST = "latest"  # runs/demo/latest -> the newest finished default demo; the demo configs read from it


@dataclass
class DemoConfig:
    output_dir: str | None = field(default=None, metadata={
        "help": "Where every artifact goes; default runs/demo/<time>, then linked as runs/demo/latest."})
    overwrite: bool = field(default=False, metadata={"help": "Reuse an existing output_dir, replacing its outputs."})
    quick: bool = field(default=False, metadata={"help": "A smoke run: two training steps and a few examples per stage."})


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


def demo(argv: Sequence[str] | None = None) -> list[dict]:
    from ..config import parse_config
    from .evaluate import score
    from .finetune import finetune
    from .generate import generate
    from .infer import infer

    (cfg,), _ = parse_config(CONFIG_TYPES, argv, configs_dir=None, layout=HELP)
    quiet_libraries()
    root = Path(cfg.output_dir or DEMO_ROOT / time.strftime("%Y%m%d-%H%M%S"))
    ensure_output_dir(root, cfg.overwrite, what="demo folder")
    over = ["--overwrite"] if cfg.overwrite else []
    quick = {stage: (extra if cfg.quick else []) for stage, extra in QUICK.items()}
    d = {name: root / name for name in ("generate", "student", "classifier", "inference", "scores_text", "scores_classifier")}
    rows: list[dict] = []
    timings: dict[str, float] = {}

    def step(name, fn, argv):
        print(f"\n=== {name} ===", flush=True)
        start = time.time()
        result = fn(argv)
        timings[name] = round(time.time() - start, 1)
        return result

    gen = step("generate", generate, ["--config", str(STAGE_CONFIG_DIRS["generate"] / "demo.yaml"),
                                      "--output_dir", str(d["generate"]), *over, *quick["generate"]])
    mod, si = gen["moderation"], gen["self_instruct"]
    rows.append({"stage": "generate", "what": "moderation set: Jigsaw sample, 6 labels + none",
                 "result": f"train {mod['train']}, test {mod['test']}", "where": str(d["generate"])})
    rows.append({"stage": "generate", "what": "self-instruct round, tiny teacher",
                 "result": f"{si['kept']} kept, {si['rejected']} rejected, {si['sent']} requests sent",
                 "where": str(d["generate"] / "self_instruct.alpaca.json")})
    if qa := gen.get("moderation_qa"):
        rows.append({"stage": "generate", "what": "moderation QA about posts, tiny teacher",
                     "result": f"{qa['kept_posts']} of {qa['posts']} posts kept, {qa['pairs']} pairs",
                     "where": str(d["generate"] / "moderation_qa.alpaca.json")})

    student = step("finetune: student", finetune, [
        "--config", str(STAGE_CONFIG_DIRS["finetune"] / "demo_student.yaml"), "--output_dir", str(d["student"]),
        "--data", "data/alpaca_sample.json", str(d["generate"] / "self_instruct.alpaca.json"), *over, *quick["finetune"]])
    rows.append({"stage": "finetune", "what": "LoRA SFT, tiny Llama student",
                 "result": f"{student['examples']} examples, {student['steps']} steps, " + (
                     f"loss {student['first_loss']:.3f} -> {student['last_loss']:.3f}" if student["last_loss"] is not None
                     else f"train loss {student['train_loss']:.3f}"),
                 "where": str(d["student"])})

    classifier = step("finetune: classifier", finetune, [
        "--config", str(STAGE_CONFIG_DIRS["finetune"] / "demo_classifier.yaml"), "--output_dir", str(d["classifier"]),
        "--data", str(d["generate"] / "moderation_train.jsonl"), *over, *quick["finetune"]])
    rows.append({"stage": "finetune", "what": "LoRA all-MiniLM-L6-v2, 6-label toxicity",
                 "result": f"{classifier['examples']} examples, {classifier['steps']} steps, "
                           f"train loss {classifier['train_loss']:.3f}", "where": str(d["classifier"])})

    answers = step("inference", infer, ["--config", str(STAGE_CONFIG_DIRS["inference"] / "demo.yaml"),
                                        "--model", str(d["student"]), "--output_dir", str(d["inference"]), *over,
                                        *quick["inference"]])
    rows.append({"stage": "inference", "what": "student answers the held-aside Alpaca set",
                 "result": f"{answers['examples']} answers ({answers['empty_predictions']} empty)",
                 "where": str(d["inference"] / "predictions.jsonl")})

    text = step("evaluate: text", score, [
        "--config", str(STAGE_CONFIG_DIRS["evaluate"] / "demo_text.yaml"),
        "--predictions", str(d["inference"] / "predictions.jsonl"), "--output_dir", str(d["scores_text"]), *over])
    rows.append({"stage": "evaluate", "what": "student text vs references",
                 "result": f"BLEU {text['bleu']:.2f}, ROUGE-L {text['rouge_l_f1']:.3f}, BERTScore {text['bertscore_f1']:.3f}",
                 "where": str(d["scores_text"] / "scores.json")})

    cls = step("evaluate: classifier", score, [
        "--config", str(STAGE_CONFIG_DIRS["evaluate"] / "demo_classifier.yaml"), "--model", str(d["classifier"]),
        "--data", str(d["generate"] / "moderation_test.jsonl"), "--output_dir", str(d["scores_classifier"]), *over])
    auc = f"{cls['mean_roc_auc']:.3f}" if cls["mean_roc_auc"] is not None else "n/a"
    rows.append({"stage": "evaluate", "what": "classifier on the moderation test split",
                 "result": f"micro-F1 {cls['micro']['f1']:.3f}, macro-F1 {cls['macro']['f1']:.3f}, mean ROC-AUC {auc}",
                 "where": str(d["scores_classifier"] / "scores.json")})

    write_json(root / "summary.json", {"rows": rows, "seconds": timings, "note": TINY_NOTE})
    print_table(rows)
    where = str(root)
    # A --quick smoke run takes `latest` only when there is none: the next commands want a full demo's outputs.
    keep_full = cfg.quick and (root.parent / LATEST).exists()
    if cfg.output_dir is None and not keep_full and link_latest(root):
        where = f"{root} (also {root.parent / LATEST}, where the demo configs look)"
    print(f"\n{TINY_NOTE}\nStage times (s): {timings}\nEverything is under {where}; summary.json lists it.")
    return rows


def link_latest(root: Path) -> bool:
    """Point `<root's folder>/latest` at `root`, atomically, so the next commands find the newest demo
    whatever its time stamp. Only a finished demo is linked: an interrupted one leaves the last good link."""
    link = root.parent / LATEST
    if link.exists() and not link.is_symlink():
        print(f"demo: {link} is not a link; left as it is")
        return False
    tmp = root.parent / f".{LATEST}.{root.name}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        tmp.symlink_to(root.name, target_is_directory=True)  # relative: the runs folder can move
        os.replace(tmp, link)
    except OSError as e:  # no symlinks here (some Windows setups): the timed folder still holds everything
        tmp.unlink(missing_ok=True)
        print(f"demo: could not link {link}: {e}")
        return False
    return True


def print_table(rows: list[dict]) -> None:
    columns = ("stage", "what", "result", "where")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    print("\n" + line + "\n" + "-" * len(line))
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in columns))


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(demo, argv, interrupted_hint="run `tunelab demo` again (it starts a new folder)")

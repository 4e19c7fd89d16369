"""Result runs: the classification recipes trained and scored on real data, and RESULTS.md written from
their run records (never by hand).

The plan (evaluate/results.yaml) lists each task: its finetune and evaluate configs, the methods
compared (full fine-tuning, LoRA) as command-line overrides, what data it uses, its headline metrics,
its target and what the original studies reported. `run` executes each (task, method) as the two
commands a user would type, skipping runs that already finished; `report` reads every finished
run's records and writes the tables. The run folders (runs/results/, weights included) stay out of the
repository; each finished run's provenance.json, config.yaml and scores.json are kept in
evaluate/records/, which the report reads, so a fresh clone remakes RESULTS.md exactly.

    python evaluate/results.py run --only jigsaw dbpedia
    python evaluate/results.py report
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import load_yaml
from .errors import ConfigError
from .paths import PROJECT_ROOT

PLAN = PROJECT_ROOT / "evaluate" / "results.yaml"
RUNS_DIR = Path("runs/results")
# The small part of each finished run that RESULTS.md is made from, kept in the repository: the run
# folders (weights, checkpoints) are not, so without these a fresh clone could not remake the report.
RECORDS_DIR = PROJECT_ROOT / "evaluate" / "records"
RECORD_FILES = ("provenance.json", "config.yaml", "scores.json")
RESULTS_MD = PROJECT_ROOT / "RESULTS.md"
BENCH_RESULTS = PROJECT_ROOT / "bench" / "results.json"  # written by `make bench` (bench/suite.py)
BENCH_GPU_RESULTS = PROJECT_ROOT / "bench" / "results_gpu.json"  # written by `make bench-gpu` on a GPU machine


@dataclass
class Evaluation:
    name: str  # the scores folder: <run>/scores_<name>, or <run>/scores for "test"
    config: str
    args: list[str] = field(default_factory=list)
    title: str = ""


@dataclass
class Task:
    name: str
    title: str
    finetune: str
    evaluations: list[Evaluation]
    methods: dict[str, list[str]]
    data: str
    metrics: list[str]
    per_label: list[str]
    target: dict | None
    studies: list[str]
    notes: list[str] = field(default_factory=list)
    prepare: list[list[str]] = field(default_factory=list)  # data-making commands (with --output_dir), run first

    def run_dir(self, method: str, root: Path = RUNS_DIR) -> Path:
        return root / f"{self.name}_minilm_{method}"

    def scores_dir(self, method: str, evaluation: Evaluation, root: Path = RUNS_DIR) -> Path:
        suffix = "" if evaluation.name == "test" else f"_{evaluation.name}"
        return self.run_dir(method, root) / f"scores{suffix}"

    def commands(self, method: str, root: Path = RUNS_DIR, python: str = "python") -> list[list[str]]:
        """The finetune command, then one evaluate command per evaluation: what a user would type."""
        run = self.run_dir(method, root)
        train = [python, "finetune/train.py", "--config", self.finetune, "--output_dir", str(run),
                 *self.methods[method]]
        scores = [[python, "evaluate/score.py", "--config", e.config, "--model", str(run),
                   "--output_dir", str(self.scores_dir(method, e, root)), *e.args] for e in self.evaluations]
        return [train, *scores]


def load_plan(path: Path = PLAN) -> list[Task]:
    data = load_yaml(path)
    tasks = []
    for i, entry in enumerate(data.get("tasks") or []):
        try:
            evaluations = [Evaluation(**e) for e in entry["evaluate"]]
            tasks.append(Task(
                name=entry["name"], title=entry["title"], finetune=entry["finetune"], evaluations=evaluations,
                methods={m: [str(a) for a in (args or [])] for m, args in entry["methods"].items()},
                data=entry["data"], metrics=list(entry["metrics"]), per_label=list(entry.get("per_label") or []),
                target=entry.get("target"), studies=list(entry.get("studies") or []),
                notes=list(entry.get("notes") or []),
                prepare=[[str(a) for a in command] for command in entry.get("prepare") or []]))
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{path}: task {i} ({entry.get('name', '?')}): {e}") from e
        for command in tasks[-1].prepare:  # its run record there says whether it finished
            if "--output_dir" not in command[:-1]:
                raise ConfigError(f"{path}: task {entry['name']}: prepare command {command} needs --output_dir")
    if not tasks:
        raise ConfigError(f"{path}: no tasks")
    return tasks


def select(tasks: list[Task], only: list[str] | None, methods: list[str] | None) -> list[tuple[Task, str]]:
    names = {t.name for t in tasks}
    unknown = sorted(set(only or []) - names)
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown}; the plan has {sorted(names)}")
    chosen = [t for t in tasks if not only or t.name in only]
    pairs = [(t, m) for t in chosen for m in t.methods if not methods or m in methods]
    if not pairs:
        raise ConfigError(f"no (task, method) left to run for tasks {only or 'all'} and methods {methods}")
    return pairs


def finished(folder: Path) -> bool:
    return (folder / "provenance.json").exists()


def keep_records(task: Task, method: str, root: Path = RUNS_DIR, records: Path = RECORDS_DIR) -> Path | None:
    """Copy a finished (task, method)'s records (RECORD_FILES of its training folder and of each finished
    evaluation's folder) from `root` to `records`, in the same layout, replacing what was kept of it
    before. Returns the kept folder, or None where the training has not finished."""
    import shutil

    run_dir = task.run_dir(method, root)
    if not finished(run_dir):
        return None
    kept = task.run_dir(method, records)
    folders = [run_dir] + [d for e in task.evaluations if finished(d := task.scores_dir(method, e, root))]
    staging = kept.with_name(f".{kept.name}.new")  # a half-written copy never replaces the old one
    shutil.rmtree(staging, ignore_errors=True)
    for folder in folders:
        target = staging / folder.relative_to(run_dir)
        target.mkdir(parents=True, exist_ok=True)
        for name in RECORD_FILES:
            if (folder / name).exists():
                shutil.copyfile(folder / name, target / name)
    shutil.rmtree(kept, ignore_errors=True)
    staging.rename(kept)
    return kept


def run(tasks: list[Task], only=None, methods=None, *, root: Path = RUNS_DIR, rerun: bool = False,
        dry_run: bool = False, records: Path | None = RECORDS_DIR) -> list[dict]:
    """Train and score each (task, method) in turn with the stage commands; a finished step is skipped
    (its run record is there) unless `rerun`. A failed step stops that task's method, not the others.
    Each finished (task, method)'s records are then kept under `records` (None: not kept)."""
    done = []
    for task, method in select(tasks, only, methods):
        steps = _run_steps(task, method, root, rerun, dry_run)
        done += steps
        # after a failed step an older evaluation's scores may still sit beside a new model: keep nothing
        if records is not None and not dry_run and not any(r["returncode"] for r in steps):
            if kept := keep_records(task, method, root, records):
                print(f"results: records kept in {kept}")
    return done


def _run_steps(task: Task, method: str, root: Path, rerun: bool, dry_run: bool) -> list[dict]:
    """One (task, method)'s commands (the task's data preparation first), each finished one skipped."""
    done = []
    prepare = [[sys.executable, *c[1:]] if c[0] == "python" else c for c in task.prepare]
    steps = [(c, False) for c in prepare] + [(c, rerun) for c in task.commands(method, root, python=sys.executable)]
    trained = False
    for command, again in steps:
        again = again or trained  # scores of an earlier model are not this one's
        out = Path(command[command.index("--output_dir") + 1])
        text = shlex.join(["python", *command[1:]])
        # The prepared data is shared by every method of the task, so --rerun of one method keeps it.
        if finished(out) and not again:
            print(f"results: {out} is finished; skipped ({text})")
            continue
        extra = []
        if out.exists() and any(out.iterdir()):
            # An interrupted training continues from its last checkpoint; anything else starts over.
            resumable = "finetune/train.py" in command and not again and any(out.glob("checkpoint-*"))
            extra = ["--resume", "true"] if resumable else ["--overwrite", "true"]
        print(f"results: {text} {shlex.join(extra)}".rstrip(), flush=True)
        trained = trained or "finetune/train.py" in command
        if dry_run:
            continue
        started = time.monotonic()
        rc = call_forwarding_termination([*command, *extra], cwd=PROJECT_ROOT)
        done.append({"command": text, "returncode": rc, "seconds": round(time.monotonic() - started, 1)})
        if rc != 0:
            print(f"results: failed ({rc}): {text}", file=sys.stderr)
            break
    return done


def call_forwarding_termination(command: list[str], cwd=None) -> int:
    """Run a stage and wait for it. A SIGTERM to the runner (a `kill`, a job scheduler's stop) reaches the
    stage too, and the runner stops once the stage has, instead of starting the next step; otherwise the
    training would go on alone, an orphan still writing its folder. (A stopped training continues from its
    last checkpoint on the next `run`.) Python takes signal handlers only in the main thread; called from
    another, the stage simply runs to its end."""
    child = subprocess.Popen(command, cwd=cwd)
    if threading.current_thread() is not threading.main_thread():
        return child.wait()
    received = []

    def forward(signum, frame):
        received.append(signum)
        child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        returncode = child.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the stage too (one process group): let it end, then stop
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if received:
        raise SystemExit(128 + received[0])
    return returncode


# ---- RESULTS.md ------------------------------------------------------------------------------------

def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _ci(entry: dict | None, digits: int = 3) -> str:
    if not entry or entry.get("value") is None:
        return "–"
    if entry.get("ci_low") is None:
        return f"{entry['value']:.{digits}f}"
    return f"{entry['value']:.{digits}f} [{entry['ci_low']:.{digits}f}, {entry['ci_high']:.{digits}f}]"


def _delta(entry: dict | None, digits: int = 3) -> str:
    if not entry:
        return "–"
    star = " *" if entry.get("excludes_zero") else ""
    return f"{entry['delta']:+.{digits}f} [{entry['ci_low']:+.{digits}f}, {entry['ci_high']:+.{digits}f}]{star}"


def _minutes(provenance: dict) -> str:
    """A run's wall time, with the machine's 1-minute load average at its end where recorded (a machine
    shared with other work stretches it)."""
    seconds = provenance.get("seconds")
    if seconds is None:
        return "–"
    load = provenance.get("hardware", {}).get("load_average")
    text = f"{seconds / 60:.1f} min" + (f" (load {load[0]:.1f})" if load else "")
    summary = provenance.get("notes", {}).get("summary", {})
    if summary.get("resumed_from"):
        # a resumed training run: its command's time is only the last sitting's
        step = re.fullmatch(r"checkpoint-(\d+)", Path(summary["resumed_from"]).name)
        at = f"resumed at step {int(step.group(1)):,} of {summary.get('steps', 0):,}" if step else "resumed"
        text += " for the last sitting"
        if summary.get("train_seconds") is not None and summary.get("sittings"):
            text += f"; {summary['train_seconds'] / 60:.1f} min of training over {summary['sittings']} sittings ({at})"
        else:
            text += f" only ({at}; earlier training untimed)"
    return text


def _machines(runs: list[tuple[str, dict]]) -> list[str]:
    """One line per machine (its CPU's name or platform, cores, GPUs) naming the runs recorded on it, so
    times are compared within a machine. A record without the CPU's name (older ones) joins the machine of
    the same platform and size when just one such machine is named."""
    groups: dict[tuple, dict[str, set[str]]] = {}  # (platform, cores, GPUs) -> CPU name ("" unknown) -> runs
    for run, provenance in runs:
        hw = provenance.get("hardware", {})
        key = (hw.get("platform", "?"), hw.get("cpu_count", "?"), tuple(hw.get("gpus") or []))
        groups.setdefault(key, {}).setdefault(hw.get("cpu") or "", set()).add(run)
    lines = []
    for (platform, count, gpus), by_cpu in groups.items():
        named = [cpu for cpu in by_cpu if cpu]
        if len(named) == 1 and "" in by_cpu:
            by_cpu[named[0]] |= by_cpu.pop("")
        lines += [f"{cpu or platform}, {count} cores, {', '.join(gpus) or 'no GPU'}: {', '.join(sorted(names))}"
                  for cpu, names in by_cpu.items()]
    return sorted(lines)


def collect(task: Task, method: str, root: Path = RUNS_DIR) -> dict | None:
    """A finished run's numbers: the finetune record and every evaluation's scores, or None."""
    run_dir = task.run_dir(method, root)
    train = _read_json(run_dir / "provenance.json")
    if train is None:
        return None
    evaluations = {}
    for e in task.evaluations:
        folder = task.scores_dir(method, e, root)
        scores, provenance = _read_json(folder / "scores.json"), _read_json(folder / "provenance.json")
        if scores is not None and provenance is not None:
            evaluations[e.name] = {"scores": scores, "provenance": provenance, "evaluation": e}
    return {"train": train, "config": load_yaml(run_dir / "config.yaml"), "evaluations": evaluations}


def _data_used(summary: dict, config: dict) -> str:
    parts = [f"train {summary.get('examples', '?'):,}" if isinstance(summary.get("examples"), int) else "train ?"]
    if summary.get("extra_train_examples"):
        copies = summary.get("extra_train_held_out_copies")
        parts[0] += (f" ({summary['extra_train_examples']:,} from extra_train_data"
                     + (f", {copies:,} copies of held-out rows left out)" if copies else ")"))
    if summary.get("eval_examples"):
        parts.append(f"eval {summary['eval_examples']:,}")
    if summary.get("unused_examples"):
        parts.append(f"{summary['unused_examples']:,} unused (train_subset)")
    parts.append(f"max {summary.get('max_length', config.get('max_length'))} tokens, {config.get('truncation', 'head')}")
    if config.get("bf16"):
        parts.append("bf16")
    if summary.get("pooling") == "mean":
        parts.append("mean pooling")
    if summary.get("problem_type") == "multi_label":  # runs from before head_bias_init started at zero
        start = "zero"
        if summary.get("head_bias_init") == "prior":
            start = "label rates" + (" as weighted" if summary.get("class_weights") or summary.get("balanced_sampling")
                                     else "")
        parts.append(f"head biases from {start}")
    epochs = config.get("num_train_epochs", "?")
    epochs = int(epochs) if isinstance(epochs, float) and epochs.is_integer() else epochs
    parts.append(f"{epochs} epoch{'' if epochs == 1 else 's'}, lr {config.get('learning_rate', '?'):g}")
    return "; ".join(parts)


def _target_met(task: Task, scores: dict) -> str:
    if not task.target:
        return ""
    value = scores.get("intervals", {}).get(task.target["metric"], {}).get("value")
    if value is None:
        return "?"
    return "yes" if value >= task.target["at_least"] else "**no**"


def report(tasks: list[Task], root: Path = RECORDS_DIR, out: Path | None = RESULTS_MD,
           bench: Path | None = BENCH_RESULTS, bench_gpu: Path | None = BENCH_GPU_RESULTS) -> str:
    """RESULTS.md from the run records under `root` (the kept records by default; a runs folder has the
    same layout) and the benchmark suite's results, where `bench` (and the GPU checks' `bench_gpu`)
    exist; tasks or methods without a finished run are listed as not run. Returns the markdown, also
    written to `out` unless None."""
    intro = ["# Results", "",
             "Generated by `python evaluate/results.py report` from the run records kept in `evaluate/records/` "
             "(each run's provenance.json, config.yaml and scores.json, copied there from `runs/results/` by "
             "`python evaluate/results.py run`, or `make results`); do not edit by hand.", "",
             "Every number is measured on the rows each run held out (or the official test split), with a "
             "bootstrap 95% confidence interval in brackets (resamples of the test rows). The TF-IDF "
             "baseline (word 1-2 grams + logistic regression) is fitted on exactly the classifier's training "
             "rows in the same evaluation run; \"Δ vs TF-IDF\" is the paired difference, * where its interval "
             "excludes zero. Times are wall-clock minutes of the whole command, with the machine's load average "
             "where the run recorded it (2 cores shared with other work run slower); the Hardware section says "
             "which machine ran which run.", ""]
    lines = []
    summary_rows = []  # one per (task, method, evaluation): the headline metric only
    provenances = []
    missing = []
    for task in tasks:
        lines += [f"## {task.title}", "", f"Data: {task.data}", ""]
        header = ["method", "evaluated on", "test rows", *task.metrics, "TF-IDF " + task.metrics[0],
                  f"Δ vs TF-IDF ({task.metrics[0]})"]
        if task.target:
            header.append(f"target {task.target['metric']} ≥ {task.target['at_least']}")
        header += ["data used", "train time", "eval time"]
        rows = []
        per_label_source = None
        for method in task.methods:
            found = collect(task, method, root)
            if found is None or not found["evaluations"]:
                missing.append(f"{task.name} ({method})")
                continue
            summary = found["train"].get("notes", {}).get("summary", {})
            run_name = task.run_dir(method, root).name
            provenances.append((run_name, found["train"]))
            for name, ev in found["evaluations"].items():
                scores = ev["scores"]
                intervals = scores.get("intervals", {})
                baseline = scores.get("tfidf_baseline") or {}
                row = [method, ev["evaluation"].title or name, f"{scores.get('examples', '?'):,}",
                       *[_ci(intervals.get(m)) for m in task.metrics],
                       _ci(baseline.get("intervals", {}).get(task.metrics[0])),
                       _delta(baseline.get("classifier_minus_baseline", {}).get(task.metrics[0]))]
                if task.target:
                    row.append(_target_met(task, scores))
                headline = task.metrics[0]
                summary_rows.append([task.title, method, ev["evaluation"].title or name,
                                     f"{headline} {_ci(intervals.get(headline))}",
                                     _ci(baseline.get("intervals", {}).get(headline)),
                                     _delta(baseline.get("classifier_minus_baseline", {}).get(headline)),
                                     _target_met(task, scores) or "none set"])
                row += [_data_used(summary, found["config"]), _minutes(found["train"]), _minutes(ev["provenance"])]
                rows.append(row)
                provenances.append((run_name, ev["provenance"]))
                if task.per_label and name == task.evaluations[0].name:
                    # the per-label tables show the best method's run (ties: the earlier in the plan)
                    value = intervals.get(headline, {}).get("value", float("-inf"))
                    if per_label_source is None or value > per_label_source[0]:
                        per_label_source = (value, method, scores)
        if rows:
            lines += _table(header, rows)
        else:
            lines.append("Not run yet.")
        lines.append("")
        if per_label_source:
            _, method, scores = per_label_source
            best = f"the best {task.metrics[0]}: " if len(task.methods) > 1 else ""
            lines += [f"Per label ({best}{method}, {task.evaluations[0].title or task.evaluations[0].name}; "
                      f"thresholds: {scores.get('threshold_source', 'argmax')}):", ""]
            baseline = scores.get("tfidf_baseline", {}).get("per_label", {})
            multi = scores.get("problem_type") == "multi_label"
            counts = ["tp", "fp", "fn", "tn"] if multi else []  # each label's 2x2 confusion matrix
            label_rows = []
            for label, v in scores["per_label"].items():
                label_rows.append([label, *[_num(v.get(k)) for k in task.per_label], str(v.get("support", "")),
                                   *[str(v.get(k, "")) for k in counts],
                                   _num(baseline.get(label, {}).get(task.per_label[-1]))])
            lines += _table(["label", *task.per_label, "support", *counts, f"TF-IDF {task.per_label[-1]}"],
                            label_rows)
            lines.append("")
            if scores.get("confusion_matrix"):  # single-label: rows true, columns predicted
                names = scores.get("confusion_matrix_labels") or list(scores["per_label"])
                lines += ["Confusion matrix (rows: true class, columns: predicted):", ""]
                lines += _table(["", *names], [[name, *map(str, row)]
                                               for name, row in zip(names, scores["confusion_matrix"])])
                lines.append("")
        if task.studies:
            lines += ["Reported in the original studies (../shared/studies/; other models, data and splits, so "
                      "for orientation, not a like-for-like comparison):", ""]
            lines += [f"- {s}" for s in task.studies]
            lines.append("")
        if task.notes:
            lines += [f"Note: {n}" for n in task.notes] + [""]
        lines += ["Commands:", "", "```bash", *[shlex.join(c) for c in task.prepare]]
        for method in task.methods:
            lines += [shlex.join(c) for c in task.commands(method)]
        lines += ["```", ""]
    lines += ["## Hardware", ""] + [f"- {h}" for h in _machines(provenances)] + [""]
    gpu_ran = set()
    if bench_gpu is not None and bench_gpu.exists():
        gpu_ran = {e["name"] for e in json.loads(bench_gpu.read_text(encoding="utf-8")).get("benchmarks", [])
                   if e.get("status") == "ok"}
    if bench is not None and bench.exists():
        lines += bench_section(bench, ran_elsewhere=gpu_ran)
    if bench_gpu is not None and bench_gpu.exists():
        lines += bench_section(bench_gpu, heading="GPU checks (`make bench-gpu`)")
    if missing:
        lines += ["## Not run", "", "No finished run record for: " + ", ".join(missing) + ".", ""]
    summary = ["## Summary", "", "The first metric of each task; the sections below have the rest.", ""]
    summary += _table(["task", "method", "evaluated on", "headline", "TF-IDF", "Δ vs TF-IDF", "target met"],
                      summary_rows) if summary_rows else ["No finished runs yet."]
    text = "\n".join(intro + summary + [""] + lines)
    if out is not None:
        out.write_text(text, encoding="utf-8")
    return text


def bench_section(bench: Path, heading: str | None = None, ran_elsewhere: set[str] = frozenset()) -> list[str]:
    """The benchmark suite's summary (bench/results.md, written by `make bench[-full]` beside results.json) under
    a heading of this file, and each benchmark it skipped, the GPU checks where there is no GPU, with
    the suite's reason (unless `ran_elsewhere`: the GPU checks' file has it). `heading` names another run
    of the suite (the GPU checks' file)."""
    summary = bench.with_suffix(".md")
    if not summary.exists():
        return []
    body = summary.read_text(encoding="utf-8").splitlines()
    if body and body[0].startswith("# "):
        body = body[1:]
    while body and not body[-1].strip():
        body.pop()
    recorded = json.loads(bench.read_text(encoding="utf-8"))
    target = "make bench-full" if recorded.get("mode") == "full" else "make bench"
    lines = [f"## {heading or f'Speed (`{target}`)'}", "", f"Copied from `bench/{summary.name}` (ratios are against a "
             "baseline measured in the same run):", *body, ""]
    entries = recorded.get("benchmarks", [])
    skipped = [f"- {e['name']} ({e.get('compares', '')}): not run: {e.get('reason', '')}."
               if e["name"] not in ran_elsewhere else f"- {e['name']}: run on a GPU machine, below."
               for e in entries if e.get("status") == "skipped"]
    if skipped:
        lines += ["Not run on this machine:", "", *skipped, ""]
    return lines


def _num(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="evaluate/results.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="train and score the plan's tasks (finished runs are skipped)")
    run_p.add_argument("--only", nargs="+", help="task names (default: all)")
    run_p.add_argument("--methods", nargs="+", help="methods (default: every one a task lists)")
    run_p.add_argument("--rerun", action="store_true",
                       help="train and score finished runs again, replacing them (after a config change: a finished "
                            "run is not compared with its config); a task's prepared data is kept")
    run_p.add_argument("--dry_run", action="store_true", help="print the commands only")
    report_p = sub.add_parser("report", help=f"write {RESULTS_MD.name} from the kept run records")
    report_p.add_argument("--records", type=Path, default=RECORDS_DIR,
                          help="the records folder (default: evaluate/records; runs/results reads the run folders)")
    sub.add_parser("list", help="the plan's tasks, methods and commands")
    parser.add_argument("--plan", type=Path, default=PLAN)
    args = parser.parse_args(argv)
    args.plan = args.plan.resolve()
    if getattr(args, "records", None):
        args.records = args.records.resolve()  # before the chdir: relative to where it was typed
    os.chdir(PROJECT_ROOT)  # the plan's run folders and the stage commands are relative to the project
    try:
        tasks = load_plan(args.plan)
        if args.command == "run":
            results = run(tasks, args.only, args.methods, rerun=args.rerun, dry_run=args.dry_run)
            return 1 if any(r["returncode"] for r in results) else 0
        if args.command == "report":
            report(tasks, root=args.records)
            print(f"results: wrote {RESULTS_MD} from {args.records}")
            return 0
        for task in tasks:
            for command in task.prepare:
                print(shlex.join(command))
            for method in task.methods:
                for command in task.commands(method):
                    print(shlex.join(command))
        return 0
    except ConfigError as e:
        print(f"results: {e}", file=sys.stderr)
        return 2

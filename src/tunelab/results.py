"""Result runs: the classification recipes trained and scored on real data, and RESULTS.md written from
their run records (never by hand).

The plan (evaluate/results.yaml) lists each task: its finetune and evaluate configs, the methods
compared (full fine-tuning, LoRA) as command-line overrides, what data it uses, its headline metrics,
its target and what the original studies reported. `run` executes each (task, method) as the two
commands a user would type, skipping runs that already finished; `report` reads every finished
run's records and writes the tables. The run folders (runs/results/, weights included) stay out of the
repository; each finished run's provenance.json, config.yaml and scores.json are kept in
evaluate/records/, which the report reads, so a fresh clone remakes RESULTS.md exactly.

The plan's generate runs are teacher data generation: each variant (the teacher in process, or behind
a local server the runner starts and stops) is one generate command; its provenance.json, config.yaml,
stats.json, its kept tasks and a fixed random draw of them (examples.json) are kept the same way.

The plan's student runs compare students on one held-aside set: each variant is the base as it is or a
finetune with its overrides, then an inference run; one evaluate command scores all their answers with
paired deltas against the first. Each step's records and a few held-aside records with every variant's
answer are kept.

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
import urllib.request
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from importlib.util import find_spec
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
BENCH_SMOLLM2_RESULTS = PROJECT_ROOT / "bench" / "results_smollm2.json"  # written by `make bench-smollm2`
# the kept tasks too: a student run trains on them from a fresh clone
GENERATE_RECORD_FILES = ("provenance.json", "config.yaml", "stats.json", "self_instruct.alpaca.json")
EXAMPLES_FILE = "examples.json"  # kept tasks drawn from the run's data, so the report never needs the run folder
EXAMPLES_SEED = 0
EXAMPLE_CHARS = 400  # a longer field of a shown task is cut there
# Placeholders a serve command may hold, resolved when the server starts (so `list` works without them), and
# how the commands in RESULTS.md spell them for a shell.
SERVE_PLACEHOLDERS = {"smollm2_gguf": ("tunelab.smollm2", "gguf_path")}
SERVE_PLACEHOLDER_SHELL = {
    "smollm2_gguf": "\"$(python -c 'from tunelab.smollm2 import gguf_path; print(gguf_path())')\""}
SERVER_EXTRAS = {"llama_cpp": "llamacpp"}  # a server module -> the extra that installs it
READY_TIMEOUT_S = 180.0  # loading a model takes a while; a server that never answers must not hang the runner
STOP_TIMEOUT_S = 30.0


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


@dataclass
class Server:
    """A local teacher server a variant needs: started before its generate command, stopped after it."""
    command: list[str]
    ready: str  # a URL that answers once the server can take requests
    timeout_s: float = READY_TIMEOUT_S

    def shell(self) -> str:
        """The command as typed in a shell, its placeholders spelled out."""
        text = shlex.join(self.command)
        for name, shell in SERVE_PLACEHOLDER_SHELL.items():
            text = text.replace(shlex.quote(f"{{{name}}}"), shell)
        return text


@dataclass
class GenerateRun:
    name: str
    title: str
    config: str
    variants: dict[str, list[str]]  # variant -> command-line overrides, like a task's methods
    data: str
    serve: dict[str, Server] = field(default_factory=dict)
    examples: int = 20

    def run_dir(self, variant: str, root: Path = RUNS_DIR) -> Path:
        return root / f"{self.name}_{variant}"

    def command(self, variant: str, root: Path = RUNS_DIR, python: str = "python") -> list[str]:
        """The generate command a user would type; an unfinished run continues when it is typed again."""
        return [python, "generate/run.py", "--config", self.config, "--output_dir", str(self.run_dir(variant, root)),
                *self.variants[variant]]

    def shell_lines(self, variant: str) -> list[str]:
        """The variant as typed in a shell: its server in the background, the command, the server stopped."""
        line = shlex.join(self.command(variant))
        if variant not in self.serve:
            return [line]
        return [f"{self.serve[variant].shell()} &", line, "kill $!"]


@dataclass
class StudentRun:
    """Students compared on one held-aside set: each variant is the base as it is (no arguments) or a
    finetune with its overrides, then an inference run over the held-aside records; one evaluate command
    scores every variant's answers with paired deltas against the first."""
    name: str
    title: str
    base: str
    finetune: str  # configs: finetune/configs, configs/inference, evaluate/configs
    inference: str
    evaluate: str
    variants: dict[str, list[str] | None]  # variant -> finetune overrides; None: the base untuned
    data: str
    prepare: list[list[str]] = field(default_factory=list)
    examples: int = 5

    def run_dir(self, variant: str, root: Path = RUNS_DIR) -> Path:
        return root / self.name / variant

    def scores_dir(self, root: Path = RUNS_DIR) -> Path:
        return root / self.name / "scores"

    def model(self, variant: str, root: Path = RUNS_DIR) -> str:
        return self.base if self.variants[variant] is None else str(self.run_dir(variant, root) / "student")

    def commands(self, variant: str, root: Path = RUNS_DIR, python: str = "python") -> list[list[str]]:
        """The variant's finetune command (none for the untuned base), then its inference command."""
        run = self.run_dir(variant, root)
        train = [] if self.variants[variant] is None else [
            [python, "finetune/train.py", "--config", self.finetune, "--output_dir", str(run / "student"),
             *self.variants[variant]]]
        return [*train, [python, "inference.py", "--config", self.inference, "--model", self.model(variant, root),
                         "--output_dir", str(run / "inference")]]

    def score_command(self, root: Path = RUNS_DIR, python: str = "python") -> list[str]:
        first, *others = [str(self.run_dir(v, root) / "inference" / "predictions.jsonl") for v in self.variants]
        return [python, "evaluate/score.py", "--config", self.evaluate, "--predictions", first,
                *(["--compare", *others] if others else []), "--run_names", *self.variants,
                "--output_dir", str(self.scores_dir(root))]


@dataclass
class ComparisonRun:
    """Classifiers of every kind scored on the same test rows: each variant is its own commands (train,
    answer, score; `{run}` stands for the variant's folder), the last of which writes its scores."""
    name: str
    title: str
    data: str
    variants: dict[str, list[list[str]]]
    prepare: list[list[str]] = field(default_factory=list)
    studies: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def run_dir(self, variant: str, root: Path = RUNS_DIR) -> Path:
        return root / self.name / variant

    def commands(self, variant: str, root: Path = RUNS_DIR, python: str = "python") -> list[list[str]]:
        run = str(self.run_dir(variant, root))
        return [[python if i == 0 and arg == "python" else arg.replace("{run}", run) for i, arg in enumerate(command)]
                for command in self.variants[variant]]

    def scores_dir(self, variant: str, root: Path = RUNS_DIR) -> Path:
        last = self.commands(variant, root)[-1]
        return Path(last[last.index("--output_dir") + 1])


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
        _need_output_dirs(path, f"task {entry['name']}", tasks[-1].prepare)
    if not tasks:
        raise ConfigError(f"{path}: no tasks")
    return tasks


def load_generate(path: Path = PLAN) -> list[GenerateRun]:
    """The plan's generate runs (none where it lists none)."""
    data = load_yaml(path)
    runs = []
    for i, entry in enumerate(data.get("generate") or []):
        try:
            variants = {v: [str(a) for a in (args or [])] for v, args in entry["variants"].items()}
            serve = {v: Server(command=[str(a) for a in spec["command"]], ready=spec["ready"],
                               timeout_s=float(spec.get("timeout_s", READY_TIMEOUT_S)))
                     for v, spec in (entry.get("serve") or {}).items()}
            runs.append(GenerateRun(name=entry["name"], title=entry["title"], config=entry["config"],
                                    variants=variants, data=entry["data"], serve=serve,
                                    examples=int(entry.get("examples", 20))))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"{path}: generate run {i} ({entry.get('name', '?')}): {e}") from e
        if unknown := sorted(set(serve) - set(variants)):
            raise ConfigError(f"{path}: generate run {entry['name']}: serve names no variant {unknown}")
    return runs


def load_students(path: Path = PLAN) -> list[StudentRun]:
    """The plan's student comparisons (none where it lists none)."""
    data = load_yaml(path)
    runs = []
    for i, entry in enumerate(data.get("students") or []):
        try:
            runs.append(StudentRun(
                name=entry["name"], title=entry["title"], base=entry["base"], finetune=entry["finetune"],
                inference=entry["inference"], evaluate=entry["evaluate"], data=entry["data"],
                variants={v: None if args is None else [str(a) for a in args] for v, args in entry["variants"].items()},
                prepare=[[str(a) for a in command] for command in entry.get("prepare") or []],
                examples=int(entry.get("examples", 5))))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"{path}: student run {i} ({entry.get('name', '?')}): {e}") from e
        _need_output_dirs(path, f"student run {entry['name']}", runs[-1].prepare)
        if len(runs[-1].variants) < 2:
            raise ConfigError(f"{path}: student run {entry['name']}: give at least two variants to compare")
    return runs


def load_comparisons(path: Path = PLAN) -> list[ComparisonRun]:
    """The plan's comparisons (none where it lists none)."""
    data = load_yaml(path)
    runs = []
    for i, entry in enumerate(data.get("comparisons") or []):
        try:
            runs.append(ComparisonRun(
                name=entry["name"], title=entry["title"], data=entry["data"],
                variants={v: [[str(a) for a in command] for command in commands]
                          for v, commands in entry["variants"].items()},
                prepare=[[str(a) for a in command] for command in entry.get("prepare") or []],
                studies=list(entry.get("studies") or []), notes=list(entry.get("notes") or [])))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"{path}: comparison {i} ({entry.get('name', '?')}): {e}") from e
        _need_output_dirs(path, f"comparison {entry['name']}",
                          [*runs[-1].prepare, *(c for commands in runs[-1].variants.values() for c in commands)])
    return runs


def _need_output_dirs(path: Path, owner: str, commands: list[list[str]]) -> None:
    """Each command names its --output_dir: its run record there says whether it finished."""
    for command in commands:
        if "--output_dir" not in command[:-1]:
            raise ConfigError(f"{path}: {owner}: command {command} needs --output_dir")


def select(tasks: list[Task], only: list[str] | None, methods: list[str] | None,
           generate_runs: list[GenerateRun] = (), student_runs: list[StudentRun] = (),
           comparisons: list[ComparisonRun] = ()) -> list[tuple[Task | GenerateRun | StudentRun | ComparisonRun, str]]:
    """(task, method) pairs, then (generate run, variant), (student run, variant) and (comparison, variant)
    pairs; `only` names any of them, `methods` methods or variants."""
    names = {t.name for t in [*tasks, *generate_runs, *student_runs, *comparisons]}
    unknown = sorted(set(only or []) - names)
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown}; the plan has {sorted(names)}")
    chosen = [t for t in [*tasks, *generate_runs, *student_runs, *comparisons] if not only or t.name in only]
    pairs = [(t, m) for t in chosen for m in (t.methods if isinstance(t, Task) else t.variants)
             if not methods or m in methods]
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


def keep_generate_records(generate_run: GenerateRun, variant: str, root: Path = RUNS_DIR,
                          records: Path = RECORDS_DIR) -> Path | None:
    """Copy a finished generate run's GENERATE_RECORD_FILES to `records`, with EXAMPLES_FILE: its `examples`
    kept tasks (or moderation QA posts) drawn at random (a fixed seed, so a rerun of the report shows the same ones) in the run's
    order, as the teacher wrote them. Returns the kept folder, or None where the run has not finished."""
    import random
    import shutil

    run_dir = generate_run.run_dir(variant, root)
    if not finished(run_dir):
        return None
    kept = generate_run.run_dir(variant, records)
    staging = kept.with_name(f".{kept.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in GENERATE_RECORD_FILES:
        if (run_dir / name).exists():
            shutil.copyfile(run_dir / name, staging / name)
    if (run_dir / "moderation_qa.jsonl").exists():  # kept posts: the comment, its QA and verdicts
        with open(run_dir / "moderation_qa.jsonl", encoding="utf-8") as f:
            kept_records = [json.loads(line) for line in f if line.strip()]
        fields = ("id", "text", "qa", "verdicts")
    else:
        kept_records, fields = _read_json(run_dir / "self_instruct.alpaca.json") or [], ("instruction", "input", "output")
    count = min(generate_run.examples, len(kept_records))
    drawn = sorted(random.Random(EXAMPLES_SEED).sample(range(len(kept_records)), count))
    examples = [{k: kept_records[i].get(k, "") for k in fields} for i in drawn]
    (staging / EXAMPLES_FILE).write_text(json.dumps(examples, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    shutil.rmtree(kept, ignore_errors=True)
    staging.rename(kept)
    return kept


def keep_student_records(student_run: StudentRun, root: Path = RUNS_DIR, records: Path = RECORDS_DIR) -> Path | None:
    """Copy a scored student run's records to `records`: each variant's finetune and inference
    provenance.json and config.yaml, the scores folder's RECORD_FILES, and EXAMPLES_FILE: `examples`
    held-aside records drawn at random (a fixed seed) with every variant's answer. Returns the kept folder,
    or None where the scores have not finished."""
    import random
    import shutil

    scores = student_run.scores_dir(root)
    if not finished(scores):
        return None
    kept = records / student_run.name
    staging = kept.with_name(f".{kept.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    folders = [scores] + [d for v in student_run.variants for d in (student_run.run_dir(v, root) / "student",
                                                                     student_run.run_dir(v, root) / "inference")
                          if finished(d)]
    for folder in folders:
        target = staging / folder.relative_to(root / student_run.name)
        target.mkdir(parents=True, exist_ok=True)
        for name in RECORD_FILES:
            if (folder / name).exists():
                shutil.copyfile(folder / name, target / name)
    with open(scores / "per_example.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    drawn = sorted(random.Random(EXAMPLES_SEED).sample(range(len(rows)), min(student_run.examples, len(rows))))
    examples = [{k: rows[i].get(k, "") for k in ("id", "instruction", "input", "reference")}
                | {"answers": {v: rows[i].get(f"{v}.prediction", "") for v in student_run.variants}} for i in drawn]
    (staging / EXAMPLES_FILE).write_text(json.dumps(examples, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    shutil.rmtree(kept, ignore_errors=True)
    staging.rename(kept)
    return kept


def keep_comparison_records(comparison: ComparisonRun, variant: str, root: Path = RUNS_DIR,
                            records: Path = RECORDS_DIR) -> Path | None:
    """Copy a scored comparison variant's records (RECORD_FILES of each of its commands' folders) to
    `records`, in the same layout, replacing what was kept of it before. Returns the kept folder, or None
    where its scores have not finished."""
    import shutil

    if not finished(comparison.scores_dir(variant, root)):
        return None
    run_dir = comparison.run_dir(variant, root)
    kept = comparison.run_dir(variant, records)
    staging = kept.with_name(f".{kept.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    for command in comparison.commands(variant, root):
        folder = Path(command[command.index("--output_dir") + 1])
        target = staging / folder.relative_to(run_dir)
        target.mkdir(parents=True, exist_ok=True)
        for name in RECORD_FILES:
            if (folder / name).exists():
                shutil.copyfile(folder / name, target / name)
    shutil.rmtree(kept, ignore_errors=True)
    staging.rename(kept)
    return kept


def run(tasks: list[Task], only=None, methods=None, *, root: Path = RUNS_DIR, rerun: bool = False,
        dry_run: bool = False, records: Path | None = RECORDS_DIR,
        generate_runs: list[GenerateRun] = (), student_runs: list[StudentRun] = (),
        comparisons: list[ComparisonRun] = ()) -> list[dict]:
    """Train and score each (task, method) in turn with the stage commands, then each generate run's
    variants, then each student run's (its scores once all its variants have answered), then each
    comparison's variants; a finished step is
    skipped (its run record is there) unless `rerun`. A failed step stops that task's method (or that
    variant), not the others. Each finished one's records are then kept under `records` (None: not kept)."""
    done = []
    students: dict[str, list[dict]] = {}  # student run -> the steps its variants ran
    for item, method in select(tasks, only, methods, generate_runs, student_runs, comparisons):
        generating = isinstance(item, GenerateRun)
        steps = (_run_generate if generating else _run_steps)(item, method, root, rerun, dry_run)
        done += steps
        if isinstance(item, StudentRun):
            students.setdefault(item.name, []).extend(steps)
            continue
        # after a failed step an older evaluation's scores may still sit beside a new model: keep nothing
        if records is not None and not dry_run and not any(r["returncode"] for r in steps):
            keep = (keep_generate_records if generating else
                    keep_comparison_records if isinstance(item, ComparisonRun) else keep_records)
            if kept := keep(item, method, root, records):
                print(f"results: records kept in {kept}")
    for student_run in student_runs:
        if student_run.name not in students:
            continue
        if any(r["returncode"] for r in students[student_run.name]):  # its older answers are not this run's
            print(f"results: {student_run.name} not scored: a step failed", file=sys.stderr)
            continue
        steps = _score_students(student_run, root, rerun or bool(students[student_run.name]), dry_run)
        done += steps
        if records is not None and not dry_run and not any(r["returncode"] for r in steps + students[student_run.name]):
            if kept := keep_student_records(student_run, root, records):
                print(f"results: records kept in {kept}")
    return done


def _score_students(student_run: StudentRun, root: Path, again: bool, dry_run: bool) -> list[dict]:
    """The student run's evaluate command, once every variant has answered; again where any answered anew."""
    command = student_run.score_command(root, python=sys.executable)
    out = student_run.scores_dir(root)
    text = shlex.join(["python", *command[1:]])
    unanswered = [v for v in student_run.variants if not finished(student_run.run_dir(v, root) / "inference")]
    if unanswered and not dry_run:
        print(f"results: {student_run.name} not scored yet: no answers from {', '.join(unanswered)}")
        return []
    if finished(out) and not again:
        print(f"results: {out} is finished; skipped ({text})")
        return []
    extra = ["--overwrite", "true"] if out.exists() and any(out.iterdir()) else []
    print(f"results: {text} {shlex.join(extra)}".rstrip(), flush=True)
    if dry_run:
        return []
    started = time.monotonic()
    rc = call_forwarding_termination([*command, *extra], cwd=PROJECT_ROOT)
    if rc != 0:
        print(f"results: failed ({rc}): {text}", file=sys.stderr)
    return [{"command": text, "returncode": rc, "seconds": round(time.monotonic() - started, 1)}]


def _run_generate(generate_run: GenerateRun, variant: str, root: Path, rerun: bool,
                  dry_run: bool) -> list[dict]:
    """One generate variant: skipped when finished, else run as typed (an unfinished run continues from
    its teacher cache), inside its server's lifetime where it has one."""
    command = generate_run.command(variant, root, python=sys.executable)
    out = generate_run.run_dir(variant, root)
    text = shlex.join(["python", *command[1:]])
    if finished(out) and not rerun:
        print(f"results: {out} is finished; skipped ({text})")
        return []
    extra = ["--overwrite", "true"] if rerun and out.exists() and any(out.iterdir()) else []
    server = generate_run.serve.get(variant)
    if server:
        print(f"results: serving {server.shell()}", flush=True)
    print(f"results: {text} {shlex.join(extra)}".rstrip(), flush=True)
    if dry_run:
        return []
    started = time.monotonic()
    try:
        with serving(server, out.with_name(f"{out.name}.server.log")) if server else nullcontext():
            rc = call_forwarding_termination([*command, *extra], cwd=PROJECT_ROOT)
    except ConfigError as e:  # the server's: the generate command's own failures are its return code
        print(f"results: {e}", file=sys.stderr)
        return [{"command": text, "returncode": 1, "seconds": round(time.monotonic() - started, 1)}]
    if rc != 0:
        print(f"results: failed ({rc}): {text}", file=sys.stderr)
    return [{"command": text, "returncode": rc, "seconds": round(time.monotonic() - started, 1)}]


class ServerError(ConfigError):
    """A variant's server could not be started or never answered."""


def server_command(server: Server) -> list[str]:
    """The serve command as run: `python` is this interpreter, placeholders filled in; a server module that
    is not installed is named with the extra that installs it."""
    command = [sys.executable, *server.command[1:]] if server.command[0] == "python" else list(server.command)
    if "-m" in command[:-1]:
        module = command[command.index("-m") + 1]
        if find_spec(module.split(".")[0]) is None:
            extra = SERVER_EXTRAS.get(module.split(".")[0])
            install = f'pip install -e ".[{extra}]"' if extra else f"install {module.split('.')[0]}"
            raise ServerError(f"{module} is not installed, which {shlex.join(server.command)} needs: {install}")
    for name, (module, function) in SERVE_PLACEHOLDERS.items():
        if any(f"{{{name}}}" in a for a in command):
            from importlib import import_module

            value = str(getattr(import_module(module), function)())
            command = [a.replace(f"{{{name}}}", value) for a in command]
    return command


@contextmanager
def serving(server: Server, log: Path):
    """Start `server` (its output in `log`), wait until its ready URL answers, and stop it afterwards, whatever
    happens in between (a failed run, Ctrl-C, a SIGTERM to the runner): a server left behind would hold its port
    and its memory."""
    command = server_command(server)
    log.parent.mkdir(parents=True, exist_ok=True)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # A SIGTERM's default ends the runner at once, its server orphaned: end it through `finally` instead
        # (call_forwarding_termination takes the signal over while the generate command runs).
        previous = signal.signal(signal.SIGTERM, _exit_on_signal)
    text = shlex.join(server.command)
    try:
        with log.open("w", encoding="utf-8") as out:
            process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)
    except OSError as e:  # not installed, not executable
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        raise ServerError(f"{text} could not start: {e}") from None
    try:
        deadline = time.monotonic() + server.timeout_s
        while not _answers(server.ready):
            if process.poll() is not None:
                raise ServerError(f"{text} exited ({process.returncode}) before answering at {server.ready}; "
                                  f"its log ({log}) ends: {_log_tail(log)}")
            if time.monotonic() > deadline:
                raise ServerError(f"{text} did not answer at {server.ready} within {server.timeout_s:g} s; "
                                  f"its log ({log}) ends: {_log_tail(log)}")
            time.sleep(0.25)
        yield process
    finally:
        _stop(process)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:  # refused while starting, or an HTTP error
        return False


def _log_tail(log: Path, lines: int = 3) -> str:
    text = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return " / ".join(text[-lines:])[-500:] or "(empty)"


def _stop(process: subprocess.Popen, timeout_s: float = STOP_TIMEOUT_S) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:  # a server busy with a request may not stop on a SIGTERM
            process.kill()
            process.wait()


def _run_steps(task: Task, method: str, root: Path, rerun: bool, dry_run: bool) -> list[dict]:
    """One (task, method)'s commands (the task's data preparation first), each finished one skipped."""
    done = []
    prepare = [[sys.executable, *c[1:]] if c[0] == "python" else c for c in task.prepare]
    steps = [(c, False) for c in prepare] + [(c, rerun) for c in task.commands(method, root, python=sys.executable)]
    ran = False
    for command, again in steps:
        again = again or ran  # what a step made from an earlier step's older output is not this one's
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
        ran = True
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
        lines += [f"{_machine({'cpu': cpu, 'platform': platform, 'cpu_count': count, 'gpus': gpus})}: "
                  f"{', '.join(sorted(names))}" for cpu, names in by_cpu.items()]
    return sorted(lines)


def _machine(hardware: dict) -> str:
    return (f"{hardware.get('cpu') or hardware.get('platform', '?')}, {hardware.get('cpu_count', '?')} cores, "
            f"{', '.join(hardware.get('gpus') or []) or 'no GPU'}")


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
           bench: Path | None = BENCH_RESULTS, bench_gpu: Path | None = BENCH_GPU_RESULTS,
           bench_smollm2: Path | None = BENCH_SMOLLM2_RESULTS,
           generate_runs: list[GenerateRun] = (), student_runs: list[StudentRun] = (),
           comparisons: list[ComparisonRun] = ()) -> str:
    """RESULTS.md from the run records under `root` (the kept records by default; a runs folder has the
    same layout) and the benchmark suite's results, where `bench` (and the GPU checks' `bench_gpu`)
    exist; tasks or methods without a finished run are listed as not run. A generate run gets a section
    once one of its variants has a record, a student run once it is scored. Returns the markdown, also written to `out` unless None."""
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
    for generate_run in generate_runs:
        section, recorded = generate_section(generate_run, root)
        lines += section
        provenances += recorded
    for student_run in student_runs:
        section, recorded = student_section(student_run, root)
        lines += section or [f"## {student_run.title}", "", "Not run yet.", ""]
        provenances += recorded
    for comparison in comparisons:
        section, recorded = comparison_section(comparison, root)
        lines += section or [f"## {comparison.title}", "", "Not run yet.", ""]
        provenances += recorded
    lines += ["## Hardware", ""] + [f"- {h}" for h in _machines(provenances)] + [""]
    gpu_ran = set()
    if bench_gpu is not None and bench_gpu.exists():
        gpu_ran = {e["name"] for e in json.loads(bench_gpu.read_text(encoding="utf-8")).get("benchmarks", [])
                   if e.get("status") == "ok"}
    if bench is not None and bench.exists():
        lines += bench_section(bench, ran_elsewhere=gpu_ran)
    if bench_smollm2 is not None and bench_smollm2.exists():
        lines += bench_section(bench_smollm2, heading="Speed on SmolLM2-135M-Instruct (`make bench-smollm2`)")
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


QA_HEADER = ["variant", "posts sent", "tokens generated", "teacher tokens/s", "answers", "parsed", "parse rate",
             "kept posts", "QA pairs", "rejects by stage", "commonest reject reasons", "time", "machine"]
SELF_INSTRUCT_HEADER = ["variant", "requests sent", "tokens generated", "teacher tokens/s", "task blocks", "parsed",
                        "parse rate", "kept", "kept per request", "rejects by stage", "commonest reject reasons",
                        "time", "machine"]


def generate_section(generate_run: GenerateRun,
                     root: Path = RECORDS_DIR) -> tuple[list[str], list[tuple[str, dict]]]:
    """A generate run's section: per variant, what the teacher was sent and wrote, how much of it parsed and
    was kept and why the rest was not; then kept tasks (or QA posts) as the teacher wrote them. Returns the
    lines (none while no variant has a record) and the (run, provenance) pairs for the Hardware section."""
    rows, recorded, teachers, examples, missing = [], [], set(), [], []
    qa = False
    for variant in generate_run.variants:
        folder = generate_run.run_dir(variant, root)
        provenance, stats = _read_json(folder / "provenance.json"), _read_json(folder / "stats.json")
        if provenance is None or stats is None:
            missing.append(variant)
            continue
        recorded.append((folder.name, provenance))
        config = load_yaml(folder / "config.yaml") if (folder / "config.yaml").exists() else {}
        teachers.add(provenance.get("models", {}).get("teacher") or config.get("teacher") or "?")
        qa = "moderation_qa" in stats
        cells = _qa_cells(stats["moderation_qa"]) if qa else _self_instruct_cells(stats.get("self_instruct", {}))
        rows.append([variant, *cells, _minutes(provenance), _machine(provenance.get("hardware", {}))])
        if shown := _read_json(folder / EXAMPLES_FILE):
            examples.append((variant, shown))
    if not rows:
        return [], []
    lines = [f"## {generate_run.title}", "", f"Data: {generate_run.data}", "",
             *_table(QA_HEADER if qa else SELF_INSTRUCT_HEADER, rows), ""]
    if qa:
        lines += ["Answers: the posts the teacher answered (not refused). Parsed: the answers read into questions, "
                  "answers and a verdict per category (JSON or labelled lines), so the parse rate is the share a "
                  "reader could use; kept posts also passed the data gates. Teacher tokens/s: the tokens generated "
                  "over the QA build's seconds; requests answered from an earlier sitting's cache cost neither.", ""]
    else:
        lines += ["Task blocks: the instruction/input/output blocks the teacher's answers held (kept + rejected, "
                  "less the requests the teacher refused; an empty answer counts as one). Parsed: the blocks past "
                  "the parse stage, which also applies Alpaca's filters (length, blacklisted words), so the parse "
                  "rate is the share that came out a usable task before the novelty filter and the data gates. "
                  "Teacher tokens/s: the tokens generated over the self-instruct build's seconds; requests answered "
                  "from an earlier sitting's cache cost neither.", ""]
    if small := sorted(t for t in teachers if "smollm2" in t.lower()):
        lines += [f"The teacher is SmolLM2-135M-Instruct ({', '.join(f'`{t}`' for t in small)}): these are a "
                  f"135M-parameter model's {'answers' if qa else 'tasks'}, a teacher small enough for a CPU, not "
                  "what a large teacher writes.", ""]
    for variant, shown in examples:
        what = "kept posts" if qa else "kept tasks"
        lines += [f"{len(shown)} {what} of {variant}, drawn at random, as the teacher wrote them (a field "
                  f"longer than {EXAMPLE_CHARS} characters is cut, ending in …):", ""]
        if qa:
            lines += _table(["#", "post", "questions and answers", "verdicts"],
                            [[str(i), _example_cell(e.get("text", "")),
                              _example_cell("\n".join(f"Q: {q.get('question', '')} A: {q.get('answer', '')}"
                                                       for q in e.get("qa", []))),
                              _example_cell("\n".join(f"{v.get('category')}: {'yes' if v.get('violates') else 'no'}"
                                                       for v in e.get("verdicts", [])))]
                             for i, e in enumerate(shown, 1)])
        else:
            lines += _table(["#", "instruction", "input", "output"],
                            [[str(i), *[_example_cell(e.get(k, "")) for k in ("instruction", "input", "output")]]
                             for i, e in enumerate(shown, 1)])
        lines.append("")
    if missing:
        lines += [f"Not run yet: {', '.join(missing)}.", ""]
    commands = [line for variant in generate_run.variants for line in generate_run.shell_lines(variant)]
    lines += ["Commands:", "", "```bash", *commands, "```", ""]
    return lines, recorded


def _qa_cells(qa: dict) -> list[str]:
    """The numbers of a moderation_qa entry of stats.json, in QA_HEADER's order (after the variant)."""
    by_stage = qa.get("rejected_by_stage", {})
    answers = qa.get("posts", 0) - by_stage.get("teacher", 0)
    parsed = answers - by_stage.get("parse", 0)
    sent, cached, tokens, seconds = (qa.get(k, 0) for k in ("sent", "cached", "completion_tokens", "seconds"))
    reasons = sorted(qa.get("reject_reasons", {}).items(), key=lambda item: -item[1])[:3]
    return [f"{sent:,}" + (f" (+{cached:,} cached)" if cached else ""), f"{tokens:,}",
            f"{tokens / seconds:.1f}" if seconds else "–", f"{answers:,}", f"{parsed:,}",
            f"{parsed / answers:.1%}" if answers else "–", f"{qa.get('kept_posts', 0):,}", f"{qa.get('pairs', 0):,}",
            ", ".join(f"{stage} {n:,}" for stage, n in by_stage.items()) or "none",
            "; ".join(f"{_example_cell(reason)} ({n:,})" for reason, n in reasons) or "none"]


TEXT_METRICS = {"bleu": ("BLEU", 2), "rouge_l_f1": ("ROUGE-L", 3), "bertscore_f1": ("BERTScore", 3)}


def student_section(student_run: StudentRun,
                    root: Path = RECORDS_DIR) -> tuple[list[str], list[tuple[str, dict]]]:
    """A student run's section: per variant what it was trained on, its scores on the held-aside records
    with paired deltas against the first variant, and its times; then a few held-aside records with every
    variant's answer. Returns the lines (none before it is scored) and the (run, provenance) pairs."""
    folder = root / student_run.name
    scores, scored = _read_json(folder / "scores" / "scores.json"), _read_json(folder / "scores" / "provenance.json")
    if scores is None or scored is None:
        return [], []
    recorded = [(f"{student_run.name} scores", scored)]
    baseline = scores.get("baseline")
    deltas = {(c["run"], c["metric"]): c for c in scores.get("comparisons", [])}
    header = ["variant", "trained on", *[label for label, _ in TEXT_METRICS.values()],
              *[f"Δ {label} vs {baseline}" for label, _ in TEXT_METRICS.values()], "empty answers", "train time",
              "inference time"]
    rows = []
    for entry in scores.get("runs", []):
        variant = entry["name"]
        train = _read_json(folder / variant / "student" / "provenance.json")
        answered = _read_json(folder / variant / "inference" / "provenance.json")
        for what, provenance in (("student", train), ("inference", answered)):
            if provenance:
                recorded.append((f"{student_run.name} {variant} {what}", provenance))
        if train:
            summary = train.get("notes", {}).get("summary", {})
            config = load_yaml(folder / variant / "student" / "config.yaml")
            data = ", ".join(Path(d).name for d in config.get("data") or []) or "?"
            trained = f"{summary.get('examples', 0):,} examples of {data}"
        else:
            trained = f"nothing: {student_run.base} as it is"
        rows.append([variant, trained,
                     *[_ci(entry.get(m), digits) for m, (_, digits) in TEXT_METRICS.items()],
                     *[_delta(deltas.get((variant, m)), digits) if variant != baseline else "–"
                       for m, (_, digits) in TEXT_METRICS.items()],
                     f"{entry.get('empty_predictions', 0):,}", _minutes(train) if train else "–",
                     _minutes(answered) if answered else "–"])
    lines = [f"## {student_run.title}", "", f"Data: {student_run.data}", "",
             f"{scores.get('examples', 0):,} held-aside records, every variant answering the same ones; BLEU "
             f"(sacrebleu, {scores.get('bleu_signature', '')}), ROUGE-L F1 and BERTScore F1 "
             f"({scores.get('bertscore_model', '')}, layer {scores.get('bertscore_num_layers', '')}), each with "
             f"a bootstrap 95% interval; Δ is the paired difference against {baseline} on the same records, * where "
             "its interval excludes zero.", "", *_table(header, rows), ""]
    if shown := _read_json(folder / EXAMPLES_FILE):
        lines += [f"{len(shown)} held-aside records drawn at random, with every variant's answer as written "
                  f"(cut at {EXAMPLE_CHARS} characters):", ""]
        lines += _table(["#", "instruction", "input", "reference", *student_run.variants],
                        [[str(i), *[_example_cell(e.get(k, "")) for k in ("instruction", "input", "reference")],
                          *[_example_cell(e.get("answers", {}).get(v, "")) for v in student_run.variants]]
                         for i, e in enumerate(shown, 1)])
        lines.append("")
    commands = [shlex.join(c) for c in student_run.prepare]
    commands += [shlex.join(c) for v in student_run.variants for c in student_run.commands(v)]
    lines += ["Commands:", "", "```bash", *commands, shlex.join(student_run.score_command()), "```", ""]
    return lines, recorded


def comparison_section(comparison: ComparisonRun,
                       root: Path = RECORDS_DIR) -> tuple[list[str], list[tuple[str, dict]]]:
    """A comparison's section: one row per system on the same test rows (each variant; its k-shot
    baselines, mean ± std over seeds; the TF-IDF baseline an encoder variant fitted), then F1 per label.
    Returns the lines (none before a variant is scored) and the (run, provenance) pairs."""
    from .metrics.classification import headline

    rows, per_label, recorded, missing, labels = [], [], [], [], []
    tfidf_shown, single_label = False, False
    for variant in comparison.variants:
        folder = comparison.scores_dir(variant, root)
        scores, scored = _read_json(folder / "scores.json"), _read_json(folder / "provenance.json")
        if scores is None or scored is None:
            missing.append(variant)
            continue
        provenances = [(command, _read_json(Path(command[command.index("--output_dir") + 1]) / "provenance.json"))
                       for command in comparison.commands(variant, root)]
        recorded += [(f"{comparison.name} {variant} {Path(c[c.index('--output_dir') + 1]).name}", p)
                     for c, p in provenances if p]
        answers = scores.get("source") == "llm_answers"
        main = headline(scores)
        labels = labels or list(main["f1"])
        single_label = single_label or scores.get("problem_type") == "single_label"
        minutes = " + ".join(_minutes(p) for _, p in provenances if p)
        rows.append(_system_row(variant, "in words" if answers else "classifier scores", scores.get("examples"),
                                main, None, scores.get("refusal_rate") if answers else None,
                                scores.get("unparseable_rate") if answers else None, minutes))
        per_label.append((variant, main["f1"], None))
        for k, entry in (scores.get("baselines", {}).get("by_shots") or {}).items():
            mean, std = entry["mean"], entry["std"]
            name = f"{variant}, {k}-shot ({len(entry['runs'])} seeds)"
            rows.append(_system_row(name, "in words", scores["baselines"].get("examples"), mean["refusals_as_wrong"],
                                    std["refusals_as_wrong"], mean.get("refusal_rate"), mean.get("unparseable_rate"),
                                    "(in the evaluate time above)", std.get("refusal_rate"), std.get("unparseable_rate")))
            per_label.append((name, mean["refusals_as_wrong"]["f1"], std["refusals_as_wrong"]["f1"]))
        if (tfidf := scores.get("tfidf_baseline")) and not tfidf_shown:
            tfidf_shown = True
            name = f"TF-IDF + logistic regression (fitted on {variant}'s training rows)"
            rows.append(_system_row(name, "classifier scores", tfidf.get("examples", scores.get("examples")),
                                    headline(tfidf), None, None, None, "(in the evaluate time above)"))
            per_label.append((name, headline(tfidf)["f1"], None))
    if not rows:
        return [], []
    header = ["system", "answers", "test rows", "accuracy" if single_label else "subset accuracy", "micro-F1", "macro-F1", "mean ROC-AUC", "mean PR-AUC",
              "refusal rate", "unparseable rate", "time (each command)"]
    lines = [f"## {comparison.title}", "", f"Data: {comparison.data}", "",
             "Answers in words are parsed into labels; a refused or unparseable answer counts as wrong (every "
             "label missed). ROC-AUC and PR-AUC of answers in words come from the label tokens' probabilities "
             "(inference.py --label_probs), of classifiers from their scores. k-shot rows: mean ± standard "
             "deviation over seeds, each seed drawing its own solved examples from the training rows.", "",
             *_table(header, rows), ""]
    lines += ["F1 per label:", ""]
    lines += _table(["system", *labels], [[name, *[_mean_std(f1.get(label), (std or {}).get(label)) for label in labels]]
                                          for name, f1, std in per_label])
    lines.append("")
    if comparison.studies:
        lines += ["Reported in the original studies (../shared/studies/; other models, data and splits, so for "
                  "orientation, not a like-for-like comparison):", "", *[f"- {s}" for s in comparison.studies], ""]
    lines += [f"Note: {n}" for n in comparison.notes] + ([""] if comparison.notes else [])
    if missing:
        lines += [f"Not run yet: {', '.join(missing)}.", ""]
    commands = [shlex.join(c) for c in comparison.prepare]
    commands += [shlex.join(c) for v in comparison.variants for c in comparison.commands(v)]
    lines += ["Commands:", "", "```bash", *commands, "```", ""]
    return lines, recorded


def _system_row(name: str, answers: str, examples, mean: dict, std: dict | None, refusal, unparseable, minutes: str,
                refusal_std=None, unparseable_std=None) -> list:
    """One system's row of a comparison: its headline numbers (mean ± std where `std` is given)."""
    std = std or {}
    main = "accuracy" if "accuracy" in mean else "subset_accuracy"
    return [name, answers, f"{examples:,}" if isinstance(examples, int) else "?",
            *[_mean_std(mean.get(k), std.get(k)) for k in (main, "micro_f1", "macro_f1", "mean_roc_auc", "mean_pr_auc")],
            _mean_std(refusal, refusal_std), _mean_std(unparseable, unparseable_std), minutes]


def _mean_std(mean, std) -> str:
    if mean is None:
        return "–"
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def _self_instruct_cells(si: dict) -> list[str]:
    """The numbers of a self_instruct entry of stats.json, in generate_section's column order."""
    kept, by_stage = si.get("kept", 0), si.get("rejected_by_stage", {})
    # a refused request held no block; a parse reject is a block that did not make a task
    blocks = kept + si.get("rejected", 0) - by_stage.get("teacher", 0)
    parsed = blocks - by_stage.get("parse", 0)
    sent, cached, tokens, seconds = (si.get(k, 0) for k in ("sent", "cached", "completion_tokens", "seconds"))
    requests = si.get("requests", sent)
    reasons = sorted(si.get("reject_reasons", {}).items(), key=lambda item: -item[1])[:3]
    return [f"{sent:,}" + (f" (+{cached:,} cached)" if cached else ""), f"{tokens:,}",
            f"{tokens / seconds:.1f}" if seconds else "–", f"{blocks:,}", f"{parsed:,}",
            f"{parsed / blocks:.1%}" if blocks else "–", f"{kept:,}", f"{kept / requests:.2f}" if requests else "–",
            ", ".join(f"{stage} {n:,}" for stage, n in by_stage.items()) or "none",
            "; ".join(f"{_example_cell(reason)} ({n:,})" for reason, n in reasons) or "none"]


def _example_cell(text: str) -> str:
    """Teacher text as one table cell, readable in the file and rendered: cut at EXAMPLE_CHARS, a pipe
    escaped, markup shown as text, line breaks kept."""
    text = str(text).strip()
    if not text:
        return "–"
    if len(text) > EXAMPLE_CHARS:
        text = text[:EXAMPLE_CHARS].rstrip() + " …"
    text = text.replace("<", "&lt;").replace("|", "\\|")
    return "<br>".join(line.strip() for line in text.splitlines() if line.strip())


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
    run_p.add_argument("--only", nargs="+", help="task or generate run names (default: all)")
    run_p.add_argument("--methods", nargs="+",
                       help="methods or generate variants (default: every one a task or generate run lists)")
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
        others = dict(generate_runs=load_generate(args.plan), student_runs=load_students(args.plan),
                      comparisons=load_comparisons(args.plan))
        if args.command == "run":
            results = run(tasks, args.only, args.methods, rerun=args.rerun, dry_run=args.dry_run, **others)
            return 1 if any(r["returncode"] for r in results) else 0
        if args.command == "report":
            report(tasks, root=args.records, **others)
            print(f"results: wrote {RESULTS_MD} from {args.records}")
            return 0
        for task in tasks:
            for command in task.prepare:
                print(shlex.join(command))
            for method in task.methods:
                for command in task.commands(method):
                    print(shlex.join(command))
        for generate_run in others["generate_runs"]:
            for variant in generate_run.variants:
                print("\n".join(generate_run.shell_lines(variant)))
        for student_run in others["student_runs"]:
            for command in [*student_run.prepare, *(c for v in student_run.variants for c in student_run.commands(v)),
                            student_run.score_command()]:
                print(shlex.join(command))
        for comparison in others["comparisons"]:
            for command in [*comparison.prepare, *(c for v in comparison.variants for c in comparison.commands(v))]:
                print(shlex.join(command))
        return 0
    except ConfigError as e:
        print(f"results: {e}", file=sys.stderr)
        return 2

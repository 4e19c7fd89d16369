"""The plan (evaluate/results.yaml): tasks, generate runs, student runs and comparisons, each with the commands
a user would type, and which of them a run selects."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.config import load_yaml
from tunelab.errors import ConfigError


PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout: the plan, records and RESULTS.md live there

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
# what each prepare command's folder keeps (under PREPARED_DIR of the run's records): how its data was made
PREPARED_DIR = "prepared"
PREPARED_RECORD_FILES = ("provenance.json", "config.yaml", "stats.json")
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

    def prepared_dirs(self) -> list[Path]:
        """Each prepare command's output folder (relative paths under the project root, where they run)."""
        return [PROJECT_ROOT / c[c.index("--output_dir") + 1] for c in self.prepare]

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
    # the systems every other is read against (with the TF-IDF baseline): where each wins and loses is spelled out
    references: list[str] = field(default_factory=list)

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
        names = [folder.name for folder in runs[-1].prepared_dirs()]
        if len(set(names)) != len(names):  # their records are kept by folder name
            raise ConfigError(f"{path}: student run {entry['name']}: prepare commands write folders of the same "
                              f"name ({names}); give each its own")
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
                studies=list(entry.get("studies") or []), notes=list(entry.get("notes") or []),
                references=[str(r) for r in entry.get("references") or []]))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"{path}: comparison {i} ({entry.get('name', '?')}): {e}") from e
        if unknown := [r for r in runs[-1].references if r not in runs[-1].variants]:
            raise ConfigError(f"{path}: comparison {entry['name']}: references {unknown} are not among its variants")
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

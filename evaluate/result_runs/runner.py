"""Running the plan: each command as typed, finished ones skipped, servers started and stopped around the
variants that need them, and each finished run's records kept in evaluate/records/."""

from __future__ import annotations

import json
import random
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager, nullcontext
from importlib.util import find_spec
from pathlib import Path

from tunelab.errors import ConfigError

from .format import read_json
from .plan import (EXAMPLES_FILE, EXAMPLES_SEED, GENERATE_RECORD_FILES, PREPARED_DIR, PREPARED_RECORD_FILES,
                   PROJECT_ROOT, RECORD_FILES, RECORDS_DIR, RUNS_DIR, SERVE_PLACEHOLDERS, SERVER_EXTRAS,
                   STOP_TIMEOUT_S, ComparisonRun, GenerateRun, Server, StudentRun, Task, select)


def finished(folder: Path) -> bool:
    return (folder / "provenance.json").exists()


def fresh_staging(kept: Path) -> Path:
    """An empty place beside `kept` to write its new copy into: a half-written copy never replaces the old one."""
    staging = kept.with_name(f".{kept.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def replace_kept(staging: Path, kept: Path) -> Path:
    shutil.rmtree(kept, ignore_errors=True)
    staging.rename(kept)
    return kept


def copy_record_files(folders: list[Path], base: Path, staging: Path) -> None:
    """RECORD_FILES of each folder into staging, in the folders' layout under `base`."""
    for folder in folders:
        target = staging / folder.relative_to(base)
        target.mkdir(parents=True, exist_ok=True)
        for name in RECORD_FILES:
            if (folder / name).exists():
                shutil.copyfile(folder / name, target / name)


def drawn_rows(total: int, count: int) -> list[int]:
    """A fixed random draw of `count` row indices, in the rows' order: a rerun of the report shows the same ones."""
    return sorted(random.Random(EXAMPLES_SEED).sample(range(total), min(count, total)))


def write_examples(staging: Path, examples: list[dict]) -> None:
    (staging / EXAMPLES_FILE).write_text(json.dumps(examples, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def keep_records(task: Task, method: str, root: Path = RUNS_DIR, records: Path = RECORDS_DIR) -> Path | None:
    """Copy a finished (task, method)'s records (RECORD_FILES of its training folder and of each finished
    evaluation's folder) from `root` to `records`, in the same layout, replacing what was kept of it
    before. Returns the kept folder, or None where the training has not finished."""
    run_dir = task.run_dir(method, root)
    if not finished(run_dir):
        return None
    kept = task.run_dir(method, records)
    folders = [run_dir] + [d for e in task.evaluations if finished(d := task.scores_dir(method, e, root))]
    staging = fresh_staging(kept)
    copy_record_files(folders, run_dir, staging)
    return replace_kept(staging, kept)


def keep_generate_records(generate_run: GenerateRun, variant: str, root: Path = RUNS_DIR,
                          records: Path = RECORDS_DIR) -> Path | None:
    """Copy a finished generate run's GENERATE_RECORD_FILES to `records`, with EXAMPLES_FILE: its `examples`
    kept tasks (or moderation QA posts) drawn at random (a fixed seed, so a rerun of the report shows the same ones) in the run's
    order, as the teacher wrote them. Returns the kept folder, or None where the run has not finished."""
    run_dir = generate_run.run_dir(variant, root)
    if not finished(run_dir):
        return None
    kept = generate_run.run_dir(variant, records)
    staging = fresh_staging(kept)
    staging.mkdir(parents=True)
    for name in GENERATE_RECORD_FILES:
        if (run_dir / name).exists():
            shutil.copyfile(run_dir / name, staging / name)
    if (run_dir / "moderation_qa.jsonl").exists():  # kept posts: the comment, its QA and verdicts
        with open(run_dir / "moderation_qa.jsonl", encoding="utf-8") as f:
            kept_records = [json.loads(line) for line in f if line.strip()]
        fields = ("id", "text", "qa", "verdicts")
    else:
        kept_records, fields = read_json(run_dir / "self_instruct.alpaca.json") or [], ("instruction", "input", "output")
    write_examples(staging, [{k: kept_records[i].get(k, "") for k in fields}
                             for i in drawn_rows(len(kept_records), generate_run.examples)])
    return replace_kept(staging, kept)


def keep_student_records(student_run: StudentRun, root: Path = RUNS_DIR, records: Path = RECORDS_DIR) -> Path | None:
    """Copy a scored student run's records to `records`: each variant's finetune and inference
    provenance.json and config.yaml, the scores folder's RECORD_FILES, PREPARED_RECORD_FILES of each
    finished prepare folder (under PREPARED_DIR, by folder name), and EXAMPLES_FILE: `examples`
    held-aside records drawn at random (a fixed seed) with every variant's answer. Returns the kept folder,
    or None where the scores have not finished."""
    scores = student_run.scores_dir(root)
    if not finished(scores):
        return None
    kept = records / student_run.name
    staging = fresh_staging(kept)
    folders = [scores] + [d for v in student_run.variants for d in (student_run.run_dir(v, root) / "student",
                                                                     student_run.run_dir(v, root) / "inference")
                          if finished(d)]
    copy_record_files(folders, root / student_run.name, staging)
    for folder in filter(finished, student_run.prepared_dirs()):
        target = staging / PREPARED_DIR / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for name in PREPARED_RECORD_FILES:
            if (folder / name).exists():
                shutil.copyfile(folder / name, target / name)
    with open(scores / "per_example.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    write_examples(staging, [{k: rows[i].get(k, "") for k in ("id", "instruction", "input", "reference")}
                             | {"answers": {v: rows[i].get(f"{v}.prediction", "") for v in student_run.variants}}
                             for i in drawn_rows(len(rows), student_run.examples)])
    return replace_kept(staging, kept)


def keep_comparison_records(comparison: ComparisonRun, variant: str, root: Path = RUNS_DIR,
                            records: Path = RECORDS_DIR) -> Path | None:
    """Copy a scored comparison variant's records (RECORD_FILES of each of its commands' folders) to
    `records`, in the same layout, replacing what was kept of it before. Returns the kept folder, or None
    where its scores have not finished."""
    if not finished(comparison.scores_dir(variant, root)):
        return None
    run_dir = comparison.run_dir(variant, root)
    kept = comparison.run_dir(variant, records)
    staging = fresh_staging(kept)
    copy_record_files([Path(c[c.index("--output_dir") + 1]) for c in comparison.commands(variant, root)], run_dir,
                      staging)
    return replace_kept(staging, kept)


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
            # An interrupted training continues from its last checkpoint, an interrupted inference from the
            # answers it has saved; anything else starts over.
            resumable = not again and (("finetune/train.py" in command and any(out.glob("checkpoint-*")))
                                       or "inference.py" in command)
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

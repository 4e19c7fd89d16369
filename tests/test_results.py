"""evaluate/results.py: the plan's commands run as a user would type them, and RESULTS.md from their records."""

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunelab import results
from tunelab.errors import ConfigError

POSITIVE = ["a wonderful film", "great acting and a great story", "I loved every minute", "superb and moving",
            "brilliant direction, wonderful cast"]
NEGATIVE = ["a dreadful film", "terrible acting and a dull story", "I hated every minute", "boring and empty",
            "awful direction, wooden cast"]


@pytest.fixture
def plan(tmp_path):
    rows = ["text,label"] + [f'"{t} {i}",positive' for i in range(8) for t in POSITIVE] + \
        [f'"{t} {i}",negative' for i in range(8) for t in NEGATIVE]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "train.yaml").write_text(f"""
base: tunelab:minilm
task: classify
data: [{tmp_path / 'reviews.csv'}]
eval_split: 0.2
test_split: 0.3
label_column: label
problem_type: single_label
max_length: 32
max_steps: 2
per_device_train_batch_size: 8
learning_rate: 0.001
save_strategy: "no"
report_to: none
disable_tqdm: true
""", encoding="utf-8")
    (tmp_path / "score.yaml").write_text("task: classification\nsplit: test\ntfidf_baseline: true\n"
                                         "bootstrap_resamples: 100\nplots: false\n", encoding="utf-8")
    (tmp_path / "plan.yaml").write_text(f"""
tasks:
  - name: reviews
    title: Tiny reviews
    finetune: {tmp_path / 'train.yaml'}
    evaluate: [{{name: test, config: {tmp_path / 'score.yaml'}, title: held-out 30%}}]
    methods:
      full: [--use_lora, "false"]
      lora: [--use_lora, "true"]
    data: 80 made-up reviews
    metrics: [accuracy, macro_f1]
    per_label: [precision, recall, f1]
    target: {{metric: accuracy, at_least: 0.5}}
    studies: [a study's number]
""", encoding="utf-8")
    return results.load_plan(tmp_path / "plan.yaml")


def test_runs_are_the_stage_commands_and_results_md_comes_from_their_records(plan, tmp_path, capsys):
    root, records = tmp_path / "runs", tmp_path / "records"
    ran = results.run(plan, methods=["full"], root=root, records=records)
    assert [r["returncode"] for r in ran] == [0, 0]
    assert "finetune/train.py --config" in ran[0]["command"] and "evaluate/score.py --config" in ran[1]["command"]
    scores = json.loads((root / "reviews_minilm_full/scores/scores.json").read_text())
    assert scores["examples"] == 24 and scores["tfidf_baseline"]["train_rows"] == 40
    # the kept records: the small files the report reads, in the runs' layout, no weights
    kept = sorted(str(p.relative_to(records)) for p in records.rglob("*") if p.is_file())
    assert kept == ["reviews_minilm_full/config.yaml", "reviews_minilm_full/provenance.json",
                    "reviews_minilm_full/scores/config.yaml", "reviews_minilm_full/scores/provenance.json",
                    "reviews_minilm_full/scores/scores.json"]

    assert results.run(plan, methods=["full"], root=root, records=records) == []  # finished: nothing run again
    assert "is finished; skipped" in capsys.readouterr().out
    # the runs folder may go (a fresh clone has none): the report reads the kept records alone
    assert results.report(plan, root=root, out=tmp_path / "from_runs.md", bench=None) == \
        results.report(plan, root=records, out=tmp_path / "from_records.md", bench=None)

    bench = tmp_path / "bench" / "results.json"  # what `make bench-full` leaves, a skipped GPU check in it
    bench.parent.mkdir()
    bench.write_text(json.dumps({"mode": "full", "benchmarks": [{"name": "gpu_qlora", "compares": "GPU QLoRA", "status": "skipped",
                                                 "reason": "no CUDA GPU visible"}]}))
    bench.with_suffix(".md").write_text("# Benchmark results\n\n| Benchmark |\n| --- |\n| gpu_qlora |\n\n")
    text = results.report(plan, root=records, out=tmp_path / "RESULTS.md", bench=bench,
                          bench_gpu=tmp_path / "bench" / "results_gpu.json")  # none: no GPU checks section
    assert text == (tmp_path / "RESULTS.md").read_text() and "GPU checks" not in text
    summary = text.split("## Summary")[1].split("\n## ")[0]
    assert "| Tiny reviews | full | held-out 30% | accuracy " in summary and "| lora |" not in summary
    speed = text.split("## Speed (`make bench-full`)")[1]  # the heading names the mode that ran
    assert "| gpu_qlora |" in speed and "- gpu_qlora (GPU QLoRA): not run: no CUDA GPU visible." in speed
    row = next(line for line in text.splitlines() if line.startswith("| full |"))
    accuracy = scores["intervals"]["accuracy"]
    assert f"{accuracy['value']:.3f} [{accuracy['ci_low']:.3f}, {accuracy['ci_high']:.3f}]" in row
    assert "train 40; eval 16" in row and ("yes" in row) == (accuracy["value"] >= 0.5)
    assert "| label | precision | recall | f1 | support | TF-IDF f1 |" in text
    assert "- a study's number" in text and "reviews (lora)" in text.split("## Not run")[1]
    assert "cores" in text.split("## Hardware")[1]

    gpu = tmp_path / "bench" / "results_gpu.json"  # what `make bench-gpu` leaves on a GPU machine
    gpu.write_text(json.dumps({"mode": "full", "benchmarks": [{"name": "gpu_qlora", "status": "ok"}]}))
    gpu.with_suffix(".md").write_text("# Benchmark results\n\nHardware: NVIDIA H200\n\n| gpu_teacher | 4-bit |\n")
    text = results.report(plan, root=records, out=None, bench=bench, bench_gpu=gpu)
    checks = text.split("## GPU checks (`make bench-gpu`)")[1]
    assert "Copied from `bench/results_gpu.md`" in checks and "| gpu_teacher | 4-bit |" in checks
    assert "NVIDIA H200" in checks and "Not run on this machine" not in checks
    speed = text.split("## Speed (`make bench-full`)")[1].split("## GPU checks")[0]
    assert "- gpu_qlora: run on a GPU machine, below." in speed and "no CUDA GPU visible" not in speed

    # the per-label tables follow the method with the best headline number; a tie keeps the earlier one
    assert "Per label (the best accuracy: full, held-out 30%" in text
    lora_scores = records / "reviews_minilm_lora" / "scores" / "scores.json"
    shutil.copytree(records / "reviews_minilm_full", lora_scores.parents[1])
    assert "Per label (the best accuracy: full," in results.report(plan, root=records, out=None, bench=None)
    better = json.loads(lora_scores.read_text())
    better["intervals"]["accuracy"]["value"] += 0.01
    lora_scores.write_text(json.dumps(better))
    assert "Per label (the best accuracy: lora," in results.report(plan, root=records, out=None, bench=None)


def test_unknown_tasks_and_broken_plans_are_named(plan, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown task\(s\) \['nope'\]"):
        results.select(plan, ["nope"], None)
    with pytest.raises(ConfigError, match="no \\(task, method\\) left"):
        results.select(plan, None, ["qlora"])
    (tmp_path / "bad.yaml").write_text("tasks:\n  - name: x\n    title: X\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="task 0 \\(x\\)"):
        results.load_plan(tmp_path / "bad.yaml")


def test_the_shipped_plan_names_shipped_configs():
    from tunelab.paths import STAGE_CONFIG_DIRS

    for task in results.load_plan():
        assert (STAGE_CONFIG_DIRS["finetune"] / f"{task.finetune}.yaml").exists()
        assert all((STAGE_CONFIG_DIRS["evaluate"] / f"{e.config}.yaml").exists() for e in task.evaluations)
        assert {"full", "lora"} <= set(task.methods)


def test_interrupted_steps_resume_or_start_over_and_prepare_needs_its_folder(plan, tmp_path, capsys):
    root = tmp_path / "runs"
    run = root / "reviews_minilm_full"
    (run / "checkpoint-4").mkdir(parents=True)  # training was killed after a checkpoint
    (run / "scores").mkdir()
    (run / "scores" / "config.yaml").write_text("task: classification\n")  # scoring died half way
    results.run(plan, methods=["full"], root=root, dry_run=True)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith("--resume true") and printed[1].endswith("--overwrite true")
    (run / "checkpoint-4").rmdir()
    results.run(plan, methods=["full"], root=root, dry_run=True)
    assert capsys.readouterr().out.splitlines()[0].endswith("--overwrite true")  # nothing to resume from

    text = (tmp_path / "plan.yaml").read_text()
    (tmp_path / "plan.yaml").write_text(text.replace("    data: 80", "    prepare: [[python, generate/run.py]]\n"
                                                                   "    data: 80"))
    with pytest.raises(ConfigError, match="needs --output_dir"):
        results.load_plan(tmp_path / "plan.yaml")


def test_stopping_the_runner_stops_its_running_stage(tmp_path):
    """A `kill` of the runner must not leave its training running alone, still writing the run folder."""
    script = tmp_path / "runner.py"
    script.write_text(f"""
import sys
from tunelab import results
results.call_forwarding_termination([sys.executable, "-c", "import os, time; "
    "open({str(tmp_path / 'child.pid')!r}, 'w').write(str(os.getpid())); time.sleep(120)"])
open({str(tmp_path / 'next_step')!r}, 'w').write('started')  # must not be reached
""")
    runner = subprocess.Popen([sys.executable, str(script)])
    pid_file = tmp_path / "child.pid"
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int(pid_file.read_text())
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=30) == 128 + signal.SIGTERM
    with pytest.raises(ProcessLookupError):  # gone, not orphaned (the runner waited, so it is reaped)
        os.kill(child, 0)
    assert not (tmp_path / "next_step").exists()


def test_a_stage_runs_from_a_thread_other_than_the_main_one():
    """Signal handlers belong to the main thread; a library caller in a worker thread still runs stages."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        returncode = pool.submit(results.call_forwarding_termination,
                                 [sys.executable, "-c", "raise SystemExit(3)"]).result(timeout=60)
    assert returncode == 3


def test_rerun_remakes_the_runs_but_keeps_the_prepared_data(plan, tmp_path, capsys):
    prepared = tmp_path / "prepared"
    text = (tmp_path / "plan.yaml").read_text()
    (tmp_path / "plan.yaml").write_text(text.replace(
        "    data: 80", f"    prepare: [[python, generate/run.py, --output_dir, {prepared}]]\n    data: 80"))
    tasks = results.load_plan(tmp_path / "plan.yaml")
    root = tmp_path / "runs"
    for folder in (prepared, root / "reviews_minilm_full", root / "reviews_minilm_full" / "scores"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "provenance.json").write_text("{}")  # all finished
    results.run(tasks, methods=["full"], root=root, dry_run=True, rerun=True)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"results: {prepared} is finished; skipped")  # the other methods use it too
    assert "finetune/train.py" in printed[1] and printed[1].endswith("--overwrite true")
    assert "evaluate/score.py" in printed[2] and printed[2].endswith("--overwrite true")


def test_the_runner_reads_its_runs_from_the_project_wherever_it_is_started(plan, tmp_path, monkeypatch, capsys):
    from tunelab.paths import PROJECT_ROOT

    monkeypatch.chdir(tmp_path)  # a plan path relative to where the user stands still works
    assert results.main(["--plan", "plan.yaml", "run", "--dry_run", "--methods", "full"]) == 0
    assert Path.cwd() == PROJECT_ROOT  # where the stage commands and runs/results/ are
    assert "finetune/train.py" in capsys.readouterr().out


def test_each_machine_is_listed_once_with_its_runs_though_older_records_lack_its_cpu_name():
    older = {"hardware": {"platform": "Linux-6", "cpu_count": 2}}
    amd = {"hardware": {"platform": "Linux-6", "cpu_count": 2, "cpu": "AMD EPYC"}}
    intel = {"hardware": {"platform": "Linux-6", "cpu_count": 2, "cpu": "Intel Xeon"}}
    gpu = {"hardware": {"platform": "Linux-6", "cpu_count": 16, "gpus": ["NVIDIA H200"]}}
    assert results._machines([("a", older), ("b", amd), ("b", amd), ("g", gpu)]) == [
        "AMD EPYC, 2 cores, no GPU: a, b", "Linux-6, 16 cores, NVIDIA H200: g"]
    assert results._machines([("a", older)]) == ["Linux-6, 2 cores, no GPU: a"]
    # Two CPUs of the same platform and size are two machines; a nameless record cannot be placed.
    assert results._machines([("a", older), ("b", amd), ("c", intel), ("d", intel)]) == [
        "AMD EPYC, 2 cores, no GPU: b", "Intel Xeon, 2 cores, no GPU: c, d", "Linux-6, 2 cores, no GPU: a"]


def test_a_resumed_run_shows_its_training_time_over_every_sitting_or_says_it_is_unknown():
    def record(**summary):
        return {"seconds": 600, "hardware": {"load_average": [2.0, 2.0, 2.0]}, "notes": {"summary": summary}}

    assert results._minutes(record(resumed_from=None)) == "10.0 min (load 2.0)"
    timed = record(resumed_from="runs/r/checkpoint-1100", steps=1408, train_seconds=6000.0, sittings=2)
    assert results._minutes(timed) == ("10.0 min (load 2.0) for the last sitting; 100.0 min of training "
                                       "over 2 sittings (resumed at step 1,100 of 1,408)")
    untimed = record(resumed_from="runs/r/checkpoint-1100", steps=1408, train_seconds=None, sittings=None)
    assert results._minutes(untimed) == ("10.0 min (load 2.0) for the last sitting only "
                                         "(resumed at step 1,100 of 1,408; earlier training untimed)")


def test_a_checkpoint_without_its_time_leaves_the_time_unknown_and_says_so(tmp_path, capsys):
    from tunelab.training.runner import TRAIN_TIME, _time_before

    assert _time_before(None) == (0.0, 0)
    assert _time_before(tmp_path) == (None, None)  # saved before checkpoints recorded their time
    assert "no record of the training time" in capsys.readouterr().out
    (tmp_path / TRAIN_TIME).write_text(json.dumps({"seconds": 12.5, "sittings": 2}))
    assert _time_before(tmp_path) == (12.5, 2)
    (tmp_path / TRAIN_TIME).write_text(json.dumps({"seconds": None, "sittings": None}))
    assert _time_before(tmp_path) == (None, None)  # still unknown after another resume
    (tmp_path / TRAIN_TIME).write_text('{"seconds": 12')  # cut off mid-write
    assert _time_before(tmp_path) == (None, None)
    assert f"{tmp_path / TRAIN_TIME} is unreadable" in capsys.readouterr().err


def test_a_retrained_model_is_scored_again(plan, tmp_path, capsys):
    """Scores on disk belong to the model they were made from: once training runs, so does scoring."""
    root = tmp_path / "runs"
    scores = root / "reviews_minilm_full" / "scores"
    scores.mkdir(parents=True)
    (scores / "provenance.json").write_text("{}")  # finished scores of an earlier model; training unfinished
    results.run(plan, methods=["full"], root=root, dry_run=True)
    printed = capsys.readouterr().out.splitlines()
    assert "finetune/train.py" in printed[0] and printed[1].endswith("--overwrite true"), printed


def test_records_are_kept_only_from_a_whole_run_and_replace_the_older_copy(plan, tmp_path):
    root, records = tmp_path / "runs", tmp_path / "records"
    run, task = root / "reviews_minilm_full", plan[0]
    (run / "scores").mkdir(parents=True)
    (run / "provenance.json").write_text('{"run": "new"}')
    (run / "config.yaml").write_text("learning_rate: 0.001\n")
    (run / "model.safetensors").write_bytes(b"weights")
    old = records / "reviews_minilm_full" / "scores"
    old.mkdir(parents=True)
    (old / "scores.json").write_text('{"run": "old"}')
    (old / "provenance.json").write_text("{}")
    assert results.keep_records(task, "full", root, records) == records / "reviews_minilm_full"
    kept = records / "reviews_minilm_full"
    assert json.loads((kept / "provenance.json").read_text()) == {"run": "new"}
    assert not (kept / "model.safetensors").exists()
    assert not (kept / "scores").exists()  # the new model has no finished scores: the old ones are not its
    assert results.keep_records(task, "lora", root, records) is None  # never trained: nothing to keep

    # a failed step keeps nothing: an older evaluation's scores could sit beside a newer model
    (run / "provenance.json").unlink()
    (tmp_path / "score.yaml").write_text("task: classification\nsplit: nope\n")
    ran = results.run(plan, methods=["full"], root=root, records=tmp_path / "after_failure")
    assert ran[-1]["returncode"] != 0 and not (tmp_path / "after_failure").exists()


def test_results_md_is_what_the_kept_records_make():
    """RESULTS.md is never typed: remade from evaluate/records/ (and bench/results.md), it is unchanged."""
    from tunelab.paths import PROJECT_ROOT

    made = results.report(results.load_plan(), out=None)
    assert made == (PROJECT_ROOT / "RESULTS.md").read_text(encoding="utf-8"), \
        "RESULTS.md differs from its records: run python evaluate/results.py report"

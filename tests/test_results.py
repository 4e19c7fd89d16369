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

from tunelab.errors import ConfigError

EVALUATE = Path(__file__).resolve().parents[1] / "evaluate"
sys.path.insert(0, str(EVALUATE))  # the result-runs tool sits beside evaluate/results.py, outside the library
import result_runs as results  # noqa: E402

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
    from tunelab.paths import PROJECT_ROOT, STAGE_CONFIG_DIRS

    for task in results.load_plan():
        assert (STAGE_CONFIG_DIRS["finetune"] / f"{task.finetune}.yaml").exists()
        assert all((STAGE_CONFIG_DIRS["evaluate"] / f"{e.config}.yaml").exists() for e in task.evaluations)
        assert {"full", "lora"} <= set(task.methods)
    for generate_run in results.load_generate():
        assert (STAGE_CONFIG_DIRS["generate"] / f"{generate_run.config}.yaml").exists()
    for comparison in results.load_comparisons():
        for command in [c for v in comparison.variants for c in comparison.commands(v)]:
            stage = {"finetune/train.py": "finetune", "inference.py": "inference", "evaluate/score.py": "evaluate"}
            assert (STAGE_CONFIG_DIRS[stage[command[1]]] / f"{command[command.index('--config') + 1]}.yaml").exists()
    for student_run in results.load_students():
        assert all((STAGE_CONFIG_DIRS[stage] / f"{name}.yaml").exists() for stage, name in (
            ("finetune", student_run.finetune), ("inference", student_run.inference), ("evaluate", student_run.evaluate)))
        assert list(student_run.variants)[0] == "untuned" and student_run.variants["untuned"] is None
        prepared = [c[c.index("--output_dir") + 1] + "/" for c in student_run.prepare]
        for args in filter(None, student_run.variants.values()):  # a student's data is made by prepare or kept
            data = args[args.index("--data") + 1]
            assert any(data.startswith(p) for p in prepared) or (PROJECT_ROOT / data).exists(), data


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
sys.path.insert(0, {str(EVALUATE)!r})
import result_runs as results
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
    assert results.format.machines_text([("a", older), ("b", amd), ("b", amd), ("g", gpu)]) == [
        "AMD EPYC, 2 cores, no GPU: a, b", "Linux-6, 16 cores, NVIDIA H200: g"]
    assert results.format.machines_text([("a", older)]) == ["Linux-6, 2 cores, no GPU: a"]
    # Two CPUs of the same platform and size are two machines; a nameless record cannot be placed.
    assert results.format.machines_text([("a", older), ("b", amd), ("c", intel), ("d", intel)]) == [
        "AMD EPYC, 2 cores, no GPU: b", "Intel Xeon, 2 cores, no GPU: c, d", "Linux-6, 2 cores, no GPU: a"]


def test_a_resumed_run_shows_its_training_time_over_every_sitting_or_says_it_is_unknown():
    def record(**summary):
        return {"seconds": 600, "hardware": {"load_average": [2.0, 2.0, 2.0]}, "notes": {"summary": summary}}

    assert results.format.minutes_text(record(resumed_from=None)) == "10.0 min (load 2.0)"
    timed = record(resumed_from="runs/r/checkpoint-1100", steps=1408, train_seconds=6000.0, sittings=2)
    assert results.format.minutes_text(timed) == ("10.0 min (load 2.0) for the last sitting; 100.0 min of training "
                                       "over 2 sittings (resumed at step 1,100 of 1,408)")
    untimed = record(resumed_from="runs/r/checkpoint-1100", steps=1408, train_seconds=None, sittings=None)
    assert results.format.minutes_text(untimed) == ("10.0 min (load 2.0) for the last sitting only "
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

    made = results.report(results.load_plan(), out=None, generate_runs=results.load_generate(),
                          student_runs=results.load_students(), comparisons=results.load_comparisons())
    assert made == (PROJECT_ROOT / "RESULTS.md").read_text(encoding="utf-8"), \
        "RESULTS.md differs from its records: run python evaluate/results.py report"


# ---- generate runs ---------------------------------------------------------------------------------

SERVER = """
import http.server, os, sys
open(sys.argv[2], "w").write(" ".join([str(os.getpid()), *sys.argv[3:]]))
class Models(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"data": [{"id": "smollm2"}]}')
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Models).serve_forever()
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generate_plan(tmp_path, serve_command: list[str], port: int, timeout_s: float = 30) -> list:
    """The fixture's plan with a generate run of two variants, `served` behind `serve_command`."""
    (tmp_path / "plan.yaml").write_text((tmp_path / "plan.yaml").read_text() + f"""
generate:
  - name: tiny_self_instruct
    title: Tiny self-instruct
    config: demo
    variants:
      in_process: []
      served: [--teacher_backend, openai, --teacher_base_url, "http://127.0.0.1:{port}/v1"]
    serve:
      served: {{command: {json.dumps(serve_command)}, ready: "http://127.0.0.1:{port}/v1/models",
               timeout_s: {timeout_s}}}
    data: a made-up teacher run
    examples: 3
""", encoding="utf-8")
    return results.load_generate(tmp_path / "plan.yaml")


def write_generate_run(folder: Path, teacher: str = "tunelab:smollm2", kept: int = 5) -> None:
    """What a finished generate run leaves that the records are made from."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(f"teacher: {teacher}\n")
    (folder / "provenance.json").write_text(json.dumps({
        "stage": "generate", "seconds": 150.0, "models": {"teacher": teacher},
        "hardware": {"platform": "Linux-6", "cpu": "Intel Xeon", "cpu_count": 2, "load_average": [1.5, 1.5, 1.5]}}))
    (folder / "stats.json").write_text(json.dumps({"self_instruct": {
        "kept": kept, "rejected": 26, "requests": 8, "cached": 0, "sent": 8, "completion_tokens": 2590,
        "seconds": 74.0, "rejected_by_stage": {"parse": 21, "novelty": 5},
        "reject_reasons": {"cut off by the length limit": 6, "no output": 12, "ROUGE-L > 0.7 vs an earlier task": 5,
                           "blacklisted keyword": 3}}}))
    tasks = [{"id": f"self-instruct-{i}", "instruction": f"Task {i}", "input": "", "output": f"answer {i}",
              "provenance": {"teacher": teacher}} for i in range(kept)]
    tasks[0].update(instruction="Fill the table: a | b", input="<b>bold</b>\n\nsecond line", output="x" * 500)
    (folder / "self_instruct.alpaca.json").write_text(json.dumps(tasks))


def test_a_generate_run_reports_what_the_teacher_sent_wrote_and_kept(plan, tmp_path, monkeypatch):
    generate = generate_plan(tmp_path, ["python", "-c", "pass"], free_port())
    root, records = tmp_path / "runs", tmp_path / "records"
    records.mkdir()
    # no generate record yet: the report is byte for byte what it was without generate runs
    assert results.report(plan, root=records, out=None, bench=None, generate_runs=generate) == \
        results.report(plan, root=records, out=None, bench=None)

    run_dir = root / "tiny_self_instruct_in_process"
    write_generate_run(run_dir)
    assert results.keep_generate_records(generate[0], "served", root, records) is None  # never run
    kept = results.keep_generate_records(generate[0], "in_process", root, records)
    assert sorted(p.name for p in kept.iterdir()) == ["config.yaml", "examples.json", "provenance.json",
                                                      "self_instruct.alpaca.json", "stats.json"]  # the kept tasks too
    examples = json.loads((kept / "examples.json").read_text())
    assert len(examples) == 3 and all(set(e) == {"instruction", "input", "output"} for e in examples)
    results.keep_generate_records(generate[0], "in_process", root, records)
    assert json.loads((kept / "examples.json").read_text()) == examples  # a fixed seed: the same draw
    shutil.rmtree(root)  # the report reads the records alone

    text = results.report(plan, root=records, out=None, bench=None, generate_runs=generate)
    section = text.split("## Tiny self-instruct")[1].split("\n## ")[0]
    assert text.index("## Tiny reviews") < text.index("## Tiny self-instruct") < text.index("## Hardware")
    row = next(line for line in section.splitlines() if line.startswith("| in_process |"))
    # 31 blocks (5 kept + 26 rejected), 21 of them failed parsing: 10 parsed; 2,590 tokens in 74 s
    assert row.startswith("| in_process | 8 | 2,590 | 35.0 | 31 | 10 | 32.3% | 5 | 0.62 | parse 21, novelty 5 | "
                          "no output (12); cut off by the length limit (6); ROUGE-L > 0.7 vs an earlier task (5) | "
                          "2.5 min (load 1.5) | Intel Xeon, 2 cores, no GPU |")
    assert "Not run yet: served." in section and "a 135M-parameter model's tasks" in section
    assert "3 kept tasks of in_process, drawn at random" in section
    shown = [line for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [line.split(" | ")[1] for line in shown] == ["Fill the table: a \\| b", "Task 3", "Task 4"]
    # as written, but a pipe escaped, markup shown as text, a long field cut, an empty input a dash
    assert shown[0] == f"| 1 | Fill the table: a \\| b | &lt;b>bold&lt;/b><br>second line | {'x' * 400} … |"
    assert shown[1] == "| 2 | Task 3 | – | answer 3 |"
    assert results.format.md_table(["x"], [[results.sections._example_cell("a | b\n\n<i>c</i>")]])[-1] == \
        "| a \\| b<br>&lt;i>c&lt;/i> |"
    assert "tiny_self_instruct_in_process" in text.split("## Hardware")[1]
    assert "python generate/run.py --config demo --output_dir runs/results/tiny_self_instruct_served" in section

    # another teacher: no word about a 135M model; a refused request is no task block
    stats = json.loads((kept / "stats.json").read_text())
    stats["self_instruct"]["rejected_by_stage"] = {"teacher": 2, "parse": 19, "novelty": 5}
    (kept / "stats.json").write_text(json.dumps(stats))
    (kept / "provenance.json").write_text(json.dumps({"models": {"teacher": "meta-llama/Llama-2-70b-chat-hf"}}))
    section = results.generate_section(generate[0], records)[0]
    assert not any("135M" in line for line in section)
    assert "| 29 | 10 | 34.5% |" in next(line for line in section if line.startswith("| in_process |"))


def fake_generate(calls: list, ready: str | None):
    """Stands in for the generate command: checks the server answers while it runs and leaves a finished run."""
    def call(command, cwd=None):
        assert ready is None or results.runner._answers(ready), "the generate command ran without its server"
        calls.append(command)
        write_generate_run(Path(command[command.index("--output_dir") + 1]))
        return 0
    return call


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_served_variant_runs_inside_its_servers_lifetime_and_a_finished_one_is_skipped(plan, tmp_path, monkeypatch,
                                                                                        capsys):
    port, pid_file = free_port(), tmp_path / "server.pid"
    (tmp_path / "server.py").write_text(SERVER)
    generate = generate_plan(tmp_path, ["python", str(tmp_path / "server.py"), str(port), str(pid_file),
                                        "{smollm2_gguf}"], port)
    monkeypatch.setattr("tunelab.smollm2.gguf_path", lambda: Path("/models/SmolLM2.gguf"))
    calls = []
    ready = f"http://127.0.0.1:{port}/v1/models"
    monkeypatch.setattr(results.runner, "call_forwarding_termination", fake_generate(calls, ready))
    root, records = tmp_path / "runs", tmp_path / "records"
    ran = results.run(plan, only=["tiny_self_instruct"], methods=["served"], root=root, records=records,
                      generate_runs=generate)
    assert [r["returncode"] for r in ran] == [0] and len(calls) == 1
    assert calls[0][1:] == ["generate/run.py", "--config", "demo", "--output_dir",
                            str(root / "tiny_self_instruct_served"), "--teacher_backend", "openai", "--teacher_base_url", f"http://127.0.0.1:{port}/v1"]
    pid, gguf = pid_file.read_text().split()
    assert gguf == "/models/SmolLM2.gguf" and gone(int(pid))  # stopped after the run, not left behind
    assert (records / "tiny_self_instruct_served" / "examples.json").exists()

    pid_file.unlink()
    assert results.run(plan, only=["tiny_self_instruct"], methods=["served"], root=root, records=records,
                       generate_runs=generate) == []
    assert "is finished; skipped" in capsys.readouterr().out and not pid_file.exists()  # no server for nothing

    # `list` shows the server in the background around its command
    monkeypatch.chdir(tmp_path)  # main moves to the project; back where the test was afterwards
    assert results.main(["--plan", str(tmp_path / "plan.yaml"), "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    served = listed.index(next(line for line in listed if "tiny_self_instruct_served" in line))
    assert listed[served - 1].endswith(" &") and "server.py" in listed[served - 1] and listed[served + 1] == "kill $!"
    assert any(line.endswith("--output_dir runs/results/tiny_self_instruct_in_process") for line in listed)


def test_a_server_that_never_answers_or_exits_is_named_in_one_line_and_stopped(plan, tmp_path, monkeypatch, capsys):
    pid_file = tmp_path / "server.pid"
    silent = ["python", "-c", f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
                              "print('loading the model', flush=True); time.sleep(60)"]
    calls = []
    monkeypatch.setattr(results.runner, "call_forwarding_termination", fake_generate(calls, None))
    root = tmp_path / "runs"
    started = time.monotonic()
    ran = results.run(plan, only=["tiny_self_instruct"], methods=["served"], root=root, records=None,
                      generate_runs=generate_plan(tmp_path, silent, free_port(), timeout_s=1))
    assert [r["returncode"] for r in ran] == [1] and calls == [] and time.monotonic() - started < 20
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "did not answer at http://127.0.0.1:" in error and "within 1 s" in error
    assert "import os, time" in error and error.endswith("ends: loading the model")
    assert gone(int(pid_file.read_text()))

    (tmp_path / "plan.yaml").write_text((tmp_path / "plan.yaml").read_text().split("generate:")[0])
    failing = ["python", "-c", "import sys; sys.exit('no such flag: --n_ctx')"]
    results.run(plan, only=["tiny_self_instruct"], methods=["served"], root=root, records=None,
                generate_runs=generate_plan(tmp_path, failing, free_port()))
    error = capsys.readouterr().err.strip()
    assert "exited (1) before answering" in error and error.endswith("ends: no such flag: --n_ctx")

    # llama.cpp's server missing: the extra that installs it, before anything starts
    monkeypatch.setattr(results.runner, "find_spec", lambda name: None)
    (tmp_path / "plan.yaml").write_text((tmp_path / "plan.yaml").read_text().split("generate:")[0])
    ran = results.run(plan, only=["tiny_self_instruct"], methods=["served"], root=root, records=None,
                      generate_runs=generate_plan(tmp_path, ["python", "-m", "llama_cpp.server"], free_port()))
    error = capsys.readouterr().err.strip()
    assert [r["returncode"] for r in ran] == [1] and len(error.splitlines()) == 1
    assert error.endswith('pip install -e ".[llamacpp]"') and "llama_cpp.server is not installed" in error


def test_stopping_the_runner_while_its_server_starts_stops_the_server(tmp_path):
    pid_file = tmp_path / "server.pid"
    script = tmp_path / "runner.py"
    script.write_text(f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(EVALUATE)!r})
import result_runs as results
server = results.Server(command=["python", "-c", "import os, time; "
                                 "open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"],
                        ready="http://127.0.0.1:9/never", timeout_s=120)
with results.serving(server, Path({str(tmp_path / 'server.log')!r})):
    pass
""")
    runner = subprocess.Popen([sys.executable, str(script)])
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=30) == 128 + signal.SIGTERM
    assert gone(int(pid_file.read_text()))  # stopped and reaped, not orphaned


def student_plan(tmp_path) -> list:
    """A student run on the tiny random Llama: untuned vs two LoRA students, four held-aside records."""
    from fakes import TINY_STUDENT_CONFIG

    split = tmp_path / "runs" / "split"
    (tmp_path / "answer.yaml").write_text(f"data: {split / 'heldout.json'}\nmax_new_tokens: 4\nbatch_size: 4\n")
    (tmp_path / "text.yaml").write_text("task: text\nallow_empty_predictions: true\nbootstrap_resamples: 50\n")
    (tmp_path / "plan.yaml").write_text(f"""
students:
  - name: tiny_students
    title: Tiny students
    base: tunelab:tiny-llama
    prepare:
      - [python, data/split_alpaca.py, --source, data/alpaca_sample.json, --train, "16", --heldout, "4",
         --output_dir, {split}]
    finetune: {TINY_STUDENT_CONFIG}
    inference: {tmp_path / 'answer.yaml'}
    evaluate: {tmp_path / 'text.yaml'}
    variants:
      untuned: null
      lora: [--data, {split / 'train.json'}, --max_steps, "2"]
      lora_8: [--data, {split / 'train.json'}, --max_examples, "8", --max_steps, "1"]
    data: sixteen shipped Alpaca records
    examples: 2
""", encoding="utf-8")
    return results.load_students(tmp_path / "plan.yaml")


def test_students_are_trained_answer_the_same_held_aside_records_and_are_scored_against_the_first(tmp_path, capsys):
    student_runs = student_plan(tmp_path)
    root, records = tmp_path / "runs", tmp_path / "records"
    ran = results.run([], root=root, records=records, student_runs=student_runs)
    assert [r["returncode"] for r in ran] == [0] * len(ran)
    commands = [r["command"].split()[1] for r in ran]
    # the split once, the untuned model answers, each LoRA student trains then answers, then one scoring
    assert commands == ["data/split_alpaca.py", "inference.py", "finetune/train.py", "inference.py",
                        "finetune/train.py", "inference.py", "evaluate/score.py"], commands
    scores = json.loads((root / "tiny_students" / "scores" / "scores.json").read_text())
    assert scores["examples"] == 4 and scores["baseline"] == "untuned"
    assert [r["name"] for r in scores["runs"]] == ["untuned", "lora", "lora_8"]
    kept = sorted(str(p.relative_to(records)) for p in records.rglob("*") if p.is_file())
    assert "tiny_students/lora/student/provenance.json" in kept and "tiny_students/examples.json" in kept
    assert "tiny_students/prepared/split/provenance.json" in kept  # how the held-aside records were drawn
    assert not any(k.endswith(".safetensors") or "predictions" in k for k in kept)
    examples = json.loads((records / "tiny_students" / "examples.json").read_text())
    assert len(examples) == 2 and set(examples[0]["answers"]) == {"untuned", "lora", "lora_8"}

    text = results.report([], root=records, out=None, bench=None, student_runs=student_runs)
    section = text.split("## Tiny students")[1].split("\n## ")[0]
    assert "| untuned | nothing: tunelab:tiny-llama as it is |" in section
    assert "| lora | 16 examples of train.json |" in section and "| lora_8 | 8 examples of train.json |" in section
    assert "Δ BLEU vs untuned" in section and "python evaluate/score.py" in section

    capsys.readouterr()
    assert results.run([], root=root, records=records, student_runs=student_runs) == []  # all finished
    # a student trained again answers again and is scored again; the others are left as they are
    ran = results.run([], methods=["lora_8"], root=root, records=records, student_runs=student_runs, rerun=True)
    assert [r["command"].split()[1] for r in ran] == ["finetune/train.py", "inference.py", "evaluate/score.py"]


def test_an_unscored_student_run_is_listed_as_not_run(tmp_path):
    text = results.report([], root=tmp_path / "none", out=None, bench=None, student_runs=student_plan(tmp_path))
    assert "## Tiny students\n\nNot run yet." in text


def test_a_judged_student_run_shows_judge_scores_win_rates_and_how_its_preference_pairs_were_made(tmp_path):
    (student_run,) = student_plan(tmp_path)
    folder = tmp_path / "records" / student_run.name
    ci = lambda v: {"value": v, "ci_low": v - 0.1, "ci_high": v + 0.1}  # noqa: E731
    scores = {"source": "text", "examples": 4, "baseline": "untuned", "bleu_signature": "nrefs:1",
              "runs": [{"name": n, "empty_predictions": 0, "bleu": ci(1.0), "rouge_l_f1": ci(0.2),
                        "bertscore_f1": ci(0.8)} for n in ("untuned", "lora")], "comparisons": [],
              "judge": {"judged_by": {"judge": "tunelab:smollm2", "rubric": "judge_single_fewshot@abc", "scale": 5,
                                      "pairwise_rubric": "judge_pairwise_fewshot@def"},
                        "runs": [{"name": "untuned", "mean_score": ci(2.5), "rated": 4, "unreadable": 0},
                                 {"name": "lora", "mean_score": ci(3.0), "rated": 3, "unreadable": 1}],
                        "score_deltas": [{"run": "lora", "baseline": "untuned", "examples": 3, "delta": 0.5,
                                          "ci_low": 0.1, "ci_high": 0.9, "excludes_zero": True}],
                        "win_rates": [{"run": "lora", "baseline": "untuned", "wins": 2, "losses": 1, "ties": 1,
                                       "identical": 1, "unreadable": 0, "win_rate": ci(0.625),
                                       "position_disagreements": 1, "position_bias_rate": 0.3333}]}}
    for sub, data in (("scores/scores.json", scores), ("scores/provenance.json", {"seconds": 60}),
                      ("prepared/prefs/stats.json", {"preferences": {
                          "instructions": 10, "candidates": 18, "pairs": 6, "dropped": 4,
                          "drop_reasons": {"scores closer than 0.25": 4}, "unreadable_verdicts": 1,
                          "mean_score_by_source": {"tunelab:smollm2": 2.4, "reference": 3.1},
                          "reference_scored_above_every_answer": 0.7, "reference_comparisons": 8,
                          "judged_by": {"judge": "tunelab:smollm2", "rubric": "judge_single_fewshot@abc"}}}),
                      ("lora/student/provenance.json", {"notes": {"summary": {"pairs": 6, "steps": 3}}}),
                      ("lora/student/config.yaml", {"data": ["prefs/preferences.chat.jsonl"], "num_train_epochs": 2.0}),
                      ("prepared/prefs_pairwise/stats.json", {"preferences": {
                          "instructions": 10, "candidates": 20, "pairs": 7, "dropped": 3, "comparisons": 10,
                          "unreadable_comparisons": 2, "reference_won_against_every_answer": 0.25,
                          "reference_comparisons": 8, "judged_by": {"judge": "tunelab:smollm2"}}})):
        (folder / sub).parent.mkdir(parents=True, exist_ok=True)
        (folder / sub).write_text(json.dumps(data))
    text = results.report([], root=tmp_path / "records", out=None, bench=None, student_runs=[student_run])
    section = text.split("## Tiny students")[1].split("\n## ")[0]
    assert "| lora | 3.00 [2.90, 3.10] | 3 / 1 | +0.50 [+0.10, +0.90] * | 0.625 [0.525, 0.725] | 2 / 1 / 1 (1 identical) | 0 | 33.3% |" in section
    assert "| untuned | 2.50 [2.40, 2.60] | 4 / 0 | – | – | – | – | – |" in section
    assert "6 pairs kept, 4 dropped (scores closer than 0.25 4)" in section
    assert "in 70.0% of 8 instructions" in section and "reference 3.10" in section
    assert "unreadable comparisons 2 of 10" in section
    assert "| lora | 6 pairs of preferences.chat.jsonl (3 steps, 2 epochs) |" in section
    assert "won against every model answer, in both orders, in 25.0% of 8 instructions" in section
    # no record with both verdicts readable, or no resamples: said, not a crash
    assert results.format.delta_text({"delta": None, "ci_low": None, "ci_high": None, "excludes_zero": None}) == "–"
    assert results.format.delta_text({"delta": 0.5, "ci_low": None, "ci_high": None, "excludes_zero": None}, 2) == "+0.50"


def test_the_readout_says_where_each_system_loses_to_the_references_as_plainly_as_where_it_wins():
    numbers = {"llm": {"subset_accuracy": 0.5, "macro_f1": 0.4, "f1": {"toxic": 0.9, "threat": 0.0}},
               "encoder": {"subset_accuracy": 0.4, "macro_f1": 0.6, "f1": {"toxic": 0.9, "threat": 0.2}},
               "TF-IDF": {"subset_accuracy": 0.5, "macro_f1": 0.5, "f1": {"toxic": 0.8, "threat": 0.3}}}
    lines = results.sections._readout(numbers, ["encoder", "TF-IDF"])
    assert lines[0].startswith("Read against encoder and TF-IDF")
    assert ("- llm: loses to encoder on macro-F1 (0.400 vs 0.600); loses to TF-IDF on macro-F1 (0.400 vs 0.500); "
            "beats encoder on subset accuracy.") in lines
    assert "- llm never finds threat (F1 0)." in lines and not any(line.startswith("- encoder") for line in lines)
    assert results.sections._readout(numbers, []) == []


def test_the_report_opens_with_links_to_its_sections_as_github_names_them():
    from result_runs.report import contents

    lines = ["## IMDB sentiment, official split (25,000 train / 25,000 test)", "text", "## Speed (`make bench`)",
             "### not listed", "## Speed (`make bench`)"]
    assert contents(lines) == [
        "## Contents", "",
        "- [IMDB sentiment, official split (25,000 train / 25,000 test)]"
        "(#imdb-sentiment-official-split-25000-train--25000-test)",
        "- [Speed (`make bench`)](#speed-make-bench)", "- [Speed (`make bench`)](#speed-make-bench-1)", ""]
    assert contents(["no sections"]) == []


def test_a_comparison_read_against_a_system_it_does_not_run_is_refused(tmp_path):
    (tmp_path / "plan.yaml").write_text("""
comparisons:
  - name: c
    title: C
    data: d
    references: [minilm]
    variants:
      lora: [[python, evaluate/score.py, --output_dir, "{run}/scores"]]
""")
    with pytest.raises(ConfigError, match=r"references \['minilm'\] are not among its variants"):
        results.load_comparisons(tmp_path / "plan.yaml")


def test_a_comparison_scores_every_kind_of_classifier_on_the_same_rows_and_tabulates_them(tmp_path):
    """LLM answers (zero-shot with k-shot inference runs beside it; LoRA) and an encoder with its TF-IDF baseline,
    on tiny models: the mechanics, end to end."""
    from fakes import TINY_STUDENT_CONFIG

    data = tmp_path / "runs" / "data"
    (tmp_path / "answer.yaml").write_text(f"data: {data / 'moderation_test.alpaca.json'}\nmax_new_tokens: 4\n"
                                          "label_probs: [jigsaw]\n")
    (tmp_path / "words.yaml").write_text("task: classification\ntaxonomy: jigsaw\nplots: false\n")
    (tmp_path / "head.yaml").write_text(f"base: tunelab:minilm\ntask: classify\ndata: [{data / 'moderation_train.jsonl'}]\n"
                                        "taxonomy: jigsaw\neval_split: 0.2\nmax_length: 32\nmax_steps: 2\n"
                                        "save_strategy: 'no'\nreport_to: none\ndisable_tqdm: true\n")
    (tmp_path / "heads.yaml").write_text(f"task: classification\ndata: {data / 'moderation_test.jsonl'}\n"
                                         "tfidf_baseline: true\nplots: false\nbootstrap_resamples: 50\n")
    (tmp_path / "plan.yaml").write_text(f"""
comparisons:
  - name: tiny_tox
    title: Tiny toxicity
    prepare:
      - [python, generate/run.py, --tasks, moderation, --corpus, data/jigsaw_sample.csv, --test_per_label, "3",
         --test_none, "3", --train_max_per_label, "8", --train_none, "8", --output_dir, {data}]
    variants:
      untuned:
        - [python, inference.py, --config, {tmp_path / 'answer.yaml'}, --model, tunelab:tiny-llama, --output_dir, "{{run}}/inference"]
        - [python, inference.py, --config, {tmp_path / 'answer.yaml'}, --model, tunelab:tiny-llama, --shots, "1",
           --shots_seed, "0", --shots_data, {data / 'moderation_train.alpaca.json'}, --output_dir, "{{run}}/1shot_seed0"]
        - [python, inference.py, --config, {tmp_path / 'answer.yaml'}, --model, tunelab:tiny-llama, --shots, "1",
           --shots_seed, "1", --shots_data, {data / 'moderation_train.alpaca.json'}, --output_dir, "{{run}}/1shot_seed1"]
        - [python, evaluate/score.py, --config, {tmp_path / 'words.yaml'}, --predictions, "{{run}}/inference/predictions.jsonl",
           --baselines, "{{run}}/1shot_seed0/predictions.jsonl", "{{run}}/1shot_seed1/predictions.jsonl",
           --output_dir, "{{run}}/scores"]
      lora:
        - [python, finetune/train.py, --config, {TINY_STUDENT_CONFIG}, --data, {data / 'moderation_train.alpaca.json'},
           --max_steps, "1", --output_dir, "{{run}}/student"]
        - [python, inference.py, --config, {tmp_path / 'answer.yaml'}, --model, "{{run}}/student", --output_dir, "{{run}}/inference"]
        - [python, evaluate/score.py, --config, {tmp_path / 'words.yaml'}, --predictions, "{{run}}/inference/predictions.jsonl",
           --output_dir, "{{run}}/scores"]
      head:
        - [python, finetune/train.py, --config, {tmp_path / 'head.yaml'}, --output_dir, "{{run}}/model"]
        - [python, evaluate/score.py, --config, {tmp_path / 'heads.yaml'}, --model, "{{run}}/model", --output_dir, "{{run}}/scores"]
    data: the shipped Jigsaw sample
    studies: [a study's number]
""", encoding="utf-8")
    comparisons = results.load_comparisons(tmp_path / "plan.yaml")
    root, records = tmp_path / "runs", tmp_path / "records"
    assert results.report([], root=records, out=None, bench=None, comparisons=comparisons).count("Not run yet.") == 1
    ran = results.run([], root=root, records=records, comparisons=comparisons)
    assert [r["returncode"] for r in ran] == [0] * len(ran) and len(ran) == 10  # the data made once
    kept = sorted(str(p.relative_to(records)) for p in records.rglob("*") if p.is_file())
    assert "tiny_tox/lora/student/provenance.json" in kept and "tiny_tox/head/scores/scores.json" in kept
    assert not any(k.endswith(".safetensors") or "predictions" in k for k in kept)

    text = results.report([], root=records, out=None, bench=None, comparisons=comparisons)
    section = text.split("## Tiny toxicity")[1].split("\n## ")[0]
    test_rows = json.loads((records / "tiny_tox/head/scores/scores.json").read_text())["examples"]
    systems = {line.split(" | ")[0].lstrip("| "): line for line in section.split("F1 per label:")[0].splitlines()
               if line.startswith("| ")}
    for name in ("untuned", "untuned, 1-shot (2 seeds)", "lora", "head",
                 "TF-IDF + logistic regression (fitted on head's training rows)"):
        assert f"| {test_rows} |" in systems[name], (name, systems)  # every system on the same rows
    assert "| in words |" in systems["lora"] and "| classifier scores |" in systems["head"]
    assert " ± " in systems["untuned, 1-shot (2 seeds)"] and "min over 2 runs" in systems["untuned, 1-shot (2 seeds)"]
    assert "F1 per label:" in section and "| system | toxic | severe_toxic |" in section
    assert "- a study's number" in section and "python evaluate/score.py" in section


def test_a_moderation_qa_run_reports_its_parse_rate_and_kept_posts(plan, tmp_path):
    generate = generate_plan(tmp_path, ["python", "-c", "pass"], free_port())
    root, records = tmp_path / "runs", tmp_path / "records"
    run_dir = root / "tiny_self_instruct_in_process"
    write_generate_run(run_dir)
    (run_dir / "self_instruct.alpaca.json").unlink()
    (run_dir / "stats.json").write_text(json.dumps({"moderation_qa": {
        "posts": 16, "kept_posts": 11, "pairs": 33, "rejected": 5, "sent": 16, "cached": 0, "completion_tokens": 4000,
        "seconds": 100.0, "rejected_by_stage": {"parse": 4, "teacher": 1},
        "reject_reasons": {"unknown category 'spam'": 2, "cut off by the length limit": 2, "refused": 1}}}))
    posts = [{"id": f"c{i}", "text": f"comment {i}", "qa": [{"question": "Is it rude?", "answer": "Yes."}],
              "verdicts": [{"category": "insult", "violates": i % 2 == 0, "rationale": "name-calling"}]}
             for i in range(11)]
    (run_dir / "moderation_qa.jsonl").write_text("".join(json.dumps(p) + "\n" for p in posts))
    kept = results.keep_generate_records(generate[0], "in_process", root, records)
    examples = json.loads((kept / "examples.json").read_text())
    assert len(examples) == 3 and set(examples[0]) == {"id", "text", "qa", "verdicts"}

    section = results.report(plan, root=records, out=None, bench=None, generate_runs=generate)
    section = section.split("## Tiny self-instruct")[1].split("\n## ")[0]
    assert "| variant | posts sent | tokens generated | teacher tokens/s | answers | parsed | parse rate |" in section
    # 16 posts, 1 refused: 15 answers, 4 of them failed parsing: 11 parsed (73.3%)
    row = next(line for line in section.splitlines() if line.startswith("| in_process |"))
    assert row.startswith("| in_process | 16 | 4,000 | 40.0 | 15 | 11 | 73.3% | 11 | 33 | parse 4, teacher 1 | ")
    assert "3 kept posts of in_process" in section and "Q: Is it rude? A: Yes." in section
    assert "insult: yes" in section or "insult: no" in section


def test_every_step_after_one_that_runs_runs_again(tmp_path, capsys):
    """An interrupted inference after a finished training: the older scores beside it are not the new answers'."""
    (tmp_path / "plan.yaml").write_text("""
comparisons:
  - name: chain
    title: Chain
    variants:
      tuned:
        - [python, finetune/train.py, --config, a, --output_dir, "{run}/student"]
        - [python, inference.py, --config, b, --output_dir, "{run}/inference"]
        - [python, evaluate/score.py, --config, c, --output_dir, "{run}/scores"]
    data: none
""")
    comparisons = results.load_comparisons(tmp_path / "plan.yaml")
    root = tmp_path / "runs"
    for step, finished in (("student", True), ("inference", False), ("scores", True)):
        (root / "chain" / "tuned" / step).mkdir(parents=True)
        (root / "chain" / "tuned" / step / ("provenance.json" if finished else "partial.jsonl")).write_text("{}")
    results.run([], root=root, dry_run=True, comparisons=comparisons)
    printed = capsys.readouterr().out.splitlines()
    assert "is finished; skipped" in printed[0] and "finetune/train.py" in printed[0]
    assert "inference.py" in printed[1] and "evaluate/score.py" in printed[2] and printed[2].endswith("--overwrite true")


def test_an_interrupted_inference_step_continues_from_its_saved_answers(tmp_path, capsys):
    (tmp_path / "plan.yaml").write_text("""
comparisons:
  - name: tox
    title: Toxicity
    variants:
      untuned:
        - [python, inference.py, --config, demo, --shots, "1", --output_dir, "{run}/1shot_seed0"]
        - [python, evaluate/score.py, --task, classification, --output_dir, "{run}/scores"]
    data: rows
    studies: [a study]
""", encoding="utf-8")
    comparisons = results.load_comparisons(tmp_path / "plan.yaml")
    root = tmp_path / "runs"
    (root / "tox" / "untuned" / "1shot_seed0").mkdir(parents=True)
    (root / "tox" / "untuned" / "1shot_seed0" / "predictions.jsonl").write_text('{"id": "a"}\n')
    results.run([], root=root, comparisons=comparisons, records=None, dry_run=True)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("results: python")]
    assert printed[0].endswith("--resume true") and not printed[1].endswith("true")

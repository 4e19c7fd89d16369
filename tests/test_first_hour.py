"""What a new user meets first: every entry point without a config, files others can read, one-line errors
for what a user gets wrong, secrets kept out of run folders, and generate folders that never mix two runs."""

import json
import os
import stat
import subprocess
import sys

import pytest

from tunelab.generation.corpus_builds import ModerationBuild
from tunelab.paths import PROJECT_ROOT
from tunelab.stages import evaluate, finetune, generate, infer, merge


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def unreadable_by_others(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if not p.is_symlink() and not os.stat(p).st_mode & stat.S_IROTH)


@pytest.fixture(scope="module")
def configless(tmp_path_factory, tiny_llama):
    """A student trained, merged and run with no config: only --base/--model, --data and --output_dir
    (plus step limits that keep it quick). Files are written under umask 022."""
    root = tmp_path_factory.mktemp("configless")
    old = os.umask(0o022)
    try:
        assert finetune.main(["--base", "tunelab:tiny-llama", "--data", "data/alpaca_sample.json", "--max_steps", "2",
                              "--max_examples", "16", "--save_steps", "1", "--output_dir", str(root / "student")]) == 0
        assert infer.main(["--model", str(root / "student"), "--data", "data/alpaca_heldout.json", "--limit", "2",
                           "--max_new_tokens", "4", "--output_dir", str(root / "answers")]) == 0
    finally:
        os.umask(old)
    return root


def test_finetune_sft_runs_without_a_config(configless):
    assert (configless / "student/adapter_model.safetensors").stat().st_mode & 0o777 == 0o644
    assert not list(configless.rglob("training_args.bin"))  # a pickle, and it can carry a hub token
    checkpoints = list((configless / "student").glob("checkpoint-*"))
    assert checkpoints and not [c for c in checkpoints if (c / "README.md").exists()]  # no blank peft cards
    assert unreadable_by_others(configless / "student") == []


def test_inference_runs_without_a_config(configless):
    assert len((configless / "answers/predictions.jsonl").read_text().splitlines()) == 2
    assert unreadable_by_others(configless / "answers") == []


def test_merge_runs_without_a_config(configless, tmp_path, umask_022):
    assert merge.main(["--model", str(configless / "student"), "--output_dir", str(tmp_path / "merged")]) == 0
    assert unreadable_by_others(tmp_path / "merged") == []


def test_evaluate_runs_without_a_config(configless, tmp_path, umask_022):
    assert evaluate.main(["--predictions", str(configless / "answers/predictions.jsonl"), "--allow_empty_predictions",
                          "--bootstrap_resamples", "0", "--output_dir", str(tmp_path / "scores")]) == 0
    assert unreadable_by_others(tmp_path / "scores") == []


def test_finetune_classify_runs_without_a_config(tmp_path, umask_022):
    assert finetune.main(["--base", "tunelab:minilm", "--task", "classify", "--data", "data/jigsaw_sample.csv",
                          "--text_column", "comment_text", "--label_columns", "toxic", "insult", "--max_steps", "1",
                          "--max_examples", "32", "--output_dir", str(tmp_path / "classifier")]) == 0
    assert unreadable_by_others(tmp_path / "classifier") == []


def test_generate_runs_without_a_config(tmp_path, umask_022):
    # Libraries write some files through temporary files (0600); every run folder ends as the umask says.
    assert generate.main(["--tasks", "moderation", "--output_dir", str(tmp_path / "data")]) == 0
    assert unreadable_by_others(tmp_path / "data") == []


def test_atomic_writes_follow_the_umask(tmp_path):
    from tunelab.records import write_json

    old = os.umask(0o027)
    try:
        write_json(tmp_path / "a.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640


def run_cli(script, *args, env=None):
    return subprocess.run([sys.executable, str(PROJECT_ROOT / script), *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=300)


def test_user_errors_are_one_line_with_exit_2_and_debug_shows_the_traceback(tmp_path):
    (tmp_path / "runs").mkdir()
    inside = run_cli("inference.py", "--model", str(tmp_path / "runs/no-such-student"), "--output_dir",
                     str(tmp_path / "a"))
    assert inside.returncode == 2 and inside.stderr.count("\n") == 1 and "no such folder" in inside.stderr
    assert inside.stdout == ""  # no library notice ahead of it (bitsandbytes' missing 'kernels' line)
    assert not (tmp_path / "a").exists()  # an early error leaves no output folder behind
    # The shape of a hub id, in no folder that exists here: it could be either, and neither is there.
    missing = run_cli("inference.py", "--model", "no-such-org-tl/no-such-student", "--output_dir", str(tmp_path / "a"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "no-such-org-tl/no-such-student" in missing.stderr and "HF_HUB_OFFLINE" in missing.stderr
    hub = run_cli("finetune/train.py", "--base", "meta-llama/Llama-2-7b-chat-hf", "--data", "data/alpaca_sample.json",
                  "--output_dir", str(tmp_path / "b"))
    assert hub.returncode == 2 and hub.stderr.count("\n") == 1 and "local folder" in hub.stderr
    debug = run_cli("inference.py", "--model", "./no-such-student", "--output_dir", str(tmp_path / "a"),
                    env={"TUNELAB_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "no such folder" in debug.stderr


def test_yaml_mistakes_name_file_and_line_and_leave_nothing_behind(tmp_path, capsys):
    cases = {
        "mapping.yaml": ("tasks: [moderation]\ntest_per_label: {a: 1}\n", ":2: key 'test_per_label' takes a value"),
        "corpus.yaml": ("seed: 1\n\ncorpus: {a: 1}\n", ":3: key 'corpus' takes a value"),
        "broken.yaml": ("tasks: [moderation\nseed: 1\n", ":2: not valid YAML"),
        "typo.yaml": ("seed: 1\nseeed: 2\n", ":2: unknown key 'seeed'; did you mean seed?"),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text)
        out = tmp_path / f"out-{name}"
        assert generate.main(["--config", str(tmp_path / name), "--output_dir", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"{tmp_path / name}{expected}" in err and err.count("\n") == 1, err
        assert not out.exists()


def test_out_of_range_and_non_finite_numbers_are_refused(tmp_path, capsys):
    for flag, value in (("--temperature", "nan"), ("--top_p", "inf")):
        assert generate.main([flag, value, "--dry_run", "--output_dir", str(tmp_path / "x")]) == 2
        assert f"{flag[2:]} must be a finite number" in capsys.readouterr().err


def test_an_output_dir_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    file = tmp_path / "taken"
    file.write_text("mine")
    assert generate.main(["--tasks", "moderation", "--output_dir", str(file)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err and file.read_text() == "mine"


def test_a_pickled_adapter_is_refused_in_one_line(tmp_path, tiny_llama, capsys):
    import torch

    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": tiny_llama}))
    torch.save({"w": torch.zeros(1)}, folder / "adapter_model.bin")
    (folder / "tunelab_model.json").write_text(json.dumps({"base": "tunelab:tiny-llama", "adapter": True, "task": "sft"}))
    assert infer.main(["--model", str(folder), "--output_dir", str(tmp_path / "a")]) == 2
    assert "adapter_model.bin, a pickle, which is never loaded" in capsys.readouterr().err


def test_hub_tokens_are_refused_on_train_and_masked_in_any_record(tmp_path, capsys):
    from tunelab.runs import redact, redact_command

    assert finetune.main(["--base", "tunelab:tiny-llama", "--data", "data/alpaca_sample.json", "--hub_token",
                          "hf_secretvalue123", "--output_dir", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "HF_TOKEN" in err and "hf_secretvalue123" not in err and not (tmp_path / "t").exists()
    assert finetune.main(["--base", "tunelab:tiny-llama", "--data", "data/alpaca_sample.json", "--push_to_hub",
                          "--output_dir", str(tmp_path / "p")]) == 2
    assert "finetune/push.py" in capsys.readouterr().err
    assert redact_command(["x", "--hub_token", "hf_a", "--hub-token=hf_b", "--eos_token", "</s>"]) == [
        "x", "--hub_token", "***", "--hub-token=***", "--eos_token", "</s>"]
    assert redact({"teacher_base_url": "http://u:pw@h:8/v1?api_key=k1&model=m"}) == {
        "teacher_base_url": "http://u:***@h:8/v1?api_key=***&model=m"}


def test_a_key_given_as_the_variable_name_is_not_echoed():
    from tunelab.errors import ConfigError
    from tunelab.teachers.http_teacher import api_key_from_env

    with pytest.raises(ConfigError) as caught:
        api_key_from_env("hf_abcdefSECRET123")
    assert "hf_abcdefSECRET123" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"\$NO_SUCH_TUNELAB_KEY"):
        api_key_from_env("NO_SUCH_TUNELAB_KEY")


def test_a_run_killed_before_its_teacher_cache_exists_continues_with_the_same_command(tmp_path, monkeypatch, capsys):
    argv = ["--tasks", "moderation", "--output_dir", str(tmp_path / "d")]

    def killed(self, ctx):
        (ctx.out / "moderation.dropped.jsonl").write_text("")
        raise KeyboardInterrupt  # as good as a kill: nothing after this line runs

    monkeypatch.setattr(ModerationBuild, "run", killed)
    assert generate.main(argv) == 130  # Ctrl-C: one line on how to continue, no traceback
    assert capsys.readouterr().err.strip() == "interrupted; rerun the same command to continue"
    monkeypatch.undo()
    assert generate.main(argv) == 0 and (tmp_path / "d/provenance.json").exists()


def test_a_failed_overwrite_never_passes_for_finished_nor_mixes_runs(tmp_path, monkeypatch, capsys):
    out = tmp_path / "d"
    assert generate.main(["--config", "demo", "--tasks", "moderation", "self_instruct", "--max_requests", "1",
                          "--max_new_tokens", "8", "--output_dir", str(out)]) == 0
    assert (out / "self_instruct.alpaca.json").exists() and (out / "teacher_cache.jsonl").exists()

    def failing(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ModerationBuild, "run", failing)
    replace = ["--tasks", "moderation", "--seed", "1", "--output_dir", str(out), "--overwrite"]
    with pytest.raises(RuntimeError):
        generate.main(replace)
    left = sorted(p.name for p in out.iterdir())
    assert "provenance.json" not in left and "stats.json" not in left
    assert not [name for name in left if name.startswith("self_instruct")], left
    assert "teacher_cache.jsonl" in left  # paid-for answers are kept
    capsys.readouterr()
    assert generate.main(["--tasks", "moderation", "--output_dir", str(out)]) == 2  # other settings: refused
    assert "unfinished run with other settings" in capsys.readouterr().err
    monkeypatch.undo()
    assert generate.main(replace) == 0
    assert json.loads((out / "stats.json").read_text()).keys() == {"moderation"}


def test_messages_say_what_is_wrong_with_a_value(tmp_path, capsys):
    numeric = tmp_path / "numeric.jsonl"
    labels = {"toxic": 1, "severe_toxic": 0, "obscene": 0, "threat": 0, "insult": 0, "identity_hate": 0}
    numeric.write_text(json.dumps({"text": 12345, **labels}) + "\n")
    assert generate.main(["--tasks", "moderation", "--corpus", str(numeric), "--text_column", "text",
                          "--output_dir", str(tmp_path / "m")]) == 2
    assert f"{numeric}:1: column 'text' must be a string, got int (12345)" in capsys.readouterr().err
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"id": "s", "instruction": 7, "instances": [{"input": "", "output": "x"}]}) + "\n")
    assert generate.main(["--tasks", "self_instruct", "--seed_tasks", str(seeds), "--dry_run"]) == 2
    assert f"{seeds}:1: the seed task's 'instruction' must be a string, got int (7)" in capsys.readouterr().err
    twice = tmp_path / "predictions.jsonl"
    twice.write_text("".join(json.dumps({"id": "a", "prediction": "x", "reference": "y"}) + "\n" for _ in range(2)))
    assert evaluate.main(["--task", "text", "--predictions", str(twice), "--output_dir", str(tmp_path / "s")]) == 2
    assert f"{twice}:2: record a: id already on line 1" in capsys.readouterr().err


@pytest.mark.parametrize("config", ["llama2_70b", "llama2_70b_vllm"])
def test_the_full_size_teacher_configs_dry_run_offline(config, capsys):
    """The README's first real-use command: a dry run needs no weights, and estimates tokens without the
    tokenizer when the hub is out of reach."""
    assert generate.main(["--config", config, "--dry_run"]) == 0
    report = json.loads(capsys.readouterr().out.split("\ngenerate: dry run")[0])
    assert report["tasks"]["self_instruct"]["to_send"] == (500 if config == "llama2_70b" else 2000)


@pytest.mark.parametrize("flag, value", [("--per_device_train_batch_size", "0"), ("--gradient_accumulation_steps", "0"),
                                         ("--num_train_epochs", "-1"), ("--num_train_epochs", "0"),
                                         ("--max_length", "0"), ("--learning_rate", "-1")])
def test_trainer_numbers_are_checked_before_anything_is_written(tmp_path, capsys, flag, value):
    out = tmp_path / "t"
    assert finetune.main(["--base", "tunelab:tiny-llama", "--data", "data/alpaca_sample.json", flag, value,
                          "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag[2:] in err and not out.exists()


def test_range_errors_name_the_config_line(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("base: tunelab:tiny-llama\nlora_r: 0\n")
    assert finetune.main(["--config", str(config), "--data", "data/alpaca_sample.json",
                          "--output_dir", str(tmp_path / "t")]) == 2
    assert f"{config}:2: lora_r must be in [1, inf), got 0" in capsys.readouterr().err


def test_an_output_folder_inside_a_file_is_one_line_everywhere(tmp_path, capsys):
    file = tmp_path / "afile"
    file.write_text("mine")
    assert infer.main(["--model", "tunelab:tiny-llama", "--output_dir", str(file)]) == 2
    assert generate.main(["--tasks", "moderation", "--output_dir", str(file / "sub")]) == 2
    assert capsys.readouterr().err.count("is a file, not a folder") == 2 and file.read_text() == "mine"


def test_evaluate_leaves_no_folder_when_its_input_is_missing(tmp_path, capsys):
    out = tmp_path / "deep/scores"
    assert evaluate.main(["--task", "text", "--predictions", str(tmp_path / "none.jsonl"), "--output_dir", str(out)]) == 2
    assert "file not found" in capsys.readouterr().err and not (tmp_path / "deep").exists()


def test_an_interrupted_finetune_run_is_pointed_to_resume(tmp_path, capsys):
    out = tmp_path / "t"
    out.mkdir()
    (out / "config.yaml").write_text("seed: 0\n")  # what a run killed after its start leaves
    assert finetune.main(["--base", "tunelab:tiny-llama", "--data", "data/alpaca_sample.json",
                          "--output_dir", str(out)]) == 2
    assert "did not finish: add --resume" in capsys.readouterr().err


def test_a_failed_finetune_overwrite_leaves_no_file_of_the_earlier_run(configless, tmp_path, monkeypatch):
    import shutil

    from transformers import Trainer

    out = tmp_path / "student"
    shutil.copytree(configless / "student", out)

    def crash(self, *args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(Trainer, "train", crash)
    with pytest.raises(RuntimeError):
        finetune.main(["--base", "tunelab:tiny-llama", "--data", "data/alpaca_sample.json", "--max_steps", "1",
                       "--max_examples", "8", "--output_dir", str(out), "--overwrite"])
    left = sorted(p.name for p in out.iterdir())
    assert left == ["config.yaml"], left  # the replacement's settings only: no old adapter, card or provenance


def test_sigterm_stops_a_run_cleanly_with_its_lock_released(tmp_path):
    import signal
    import time

    from tunelab.teachers.mock_server import MockServer

    with MockServer(latency_s=0.5) as server:
        proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "generate/run.py"), "--tasks", "self_instruct",
                                 "--teacher_backend", "openai", "--teacher", "m", "--teacher_base_url", server.base_url,
                                 "--max_requests", "40", "--requests_per_round", "40", "--teacher_max_in_flight", "1",
                                 "--output_dir", str(tmp_path / "g")],
                                cwd=PROJECT_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stderr=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, text=True)
        cache = tmp_path / "g/teacher_cache.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (cache.exists() and cache.read_text().count("\n") >= 1):
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted; rerun the same command to continue" in err
    assert "Traceback" not in err and not (tmp_path / ".g.lock").exists()


def test_compared_runs_are_named_by_folder_or_by_sweep_setting():
    from tunelab.scoring.text import run_names as _run_names

    names = _run_names(["runs/demo/latest/inference/predictions.jsonl",
                        "runs/demo/latest/sweep/predictions/t0.7_k50_b1.jsonl"], [])
    assert names == ["inference", "t0_7_k50_b1"]

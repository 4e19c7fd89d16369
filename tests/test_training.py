"""The student's loss mask, and what LoRA training may and may not change."""

import pytest
import torch

from tunelab.models import load_causal_lm, load_tokenizer
from tunelab.prompts import student_prompt
from tunelab.training.data import load_sft_examples
from tunelab.training.lora import lora_config
from tunelab.training.sft import TrainConfig, build_sft_trainer


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

"""Packing (TRL's best-fit decreasing) with completion-only loss: the label mask, and examples kept apart.

A packed step is one padding-free row: the examples of the batch's packed rows laid end to end, with
`position_ids` restarting at 0 for each example and no attention mask. These tests check what that
row trains on and what each token can see, on the tiny Llama.
"""

import pytest
import torch

from tunelab.errors import ConfigError
from tunelab.models import load_causal_lm, load_tokenizer
from tunelab.paths import PROJECT_ROOT
from tunelab.prompts import student_prompt
from tunelab.stages import finetune
from tunelab.training.data import example_lengths, load_sft_examples
from tunelab.training.lora import lora_config
from tunelab.training.arguments import TrainConfig
from tunelab.training.sft import build_sft_trainer
from fakes import TINY_STUDENT_CONFIG

MAX_LENGTH = 384


@pytest.fixture(scope="module")
def examples(tiny_llama):
    """Alpaca examples that fit in a packed row whole, so each one can be found and checked entire."""
    rows = load_sft_examples([PROJECT_ROOT / "data/alpaca_sample.json"], student_prompt("alpaca_student")).examples
    lengths = example_lengths(rows, load_tokenizer(tiny_llama))
    return [ex for ex, n in zip(rows, lengths) if n <= MAX_LENGTH][:12]


def make_trainer(tiny_llama, examples, tmp_path, attn="sdpa", **overrides):
    tokenizer = load_tokenizer(tiny_llama)
    model = load_causal_lm(tiny_llama, dtype="float32")
    model.set_attn_implementation(attn)
    settings = dict(output_dir=str(tmp_path / "out"), packing=True, max_length=MAX_LENGTH,
                    per_device_train_batch_size=2, learning_rate=1e-2, save_strategy="no", logging_steps=1,
                    activation_checkpointing=False, report_to="none", seed=0)
    args = TrainConfig(**{**settings, **overrides})
    lora = lora_config(4, 8, 0.0, ["all-linear"], "CAUSAL_LM")
    trainer = build_sft_trainer(model, tokenizer, examples, None, args, lora)
    return trainer, tokenizer


def segments(batch) -> list[tuple[int, int]]:
    """(start, end) of each example in a padding-free row, from where position_ids restart."""
    positions = batch["position_ids"][0]
    starts = (positions == 0).nonzero().flatten().tolist() + [len(positions)]
    return list(zip(starts[:-1], starts[1:]))


def test_packed_labels_cover_exactly_each_response_and_eos(tiny_llama, examples, tmp_path):
    trainer, tokenizer = make_trainer(tiny_llama, examples, tmp_path)
    assert len(trainer.train_dataset) < len(examples)  # rows really hold several examples
    by_text = {ex["prompt"] + ex["completion"] + tokenizer.eos_token: ex for ex in examples}
    seen, shared_rows = [], 0
    for batch in trainer.get_train_dataloader():
        assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1  # padding-free
        assert batch["cu_seq_lens_q"].tolist() == [s for s, _ in segments(batch)] + [batch["input_ids"].shape[1]]
        shared_rows += len(segments(batch)) > 1
        for start, end in segments(batch):
            ids = batch["input_ids"][0, start:end].tolist()
            labels = batch["labels"][0, start:end].tolist()
            assert batch["position_ids"][0, start:end].tolist() == list(range(end - start))
            example = by_text[tokenizer.decode(ids)]  # the whole example, untruncated, in one piece
            seen.append(example["id"])
            prompt_len = len(tokenizer(example["prompt"])["input_ids"])
            assert ids == tokenizer(example["prompt"] + example["completion"])["input_ids"] + [tokenizer.eos_token_id]
            # Not one prompt token in the loss; every response token and the final EOS in it.
            assert set(labels[:prompt_len]) == {-100}
            assert labels[prompt_len:] == ids[prompt_len:]
            assert tokenizer.decode(labels[prompt_len:]) == example["completion"] + tokenizer.eos_token
    assert sorted(seen) == sorted(ex["id"] for ex in examples)  # each example exactly once
    assert shared_rows > 0


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_examples_do_not_attend_to_each_other(tiny_llama, examples, tmp_path, attn):
    """Each example's logits and loss in a packed row equal those of the example alone."""
    trainer, _ = make_trainer(tiny_llama, examples, tmp_path, attn=attn)
    model = trainer.model.eval()
    batch = next(b for b in trainer.get_train_dataloader() if len(segments(b)) > 2)
    with torch.no_grad():
        packed = model(**batch, use_cache=False)  # as SFTTrainer.compute_loss calls it
        loss_sum, tokens = 0.0, 0
        for start, end in segments(batch):
            alone = model(input_ids=batch["input_ids"][:, start:end], labels=batch["labels"][:, start:end],
                          use_cache=False)
            torch.testing.assert_close(packed.logits[0, start:end], alone.logits[0], atol=1e-4, rtol=1e-4)
            n = int((batch["labels"][0, start + 1:end] != -100).sum())
            loss_sum, tokens = loss_sum + alone.loss.item() * n, tokens + n
        assert packed.loss.item() == pytest.approx(loss_sum / tokens, rel=1e-5)
        # The check has teeth: the same row as one plain causal sequence changes every later example.
        plain = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
        start, end = segments(batch)[-1]
        assert (plain[start:end] - packed.logits[0, start:end]).abs().max() > 1e-2


def test_attention_that_ignores_packing_is_refused(tiny_llama, examples, tmp_path):
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    # A registered kernel with no mask function of its own gets no mask at all: packed examples would mix.
    AttentionInterface.register("tunelab_test_unmasked", sdpa_attention_forward)
    with pytest.raises(ConfigError, match="keeps packed examples apart.*'tunelab_test_unmasked'"):
        make_trainer(tiny_llama, examples, tmp_path, attn="tunelab_test_unmasked")
    with pytest.raises(ConfigError, match="wrapped"):
        TrainConfig(output_dir=str(tmp_path / "w"), packing=True, packing_strategy="wrapped", report_to="none")


def test_finetune_with_packing_trains(tmp_path, tiny_llama):
    summary = finetune.finetune(["--config", TINY_STUDENT_CONFIG, "--output_dir", str(tmp_path / "p"),
                                 "--data", "data/alpaca_sample.json", "--max_examples", "16", "--max_length", "128",
                                 "--packing", "true", "--max_steps", "2", "--logging_steps", "1",
                                 "--report_to", "none"])
    assert summary["steps"] == 2 and summary["first_loss"] > 0
    assert (tmp_path / "p/adapter_model.safetensors").exists()
    assert "packing: true" in (tmp_path / "p/config.yaml").read_text()

"""Batched decoding for people to read: left padding, length-sorted batches, every setting recorded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm

from .teachers.base import SamplingParams


@dataclass
class Generation:
    text: str
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int


def generation_kwargs(params: SamplingParams, tokenizer) -> dict:
    """`generate()` arguments for `params`: temperature 0 means greedy (or beam search)."""
    sample = params.temperature > 0 and params.num_beams == 1
    kwargs = dict(
        max_new_tokens=params.max_new_tokens, do_sample=sample, num_beams=params.num_beams,
        repetition_penalty=params.repetition_penalty, pad_token_id=tokenizer.pad_token_id,
    )
    if sample:
        kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or None)
    else:  # silence the "sampling flags set but do_sample=False" warnings of models' generation configs
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if params.stop:
        kwargs.update(stop_strings=list(params.stop), tokenizer=tokenizer)
    return kwargs


def generate_texts(model, tokenizer, prompts: Sequence[str], params: SamplingParams, *, batch_size: int = 8,
                   add_special_tokens: bool = True, progress: bool = True, desc: str = "generate") -> list[Generation]:
    """Continue each prompt. Results come back in input order.

    Prompts are sorted by length so each batch pads little; padding is on the left so every
    continuation starts right after its own prompt. The seed is set per batch.
    """
    import torch

    tokenizer.padding_side = "left"
    encoded = [tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
    eos_ids = model.generation_config.eos_token_id
    eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids if eos_ids is not None else tokenizer.eos_token_id])
    kwargs = generation_kwargs(params, tokenizer)
    device = next(model.parameters()).device
    results: list[Generation | None] = [None] * len(prompts)
    with tqdm(total=len(prompts), desc=desc, unit="ex", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            padded = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt").to(device)
            torch.manual_seed(params.seed)
            with torch.no_grad():
                out = model.generate(**padded, **kwargs)
            new_tokens = out[:, padded["input_ids"].shape[1]:]
            for row, i in enumerate(batch):
                ids = new_tokens[row].tolist()
                ended = next((k for k, t in enumerate(ids) if t in eos_ids), None)
                ids = ids[:ended] if ended is not None else [t for t in ids if t != tokenizer.pad_token_id]
                stopped = ended is not None or (params.stop and any(s in tokenizer.decode(ids) for s in params.stop))
                results[i] = Generation(
                    text=tokenizer.decode(ids, skip_special_tokens=True),
                    finish_reason="stop" if stopped or len(ids) < params.max_new_tokens else "length",
                    prompt_tokens=len(encoded[i]), completion_tokens=len(ids),
                )
            bar.update(len(batch))
    return results  # type: ignore[return-value]

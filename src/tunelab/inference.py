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


class PerRowSampler:
    """Sampling with one random generator per row, as a logits processor under greedy decoding.

    `generate()` samples a whole batch from the global RNG, so a row's sample depends on its
    batch-mates. Here each row draws from its own seeded generator, after the same temperature,
    top-k and top-p warpers `generate()` would apply, and the drawn token is the only one left
    for greedy decoding to pick. A request's answer then depends on its own seed only.
    """

    def __init__(self, seeds: Sequence[int], params: SamplingParams, device):
        import torch
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        self.warpers = [TemperatureLogitsWarper(params.temperature)]
        if params.top_k:
            self.warpers.append(TopKLogitsWarper(params.top_k))
        if params.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(params.top_p))

    def __call__(self, input_ids, scores):
        import torch

        for warper in self.warpers:
            scores = warper(input_ids, scores)
        probs = torch.softmax(scores.float(), dim=-1)
        chosen = torch.cat([torch.multinomial(probs[row], 1, generator=g) for row, g in enumerate(self.generators)])
        picked = torch.full_like(scores, float("-inf"))
        picked[torch.arange(scores.shape[0], device=scores.device), chosen] = 0.0
        return picked


def generate_texts(model, tokenizer, prompts: Sequence[str], params: SamplingParams, *, batch_size: int = 8,
                   add_special_tokens: bool = True, progress: bool = True, desc: str = "generate",
                   seeds: Sequence[int] | None = None) -> list[Generation]:
    """Continue each prompt. Results come back in input order.

    Prompts are sorted by length so each batch pads little; padding is on the left so every
    continuation starts right after its own prompt. With `seeds` (one per prompt), sampling is
    seeded per prompt and does not depend on the batching; without, the seed is set per batch.
    """
    import torch
    from transformers import LogitsProcessorList

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
            batch_kwargs = kwargs
            if seeds is not None and kwargs["do_sample"]:
                sampler = PerRowSampler([seeds[i] for i in batch], params, device)
                batch_kwargs = {**kwargs, "do_sample": False, "temperature": None, "top_p": None, "top_k": None,
                                "logits_processor": LogitsProcessorList([sampler])}
            with torch.no_grad():
                out = model.generate(**padded, **batch_kwargs)
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

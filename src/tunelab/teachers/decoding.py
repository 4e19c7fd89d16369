"""Decoding with a model loaded in this process (the transformers and LLaVA teachers, inference.py's in-process
backend, evaluate's k-shot baselines): left padding, length-sorted batches, sampling seeded per request,
and one tail that cuts each answer at EOS and says why it ended."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm

from ..console import show_progress
from .base import AnswerGroups, SamplingParams, TeacherRequest, TeacherResponse, request_seed


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


def seeded_generation_kwargs(params: SamplingParams, tokenizer, seeds: Sequence[int] | None, device) -> dict:
    """`generate()` arguments for one batch. The global seed is set per batch; with `seeds` (one per row) and
    sampling on, each row samples from its own generator (`PerRowSampler`), so an answer does not depend on
    its batch-mates."""
    import torch
    from transformers import LogitsProcessorList

    kwargs = generation_kwargs(params, tokenizer)
    torch.manual_seed(params.seed)
    if seeds is not None and kwargs["do_sample"]:
        sampler = PerRowSampler(seeds, params, device)
        kwargs = {**kwargs, "do_sample": False, "temperature": None, "top_p": None, "top_k": None,
                  "logits_processor": LogitsProcessorList([sampler])}
    return kwargs


def eos_token_ids(model, tokenizer) -> set[int]:
    """The ids that end an answer: the generation config's EOS (one or several), else the tokenizer's."""
    eos_ids = model.generation_config.eos_token_id
    return set(eos_ids if isinstance(eos_ids, list) else [eos_ids if eos_ids is not None else tokenizer.eos_token_id])


def decode_answer(ids: list[int], tokenizer, eos_ids: set[int], params: SamplingParams,
                  prompt_tokens: int) -> Generation:
    """The text of one row's new tokens, cut at its first EOS (padding after it dropped), and why it ended:
    "stop" (EOS or a stop string, or shorter than the limit) or "length"."""
    ended = next((k for k, t in enumerate(ids) if t in eos_ids), None)
    ids = ids[:ended] if ended is not None else [t for t in ids if t != tokenizer.pad_token_id]
    stopped = ended is not None or (params.stop and any(s in tokenizer.decode(ids) for s in params.stop))
    return Generation(text=tokenizer.decode(ids, skip_special_tokens=True),
                      finish_reason="stop" if stopped or len(ids) < params.max_new_tokens else "length",
                      prompt_tokens=prompt_tokens, completion_tokens=len(ids))


def iter_generations(model, tokenizer, prompts: Sequence[str], params: SamplingParams, *, batch_size: int = 8,
                     add_special_tokens: bool = True, seeds: Sequence[int] | None = None
                     ) -> Iterator[list[tuple[int, Generation]]]:
    """Continue each prompt, yielding each batch's (index into `prompts`, generation) pairs as it finishes.

    Prompts are sorted by token length (longest first) so each batch pads little, and an
    out-of-memory error, if any, comes at once; padding is on the left so every continuation
    starts right after its own prompt, and the attention mask keeps pads out of every row's
    attention and position ids. With `seeds` (one per prompt), sampling is seeded per prompt and
    does not depend on the batching; without, the seed is set per batch.
    """
    import torch

    tokenizer.padding_side = "left"
    encoded = [tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
    eos_ids = eos_token_ids(model, tokenizer)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        padded = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt").to(device)
        kwargs = seeded_generation_kwargs(params, tokenizer, [seeds[i] for i in batch] if seeds else None, device)
        with torch.no_grad():
            out = model.generate(**padded, **kwargs)
        new_tokens = out[:, padded["input_ids"].shape[1]:]
        yield [(i, decode_answer(new_tokens[row].tolist(), tokenizer, eos_ids, params, len(encoded[i])))
               for row, i in enumerate(batch)]


def generate_texts(model, tokenizer, prompts: Sequence[str], params: SamplingParams, *, batch_size: int = 8,
                   add_special_tokens: bool = True, progress: bool = True, desc: str = "generate",
                   seeds: Sequence[int] | None = None) -> list[Generation]:
    """Continue each prompt (see `iter_generations`). Results come back in input order."""
    results: list[Generation | None] = [None] * len(prompts)
    with tqdm(total=len(prompts), desc=desc, unit="ex", disable=not (progress and show_progress())) as bar:
        for group in iter_generations(model, tokenizer, prompts, params, batch_size=batch_size,
                                      add_special_tokens=add_special_tokens, seeds=seeds):
            for i, generation in group:
                results[i] = generation
            bar.update(len(group))
    return results  # type: ignore[return-value]


class LoadedModelTeacher:
    """An already loaded model (a base, or a base with its adapter) behind the `Teacher` protocol.

    So inference drives an in-process model and a server (`OpenAICompatibleTeacher`, `VLLMTeacher`)
    through one loop that stores each batch as it finishes. Requests carry rendered prompts: the
    caller owns the prompt format. Sampling is seeded per request (`request_seed`), so an answer
    depends on its prompt and the run's seed only, never on its batch-mates or on a resumed run's
    different batches.
    """

    def __init__(self, model, tokenizer, *, name: str, batch_size: int = 8, add_special_tokens: bool = True,
                 dtype: str = "float32"):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.batch_size = batch_size
        self.add_special_tokens = add_special_tokens
        self.dtype = dtype  # "auto": bf16 autocast on CPUs that compute it natively (models.cpu_autocast)
        self.in_flight = 0

    def answer(self, requests: Sequence[TeacherRequest], params: SamplingParams) -> AnswerGroups:
        if any(r.prompt is None for r in requests):
            raise ValueError("LoadedModelTeacher answers rendered prompts; render chat messages with the chat template first")
        seeds = [request_seed(r, params) for r in requests]
        self.in_flight = min(self.batch_size, len(requests))
        from ..models import cpu_autocast

        groups = iter_generations(self.model, self.tokenizer, [r.prompt for r in requests], params,
                                  batch_size=self.batch_size, add_special_tokens=self.add_special_tokens, seeds=seeds)
        try:
            while True:
                with cpu_autocast(self.model, self.dtype):  # per batch: the caller's code between yields runs without it
                    group = next(groups, None)
                if group is None:
                    break
                yield [(i, TeacherResponse(g.text, g.finish_reason, g.prompt_tokens, g.completion_tokens))
                       for i, g in group]
        finally:
            self.in_flight = 0

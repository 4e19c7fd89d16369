"""Batched decoding for people to read: left padding, length-sorted batches, every setting recorded."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm

from .teachers.base import AnswerGroups, SamplingParams, TeacherRequest, TeacherResponse, request_seed


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
    from transformers import LogitsProcessorList

    tokenizer.padding_side = "left"
    encoded = [tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
    eos_ids = model.generation_config.eos_token_id
    eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids if eos_ids is not None else tokenizer.eos_token_id])
    kwargs = generation_kwargs(params, tokenizer)
    device = next(model.parameters()).device
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
        group = []
        for row, i in enumerate(batch):
            ids = new_tokens[row].tolist()
            ended = next((k for k, t in enumerate(ids) if t in eos_ids), None)
            ids = ids[:ended] if ended is not None else [t for t in ids if t != tokenizer.pad_token_id]
            stopped = ended is not None or (params.stop and any(s in tokenizer.decode(ids) for s in params.stop))
            group.append((i, Generation(
                text=tokenizer.decode(ids, skip_special_tokens=True),
                finish_reason="stop" if stopped or len(ids) < params.max_new_tokens else "length",
                prompt_tokens=len(encoded[i]), completion_tokens=len(ids),
            )))
        yield group


def generate_texts(model, tokenizer, prompts: Sequence[str], params: SamplingParams, *, batch_size: int = 8,
                   add_special_tokens: bool = True, progress: bool = True, desc: str = "generate",
                   seeds: Sequence[int] | None = None) -> list[Generation]:
    """Continue each prompt (see `iter_generations`). Results come back in input order."""
    results: list[Generation | None] = [None] * len(prompts)
    with tqdm(total=len(prompts), desc=desc, unit="ex", disable=not progress) as bar:
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
        from .models import cpu_autocast

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


# Where a label can begin in a written label list: the answer's start, and after each separator.
_LABEL_SLOT = re.compile(r"(?:[,;/|\n]|\band\b|\bor\b)[ \t]*")


def label_slot_prefixes(answer: str, max_slots: int) -> list[str]:
    """The answer text before each place a label could be written: "" and the text up to each separator."""
    prefixes = [""] + [answer[:m.end()] for m in _LABEL_SLOT.finditer(answer)]
    return prefixes[:max_slots]


def continuation_ids(tokenizer, prefix: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) of an answer `prefix` followed by `continuation`.

    The two are tokenized together and split where they part from the prefix alone, so a space or
    word piece that merges across the boundary (", insult" -> ",", " insult") belongs to the
    continuation, as the model would write it.
    """
    joined = tokenizer(prefix + continuation, add_special_tokens=False)["input_ids"]
    alone = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    shared = next((k for k, (a, b) in enumerate(zip(joined, alone)) if a != b), min(len(joined), len(alone)))
    return joined[:shared], joined[shared:]


def continuation_logprobs(model, tokenizer, pairs: Sequence[tuple[list[int], list[int]]], *, batch_size: int = 16
                          ) -> list[float]:
    """log P(continuation | context) for each (context ids, continuation ids) pair, teacher-forced and batched."""
    import torch

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[float] = []
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start:start + batch_size]
        width = max(len(c) + len(x) for c, x in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (context, cont) in enumerate(batch):  # right padding: positions stay 0..n-1 for every row
            seq = context + cont
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        for row, (context, cont) in enumerate(batch):
            # The token at position p is predicted by the logits at p - 1; only those rows go to float32,
            # never the whole batch x length x vocabulary.
            positions = torch.arange(len(context) - 1, len(context) + len(cont) - 1, device=logits.device)
            logprobs = torch.log_softmax(logits[row, positions].float(), dim=-1)
            targets = torch.tensor(cont, device=logits.device)
            out.append(float(logprobs[torch.arange(len(cont), device=logits.device), targets].sum()))
    return out


def shared_prefix_logprobs(model, tokenizer, groups: Sequence[Sequence[tuple[list[int], list[int]]]]) -> list[list[float]]:
    """log P(continuation | context) for each (context ids, continuation ids) pair of each group, where a
    group's pairs share most of their context (one prompt, each label at each place in turn).

    The shared part of a group's contexts is run once and its KV cache reused by every pair, so a long
    prompt is computed once per group instead of once per label. The cache holds the shared ids but the
    last; each pair's row starts with that last id (its logits predict the first token after it), then
    the rest of its own context and its continuation, right-padded in one batch.
    """
    import torch

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[list[float]] = []
    for pairs in groups:
        sequences = [context + cont for context, cont in pairs]
        shared = len(sequences[0])
        for seq, (context, _) in zip(sequences, pairs):  # never into a continuation: its logits are needed
            shared = min(shared, len(context), next((k for k, (a, b) in enumerate(zip(seq, sequences[0])) if a != b),
                                                    len(seq)))
        cached = max(shared - 1, 0)
        rows = [seq[cached:] for seq in sequences]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), cached + width), dtype=torch.long)
        mask[:, :cached] = 1
        for r, row in enumerate(rows):
            ids[r, :len(row)] = torch.tensor(row)
            mask[r, cached:cached + len(row)] = 1
        with torch.no_grad():
            past = None
            if cached:
                # only the cache is wanted here: no logits over the prompt (a vocabulary-wide row per token)
                past = model(input_ids=torch.tensor([sequences[0][:cached]], device=device), use_cache=True,
                             logits_to_keep=1).past_key_values
                past.batch_repeat_interleave(len(rows))
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), past_key_values=past,
                           use_cache=past is not None).logits
        scores = []
        for r, (context, cont) in enumerate(pairs):
            start = len(context) - cached  # the row's logits at p predict its token p + 1
            positions = torch.arange(start - 1, start - 1 + len(cont), device=logits.device)
            logprobs = torch.log_softmax(logits[r, positions].float(), dim=-1)
            targets = torch.tensor(cont, device=logits.device)
            scores.append(float(logprobs[torch.arange(len(cont), device=logits.device), targets].sum()))
        out.append(scores)
    return out


def label_probabilities(model, tokenizer, prompts: Sequence[str], answers: Sequence[str], labels: Sequence[str],
                        *, add_special_tokens: bool = True, batch_size: int = 16, reuse_prompt: bool = True
                        ) -> list[dict[str, float]]:
    """Each label's probability of being written, read from the model's own next-token distributions.

    A label's score is the probability the model gives to writing its name (every token of it) at
    a place in its answer where a label can begin: the start, and after each separator of the list
    it wrote ("toxic, " -> the next label). The highest over those places is the label's score.
    These are ranking scores for ROC and PR curves, not calibrated marginals: a model that writes
    prose or refuses gives every label a low probability, which is what it said.

    `reuse_prompt`: the prompt is computed once per answer and its KV cache reused for every place and
    label (shared_prefix_logprobs); else every (place, label) is its own sequence, batched by
    `batch_size` (continuation_logprobs). Both give the same probabilities.
    """
    slots = len(labels) + 1  # "none" or up to every label
    groups, owners = [], []  # a group per answer: every (place, label) pair shares its prompt
    for i, (prompt, answer) in enumerate(zip(prompts, answers)):
        prompt_ids = tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]
        group = []
        for prefix in label_slot_prefixes(answer, slots):
            for label in labels:
                context, cont = continuation_ids(tokenizer, prefix, label)
                if not prompt_ids + context or not cont:  # nothing to condition on, or nothing to score
                    continue
                group.append((prompt_ids + context, cont))
                owners.append((i, label))
        if group:
            groups.append(group)
    if reuse_prompt:
        logprobs = [lp for scores in shared_prefix_logprobs(model, tokenizer, groups) for lp in scores]
    else:
        logprobs = continuation_logprobs(model, tokenizer, [pair for group in groups for pair in group],
                                         batch_size=batch_size)
    best = [dict.fromkeys(labels, 0.0) for _ in prompts]
    for (i, label), logprob in zip(owners, logprobs):
        best[i][label] = max(best[i][label], math.exp(logprob))
    return best

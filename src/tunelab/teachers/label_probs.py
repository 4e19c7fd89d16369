"""Label probabilities from a model loaded in this process: how likely it was to write each label's name where
a label can begin in its answer (the answer's start, or after a separator of the list it wrote). The prompt's
KV cache is computed once per answer and reused for every (place, label) continuation."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

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

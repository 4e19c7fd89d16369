"""Expected scores (G-Eval's way): instead of the one score a judge writes, the probability of each score
1..scale as its next words after its rationale and "Score:", and their probability-weighted mean.

A small judge writes the same score for nearly every answer; the probabilities behind it still differ
from answer to answer, so the expectation ranks answers where the written score ties them. It needs
the judge's weights in this process (the transformers backend) and the few-shot rubric, whose verdict
is a Reason line followed by a Score line.
"""

from __future__ import annotations

import math

from ..errors import ConfigError


def score_context(prompt: str, answer_text: str) -> str | None:
    """The rubric, the judge's own rationale (its first line), then "Score:"; None without a rationale."""
    rationale = answer_text.split("\n", 1)[0]
    if not rationale.strip():
        return None
    return f"{prompt}{rationale}\nScore:"


def score_probabilities(teacher, contexts: list[str], scale: int) -> list[dict[int, float]]:
    """P(score k | context) for k in 1..scale, normalized over the scale, for each context."""
    from ..models import cpu_autocast
    from ..teachers.label_probs import continuation_ids, shared_prefix_logprobs

    model, tokenizer = getattr(teacher, "model", None), getattr(teacher, "tokenizer", None)
    if model is None or tokenizer is None:
        raise ConfigError("judge_score expected reads the judge's token probabilities: it needs the judge in this "
                          "process (backend transformers)")
    # the special tokens the teacher's tokenizer puts before a raw prompt (BOS, where it adds one)
    specials = tokenizer("", add_special_tokens=True)["input_ids"]
    groups = []
    for context in contexts:
        pairs = []
        for k in range(1, scale + 1):
            ids, cont = continuation_ids(tokenizer, context, f" {k}")
            pairs.append((specials + ids, cont))
        groups.append(pairs)
    with cpu_autocast(model, getattr(teacher, "dtype", "float32")):
        logprobs = shared_prefix_logprobs(model, tokenizer, groups)
    out = []
    for row, pairs in zip(logprobs, groups):
        top = max(row)
        weights = exclusive([math.exp(v - top) for v in row], [cont for _, cont in pairs])
        total = sum(weights) or 1.0
        out.append({k: w / total for k, w in zip(range(1, scale + 1), weights)})
    return out


def exclusive(probabilities: list[float], continuations: list[list[int]]) -> list[float]:
    """Each score's own probability: where a score's tokens begin a longer score's (" 1" then "0" is " 10" in
    most tokenizers), the longer one's probability is taken off, or 1 would also count every 10."""
    out = []
    for i, (p, mine) in enumerate(zip(probabilities, continuations)):
        longer = sum(q for j, (q, theirs) in enumerate(zip(probabilities, continuations))
                     if j != i and len(theirs) > len(mine) and theirs[:len(mine)] == mine)
        out.append(max(p - longer, 0.0))
    return out


def expectation(probabilities: dict[int, float]) -> float:
    return round(sum(k * p for k, p in probabilities.items()), 4)

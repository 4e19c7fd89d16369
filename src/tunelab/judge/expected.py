"""Expected scores (G-Eval's way): instead of the one score a judge writes, the probability of each score
1..scale as its next words after its rationale and "Score:", and their probability-weighted mean.

A small judge writes the same score for nearly every answer; the probabilities behind it still differ
from answer to answer, so the expectation ranks answers where the written score ties them. It needs
the judge's weights in this process (the transformers backend) and the few-shot rubric, whose verdict
is a Reason line followed by a Score line.
"""

from __future__ import annotations

import hashlib
import json
import math

from ..errors import ConfigError

CHUNK = 16  # contexts scored between two writes to the cache (and two steps of the progress bar)
EXPECTED_CACHE = "expected_scores.jsonl"  # beside the judge's request cache


def score_context(prompt: str, answer_text: str) -> str | None:
    """The rubric, the judge's own rationale (its first line), then "Score:"; None without a rationale."""
    rationale = answer_text.split("\n", 1)[0]
    if not rationale.strip():
        return None
    return f"{prompt}{rationale}\nScore:"


def expected_probabilities(teacher, contexts: list[str], scale: int, beside=None) -> list[dict[int, float]]:
    """score_probabilities of every context. With `beside` (the judge's RequestCache) they are kept in
    EXPECTED_CACHE next to it, a chunk at a time: a rerun reads them back and a killed run loses at most
    one chunk. (Their own file: the teacher's cache counts what was paid for, sitting by sitting.)"""
    from contextlib import nullcontext

    from tqdm.auto import tqdm

    from ..console import show_progress
    from ..teachers.base import TeacherRequest, TeacherResponse
    from ..teachers.cache import RequestCache

    keys = [hashlib.sha256(json.dumps({"expected_score": teacher.name, "context": c, "scale": scale},
                                      ensure_ascii=False).encode("utf-8")).hexdigest() for c in contexts]
    found: dict[int, dict[int, float]] = {}
    with (RequestCache(beside.path.with_name(EXPECTED_CACHE)) if beside is not None else nullcontext()) as cache:
        for i, key in enumerate(keys):
            if cache is not None and key in cache:
                found[i] = {int(k): p for k, p in json.loads(cache.get(key).text).items()}
        todo = [i for i in range(len(contexts)) if i not in found]
        with tqdm(total=len(todo), desc="expected scores", unit="verdict",
                  disable=not todo or not show_progress()) as bar:
            for start in range(0, len(todo), CHUNK):
                chunk = todo[start:start + CHUNK]
                found.update(zip(chunk, score_probabilities(teacher, [contexts[i] for i in chunk], scale)))
                if cache is not None:
                    cache.put_many([(keys[i], TeacherRequest(prompt=contexts[i]),
                                     TeacherResponse(json.dumps(found[i]), "stop")) for i in chunk], teacher.name)
                bar.update(len(chunk))
    return [found[i] for i in range(len(contexts))]


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

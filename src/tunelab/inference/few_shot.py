"""Solved examples in the prompt: a k-shot run answers every example after the same k records drawn from
--shots_data with --shots_seed (a record asking what an answered example asks is never drawn).
Runs of one model with k shots and several seeds are how a k-shot baseline's spread over shot choices
is measured (evaluate --baselines)."""

from __future__ import annotations

import random

from ..errors import ConfigError
from ..paths import resolve_input
from ..runs import RunRecord
from .settings import InferenceConfig


def asked(record: dict) -> tuple[str, str]:
    """What a record asks: (instruction, input); a shot that asks what an answered example asks is never drawn."""
    return record.get("instruction", ""), record.get("input", "")


def draw_shots(pool: list[dict], k: int, seed: int, exclude: set[tuple[str, str]] = frozenset()) -> list[dict]:
    """k records drawn from `pool` with `seed`, none asking what one in `exclude` asks (`asked`)."""
    candidates = [r for r in pool if asked(r) not in exclude]
    if k > len(candidates):
        raise ConfigError(f"{k} shots asked, but the shots data holds only {len(candidates)} examples outside "
                          "the eval set")
    return random.Random(seed).sample(candidates, k)


def few_shot_prompt(prompt, tokenizer, shots: list[dict], instruction: str, input_text: str) -> str:
    """The prompt of one example after `shots` ({instruction, input, output}) as solved examples.

    With a chat template the shots are earlier user/assistant turns; with a template file they are
    rendered prompts followed by their answers, one after another.
    """
    if prompt.is_chat:
        return tokenizer.apply_chat_template(few_shot_messages(prompt, shots, instruction, input_text),
                                             tokenize=False, add_generation_prompt=True)
    solved = "".join(prompt.render(tokenizer, s["instruction"], s.get("input", "")) + s["output"] + "\n\n"
                     for s in shots)
    return solved + prompt.render(tokenizer, instruction, input_text)


def few_shot_messages(prompt, shots: list[dict], instruction: str, input_text: str) -> list[dict]:
    """The chat messages of one example after `shots`: each shot a user turn and its answer."""
    messages = []
    for s in shots:
        messages += [*prompt.messages(s["instruction"], s.get("input", "")),
                     {"role": "assistant", "content": s["output"]}]
    return messages + prompt.messages(instruction, input_text)


def draw_for_run(cfg: InferenceConfig, record: RunRecord, examples: list[dict]) -> list[dict]:
    """The run's shots (none when cfg.shots is 0), recorded with the file they came from."""
    from ..records import read_records

    if not cfg.shots:
        return []
    path = resolve_input(cfg.shots_data)
    record.add_input("shots_data", path)
    pool = [dict(r.data) for r in read_records(path, "alpaca")]
    shots = draw_shots(pool, cfg.shots, cfg.shots_seed, {asked(e) for e in examples})
    record.notes["shots"] = {"shots": cfg.shots, "seed": cfg.shots_seed, "ids": [s.get("id") for s in shots]}
    return shots

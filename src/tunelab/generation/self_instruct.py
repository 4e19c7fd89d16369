"""Self-instruct, Alpaca style: seed tasks -> teacher prompts -> numbered tasks -> filters -> novel tasks.

Columns in: seed tasks {id, instruction, instances: [{input, output}]} (Alpaca's seed_tasks.jsonl).
Columns out: kept tasks {instruction, input, output, provenance}; rejects {raw, reason, ...}.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RecordError
from ..records import iter_json_objects

# Alpaca's blacklist: tasks a text model cannot do, or that ask for output it cannot give.
BLACKLIST = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps", "draw", "plot",
    "go to", "video", "audio", "music", "flowchart", "diagram",
)
MIN_WORDS, MAX_WORDS = 4, 150  # Alpaca keeps instructions of more than 3 and at most 150 words


@dataclass
class SeedTask:
    id: str
    instruction: str
    input: str
    output: str


@dataclass
class ParsedTask:
    instruction: str
    input: str
    output: str


@dataclass
class Rejected:
    reason: str
    raw: str
    detail: dict = field(default_factory=dict)


def load_seed_tasks(path: str | Path) -> list[SeedTask]:
    """Read Alpaca's seed_tasks.jsonl format; a bad line raises an error naming it."""
    seeds = []
    for line, obj in iter_json_objects(path):
        try:
            instance = obj["instances"][0]
            seed = SeedTask(str(obj.get("id", f"line-{line}")), obj["instruction"], instance.get("input", ""),
                            instance["output"])
        except (KeyError, IndexError, TypeError, AttributeError):
            raise RecordError(path, line, "a seed task needs 'instruction' and 'instances': [{'input', 'output'}]") from None
        if not isinstance(seed.instruction, str) or not seed.instruction.strip():
            raise RecordError(path, line, "seed task has an empty instruction")
        seeds.append(seed)
    if not seeds:
        raise RecordError(path, None, "holds no seed tasks")
    return seeds


def sample_seed_sets(seeds: list[SeedTask], num_prompts: int, per_prompt: int, seed: int) -> list[list[SeedTask]]:
    """The k seeds shown in each prompt; deterministic in `seed`, so reruns make the same requests."""
    rng = random.Random(seed)
    return [rng.sample(seeds, min(per_prompt, len(seeds))) for _ in range(num_prompts)]


def parse_tasks(answer: str, num_prompt_instructions: int, finish_reason: str) -> tuple[list[ParsedTask], list[Rejected]]:
    """Split a teacher answer into numbered instruction/input/output blocks and apply Alpaca's filters.

    Never raises: whatever cannot be used becomes a `Rejected` with its reason.
    """
    kept: list[ParsedTask] = []
    rejected: list[Rejected] = []
    if not isinstance(answer, str) or not answer.strip():
        return kept, [Rejected("empty answer", answer if isinstance(answer, str) else repr(answer))]
    # The prompt ended with "N. Instruction:", so the answer starts mid-block.
    raw = f"{num_prompt_instructions + 1}. Instruction:" + answer
    blocks = raw.split("###")
    for offset, block in enumerate(blocks):
        if offset == len(blocks) - 1 and finish_reason == "length":
            rejected.append(Rejected("cut off by the length limit", block))
            continue
        number = offset + num_prompt_instructions + 1
        parts = re.split(rf"{number}\.\s+(Instruction|Input|Output):", block)
        if len(parts) != 7 or parts[1:6:2] != ["Instruction", "Input", "Output"]:
            if block.strip():
                rejected.append(Rejected("not a numbered instruction/input/output block", block))
            continue
        instruction = re.sub(r"\s+", " ", parts[2]).strip()
        task_input = parts[4].strip()
        task_input = "" if task_input.lower() == "<noinput>" else task_input
        output = parts[6].strip()
        if reason := filter_reason(instruction, output):
            rejected.append(Rejected(reason, block, {"instruction": instruction}))
            continue
        kept.append(ParsedTask(instruction, task_input, output))
    return kept, rejected


def filter_reason(instruction: str, output: str) -> str | None:
    """Alpaca's keep/drop rules for one task; None keeps it."""
    words = instruction.split()
    if len(words) < MIN_WORDS:
        return "instruction too short"
    if len(words) > MAX_WORDS:
        return "instruction too long"
    if not output:
        return "empty output"
    lowered = instruction.lower()
    if any(re.search(rf"\b{re.escape(word)}\b", lowered) for word in BLACKLIST):
        return "blacklisted keyword"
    if instruction.startswith("Write a program"):
        return "asks for a program"
    if instruction[0] in string.punctuation:
        return "starts with punctuation"
    if not instruction[0].isascii():
        return "starts with a non-ASCII character"
    return None


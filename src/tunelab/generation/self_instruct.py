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
from ..records import iter_json_objects, text_problem

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
        if problem := text_problem(seed.instruction, "the seed task's 'instruction'"):
            raise RecordError(path, line, problem)
        seeds.append(seed)
    if not seeds:
        raise RecordError(path, None, "holds no seed tasks")
    return seeds


def sample_seed_sets(seeds: list[SeedTask], num_prompts: int, per_prompt: int, seed: int) -> list[list[SeedTask]]:
    """The k seeds shown in each prompt; deterministic in `seed`, so reruns make the same requests."""
    rng = random.Random(seed)
    return [rng.sample(seeds, min(per_prompt, len(seeds))) for _ in range(num_prompts)]


# A field label at the start of a line: "5. Instruction:", "Instruction:", "**Input:**", "### 6) Output:", any case.
# A numbered label may also follow a space mid-line ("... 5. Input: ..."), as teachers that skip newlines write.
_LABEL = re.compile(
    r"(?:^[ \t>*_#-]*|(?<=\s)[*_]{0,2}(?=\d))"  # line start with markdown decoration, or mid-line before a number
    r"(?:\d{1,4}[ \t]*[.)][ \t]*(?:[*_]{1,2}[ \t]*)?)?"  # the number, whatever it is, or none
    r"(?P<label>instruction|input|output)s?[ \t]*(?:[*_]{1,2}[ \t]*)?:(?:[ \t]*[*_]{2})?",  # plurals too
    re.IGNORECASE | re.MULTILINE)
# What teachers write for "this task takes no input".
_NO_INPUT = re.compile(r"[<\[(]?\s*no[\s_-]*input\s*[>\])]?\.?|none\.?|n/?a\.?", re.IGNORECASE)


def parse_tasks(answer: str, shown_seeds: int, finish_reason: str) -> tuple[list[ParsedTask], list[Rejected]]:
    """Split a teacher answer into instruction/input/output blocks and apply Alpaca's filters.

    The prompt showed `shown_seeds` numbered tasks and ended with f"{shown_seeds + 1}. Instruction:", so the
    answer starts mid-block. Block numbers are not checked: teachers restart at 1, skip and repeat them, or
    drop them. Blocks end at "###" or at the next Instruction label. A missing Input is an empty input; a
    block without an Output, or the last one when `finish_reason` is "length", is rejected.
    Never raises: whatever cannot be used becomes a `Rejected` with a short reason.
    """
    kept: list[ParsedTask] = []
    rejected: list[Rejected] = []
    if not isinstance(answer, str) or not answer.strip():
        return kept, [Rejected("empty answer", answer if isinstance(answer, str) else repr(answer))]
    chunks = f"{shown_seeds + 1}. Instruction:{answer}".split("###")
    # Each block: (raw text, [(label, text)], closed by "###" or by the next block).
    blocks: list[tuple[str, list[tuple[str, str]], bool]] = []
    for number, chunk in enumerate(chunks):
        closed = number < len(chunks) - 1
        labels = list(_LABEL.finditer(chunk))
        if not labels:
            if chunk.strip():
                blocks.append((chunk, [], closed))
            continue
        # Text before a chunk's first label is a heading or chatter ("Task 5", "Here are more:"): skipped.
        starts = [i for i, m in enumerate(labels) if m["label"].lower() == "instruction" or i == 0]
        for j, first in enumerate(starts):
            last = starts[j + 1] if j + 1 < len(starts) else len(labels)
            end = labels[last].start() if last < len(labels) else len(chunk)
            fields = [(labels[i]["label"].lower(),
                       chunk[labels[i].end():labels[i + 1].start() if i + 1 < len(labels) else len(chunk)])
                      for i in range(first, last)]
            blocks.append((chunk[labels[first].start():end], fields, closed or last < len(labels)))
    for raw, fields, closed in blocks:
        if not closed and finish_reason == "length":
            rejected.append(Rejected("cut off by the length limit", raw))
            continue
        if len(fields) == 1 and fields[0][0] == "instruction" and not fields[0][1].strip():
            continue  # a bare label, as when the answer starts its own list on a new line
        if reason := _block_reason(fields):
            instruction = dict(fields).get("instruction")
            rejected.append(Rejected(reason, raw, {} if instruction is None else {"instruction": _collapse(instruction)}))
            continue
        found = dict(fields)
        instruction = _collapse(found["instruction"])
        task_input = found.get("input", "").strip()
        task_input = "" if _NO_INPUT.fullmatch(task_input) else task_input
        output = found["output"].strip()
        if reason := filter_reason(instruction, output):
            rejected.append(Rejected(reason, raw, {"instruction": instruction}))
            continue
        kept.append(ParsedTask(instruction, task_input, output))
    return kept, rejected


def _block_reason(fields: list[tuple[str, str]]) -> str | None:
    """Why a block's labels do not make one task; None when they do."""
    names = [name for name, _ in fields]
    if not names:
        return "not an instruction/input/output block"
    if "instruction" not in names:
        return "no instruction"
    if "output" not in names:
        return "no output"
    if len(names) != len(set(names)):
        return "repeated field"
    return None


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


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


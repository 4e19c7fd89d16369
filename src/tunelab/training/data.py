"""Training examples for the causal student: every format becomes a prompt/completion pair.

Prompt/completion is what makes TRL put only the response (and EOS) in the loss: the prompt's
tokens are masked out by TRL's `completion_mask`, whatever the template.
- With a template file (alpaca_student), prompt and completion are text; TRL appends EOS.
- With the model's chat template, they are messages ("conversational" in TRL's terms): TRL
  applies the template itself, so special tokens (Llama-2's `<s>`, `</s>`) appear once, where
  the template puts them.

Bad records (a missing field, empty text) are skipped and listed, or stop the run, by setting;
a file that does not parse always stops it, naming file and line.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RecordError
from ..prompts import StudentPrompt
from ..records import iter_json_objects, validate

FORMATS = ("alpaca", "chat", "completion")


@dataclass
class SFTData:
    """Examples ready for TRL, and every record left out with where it was and why."""

    examples: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def skip(self, path, line, reason: str, record_id=None) -> None:
        self.skipped.append({"file": str(path), "line": line, "id": record_id, "reason": reason})

    def read(self, path, build, *, bad_records: str, what: str) -> None:
        """Each record of `path` through `build(obj)`: an example is kept, a problem (a string) is skipped and
        listed, or with bad_records error stops the run naming the file and line."""
        for i, (line, obj) in enumerate(iter_data_objects(path)):
            rid = obj.get("id", f"{Path(path).stem}:{i}") if isinstance(obj, dict) else f"{Path(path).stem}:{i}"
            example = build(obj)
            if isinstance(example, str):
                if bad_records == "error":
                    raise RecordError(path, line, f"bad {what} record: {example}")
                self.skip(path, line, example, rid)
            else:
                self.examples.append({"id": rid, **example})


_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(:[\w.-]+)?$")


_DATA_FILE = (".json", ".jsonl", ".csv", ".tsv", ".gz", ".parquet")


def is_dataset_ref(ref: str | Path) -> bool:
    """A hub dataset id (`tatsu-lab/alpaca`, optionally `:split`) or a local dataset folder.

    A missing path that names a data file (`data/x.json`) is a missing file, not a hub id."""
    path = Path(ref)
    if path.is_dir():
        return True
    return (not path.exists() and bool(_HUB_ID.match(str(ref)))
            and not str(ref).partition(":")[0].lower().endswith(_DATA_FILE))


def iter_data_objects(ref: str | Path) -> Iterator[tuple[int, Any]]:
    """(line or row number, record) from a .json/.jsonl file, a dataset folder, or a hub dataset.

    Hub datasets load through `datasets.load_dataset` (split after a colon, default train), so
    any id that works for `load_dataset` works here, with the user's cache and `HF_TOKEN`.
    """
    if not is_dataset_ref(ref):
        yield from iter_json_objects(ref)
        return
    from datasets import load_dataset

    name, _, split = str(ref).partition(":") if not Path(ref).is_dir() else (str(ref), "", "")
    try:
        dataset = load_dataset(name, split=split or "train")
    except Exception as e:  # offline, gated, missing split: all a user error about this reference
        raise RecordError(ref, None, f"cannot load the dataset: {type(e).__name__}: {e}") from None
    for row, obj in enumerate(dataset, start=1):
        yield row, dict(obj)


def detect_format(path: str | Path) -> str:
    """`alpaca`, `chat` or `completion`, from the keys of the file's first record."""
    for line, obj in iter_data_objects(path):
        if isinstance(obj, dict):
            if "messages" in obj:
                return "chat"
            if "prompt" in obj and "completion" in obj:
                return "completion"
            if "instruction" in obj:
                return "alpaca"
        raise RecordError(path, line, "cannot tell the format: expected instruction/output, prompt/completion or messages")
    return "alpaca"  # an empty file contributes nothing in any format


def _example(obj: dict, fmt: str, prompt: StudentPrompt, tokenizer) -> dict | str:
    """One record as {"prompt", "completion"}, or the reason it cannot be one."""
    if fmt == "completion":
        return {"prompt": obj["prompt"], "completion": obj["completion"]}
    if fmt == "alpaca":
        if prompt.is_chat:
            return {"prompt": prompt.messages(obj["instruction"], obj.get("input", "")),
                    "completion": [{"role": "assistant", "content": obj["output"]}]}
        return {"prompt": prompt.render(tokenizer, obj["instruction"], obj.get("input", "")), "completion": obj["output"]}
    messages = obj["messages"]
    if messages[-1]["role"] != "assistant":
        return "the last message must be the assistant's answer"
    return {"prompt": messages[:-1], "completion": [messages[-1]]}


def load_sft_examples(paths: list[str | Path], prompt: StudentPrompt, tokenizer=None, data_format: str = "auto",
                      *, bad_records: str = "error") -> SFTData:
    """Read every file into prompt/completion rows (ids kept).

    `bad_records`: "skip" lists a record with a missing field or empty text in `SFTData.skipped`;
    "error" raises `RecordError` naming file and line.
    """
    data = SFTData()
    for path in paths:
        fmt = detect_format(path) if data_format == "auto" else data_format
        if fmt not in FORMATS:
            raise RecordError(path, None, f"unknown data_format {fmt!r}; use one of {FORMATS}")
        if fmt == "chat" and (tokenizer is None or not getattr(tokenizer, "chat_template", None)):
            raise RecordError(path, None, "chat records need a model whose tokenizer has a chat template")
        data.read(path, lambda obj: validate(obj, fmt) or _example(obj, fmt, prompt, tokenizer),
                  bad_records=bad_records, what=fmt)
    if not data.examples:
        raise RecordError(", ".join(map(str, paths)), None,
                          "no training examples in these files" + (f" ({len(data.skipped)} bad records skipped)"
                                                                   if data.skipped else ""))
    return data


def example_lengths(examples: list[dict], tokenizer) -> list[int]:
    """Tokens per example as TRL will tokenize it (template, special tokens and EOS included)."""
    if not examples:
        return []
    if isinstance(examples[0]["prompt"], list):
        return [len(tokenizer.apply_chat_template(ex["prompt"] + ex["completion"], tokenize=True, return_dict=True)["input_ids"])
                for ex in examples]
    eos = tokenizer.eos_token or ""
    encoded = tokenizer([ex["prompt"] + ex["completion"] + eos for ex in examples])["input_ids"]
    return [len(ids) for ids in encoded]


def split_eval(examples: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded random hold-out of `fraction` of the examples (at least one): (train, eval)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(examples) * fraction))
    if n_eval >= len(examples):
        raise RecordError("training data", None, f"eval_split {fraction} leaves no training examples of {len(examples)}")
    held = set(order[:n_eval])
    return [ex for i, ex in enumerate(examples) if i not in held], [ex for i, ex in enumerate(examples) if i in held]

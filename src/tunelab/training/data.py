"""Training examples for the causal student: every format becomes prompt/completion.

Prompt/completion is what makes TRL put only the response (and EOS) in the loss: the prompt's
tokens are masked out by TRL's `completion_mask`, whatever the template.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RecordError
from ..prompts import Template
from ..records import iter_json_objects, read_records


def detect_format(path: str | Path) -> str:
    """`alpaca`, `chat` or `completion`, from the keys of the file's first record."""
    for line, obj in iter_json_objects(path):
        if isinstance(obj, dict):
            if "messages" in obj:
                return "chat"
            if "prompt" in obj and "completion" in obj:
                return "completion"
            if "instruction" in obj:
                return "alpaca"
        raise RecordError(path, line, "cannot tell the format: expected instruction/output, prompt/completion or messages")
    return "alpaca"  # an empty file contributes nothing in any format


def render_prompt(template: Template, instruction: str, input_text: str = "") -> str:
    return template.render(instruction=instruction, input=input_text)


def load_sft_examples(paths: list[str | Path], template: Template, tokenizer=None, data_format: str = "auto") -> list[dict]:
    """Read every file into {"prompt", "completion"} rows (ids kept); validation errors name file and line.

    Alpaca records go through the student template; chat records through the tokenizer's chat
    template (the last assistant turn is the completion).
    """
    examples: list[dict] = []
    for path in paths:
        fmt = detect_format(path) if data_format == "auto" else data_format
        for i, record in enumerate(read_records(path, fmt)):
            rid = record.get("id", f"{Path(path).stem}:{i}")
            if fmt == "alpaca":
                examples.append({"id": rid, "prompt": render_prompt(template, record["instruction"], record["input"]),
                                 "completion": record["output"]})
            elif fmt == "completion":
                examples.append({"id": rid, "prompt": record["prompt"], "completion": record["completion"]})
            else:
                messages = record["messages"]
                if messages[-1]["role"] != "assistant":
                    raise RecordError(path, None, f"record {i}: the last message must be the assistant's answer")
                if tokenizer is None or tokenizer.chat_template is None:
                    raise RecordError(path, None, "chat records need a tokenizer with a chat template")
                prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
                examples.append({"id": rid, "prompt": prompt, "completion": messages[-1]["content"]})
    if not examples:
        raise RecordError(", ".join(map(str, paths)), None, "no training examples in these files")
    return examples

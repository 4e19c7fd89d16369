"""The JSON object in a model's answer: bare, in a fenced block, or amid prose (teachers and judges alike)."""

from __future__ import annotations

import json
import re

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def extract_json(answer: str) -> tuple[object | None, str | None]:
    """The JSON object in a teacher's answer (bare, fenced, or amid prose), or why there is none."""
    if not isinstance(answer, str) or not answer.strip():
        return None, "empty answer"
    candidates = [m.group(1) for m in _FENCE.finditer(answer)] + [answer]
    for text in candidates:
        start, end = text.find("{"), text.rfind("}")
        if start == -1 or end <= start:
            continue
        try:
            return json.loads(text[start:end + 1]), None
        except (json.JSONDecodeError, RecursionError):
            continue
    return None, "no JSON object in the answer"

"""Never pay twice: every teacher answer is appended, fsynced, to a JSONL cache keyed by request.

A rerun with the same config finds its answers here and sends only the requests that are missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from ..records import append_jsonl
from .base import SamplingParams, Teacher, TeacherRequest, TeacherResponse, request_key


class RequestCache:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._answers: dict[str, TeacherResponse] = {}
        if self.path.exists():
            with self.path.open(encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut by a kill mid-write: that request is simply sent again
                    self._answers[row["key"]] = TeacherResponse(**row["response"])

    def __contains__(self, key: str) -> bool:
        return key in self._answers

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: str) -> TeacherResponse | None:
        return self._answers.get(key)

    def put(self, key: str, request: TeacherRequest, response: TeacherResponse, model: str) -> None:
        append_jsonl(self.path, {
            "key": key, "model": model, "prompt": request.prompt, "messages": request.messages,
            "response": vars(response),
        })
        self._answers[key] = response


def run_requests(
    teacher: Teacher,
    requests: Sequence[TeacherRequest],
    params: SamplingParams,
    cache: RequestCache,
    *,
    template_version: str,
    batch_size: int = 8,
    desc: str = "teacher",
) -> tuple[list[TeacherResponse], dict[str, int]]:
    """Answer `requests` in order, from the cache where possible; returns responses and counts."""
    keys = [request_key(teacher.name, r, params, template_version) for r in requests]
    todo = [i for i, k in enumerate(keys) if k not in cache]
    stats = {"requests": len(requests), "cached": len(requests) - len(todo), "sent": 0}
    with tqdm(total=len(todo), desc=desc, unit="req", disable=not todo) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            answers = teacher.generate([requests[i] for i in batch], params)
            for i, answer in zip(batch, answers, strict=True):
                cache.put(keys[i], requests[i], answer, teacher.name)
            stats["sent"] += len(batch)
            bar.update(len(batch))
    return [cache.get(k) for k in keys], stats

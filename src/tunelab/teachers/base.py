"""The teacher interface and request identity."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, Sequence


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings; part of every request's identity."""

    max_new_tokens: int = 512
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    num_beams: int = 1
    repetition_penalty: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()


@dataclass
class TeacherRequest:
    """Either a raw `prompt` (completion style) or chat `messages`; `meta` rides along, unhashed."""

    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("a teacher request needs exactly one of prompt or messages")


@dataclass
class TeacherResponse:
    text: str
    finish_reason: str  # "stop" (ended by itself) or "length" (cut by max_new_tokens)
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Teacher(Protocol):
    """What every backend provides. `name` identifies the model in request keys and provenance."""

    name: str

    def generate(self, requests: Sequence[TeacherRequest], params: SamplingParams) -> list[TeacherResponse]: ...


def request_key(model: str, request: TeacherRequest, params: SamplingParams, template_version: str) -> str:
    """SHA-256 of everything that determines an answer: same key, same paid-for answer."""
    payload = {
        "model": model,
        "prompt": request.prompt,
        "messages": request.messages,
        "params": asdict(params),
        "template": template_version,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()

"""The teacher interface and request identity.

A teacher answers a list of requests and yields the answers in groups as they complete, in any
order, so the caller can store each group before the next arrives: a kill loses only what was in
flight. Every request is identified by a hash of what determines its answer (`request_key`), and
sampled answers are seeded per request (`request_seed`), so an answer never depends on which
other requests happened to share its batch: a resumed run asks for, and gets, the same answers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ..errors import TunelabError


class TeacherError(TunelabError):
    """A teacher could not answer (dead endpoint, retries exhausted); answers received so far are kept."""


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
    """Either a raw `prompt` (completion style) or chat `messages`; `meta` rides along, unhashed.

    Messages use the OpenAI format; a user turn with images has a list of content parts:
    `{"type": "text", "text": ...}` and `{"type": "image_url", "image_url": {"url": <local path or URL>}}`.
    """

    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("a teacher request needs exactly one of prompt or messages")

    @property
    def text_length(self) -> int:
        """Characters of text, a cheap stand-in for prompt length when sorting batches."""
        if self.prompt is not None:
            return len(self.prompt)
        return sum(len(part.get("text", "")) if isinstance(part, dict) else 0
                   for m in self.messages for part in _content_parts(m))


@dataclass
class TeacherResponse:
    text: str
    finish_reason: str  # "stop" (ended by itself), "length" (cut by max_new_tokens) or "error"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None  # why the teacher refused this one request (e.g. HTTP 400: prompt too long)


AnswerGroups = Iterator[list[tuple[int, TeacherResponse]]]


class Teacher(Protocol):
    """What every backend provides.

    `name` identifies the model in request keys and provenance. `answer` answers every request
    and yields groups of (index into `requests`, response) as they complete, in any order.
    `in_flight` is how many requests are being answered right now (for progress display).
    """

    name: str
    in_flight: int

    def answer(self, requests: Sequence[TeacherRequest], params: SamplingParams) -> AnswerGroups: ...


class BatchedTeacher:
    """Base for in-process teachers: length-sorted batches of `batch_size`, one group per batch.

    Sorting by length across everything still to do keeps padding small; per-request seeds keep
    the answers independent of that order.
    """

    name: str
    batch_size: int = 8
    in_flight: int = 0

    def generate_batch(self, requests: Sequence[TeacherRequest], params: SamplingParams) -> list[TeacherResponse]:
        raise NotImplementedError

    def answer(self, requests: Sequence[TeacherRequest], params: SamplingParams) -> AnswerGroups:
        order = sorted(range(len(requests)), key=lambda i: requests[i].text_length, reverse=True)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            self.in_flight = len(batch)
            try:
                responses = self.generate_batch([requests[i] for i in batch], params)
            finally:
                self.in_flight = 0
            yield list(zip(batch, responses, strict=True))


def _content_parts(message: dict) -> list:
    content = message.get("content")
    return content if isinstance(content, list) else [{"type": "text", "text": content or ""}]


def _canonical_messages(messages: list[dict] | None) -> list[dict] | None:
    """Messages with each local image replaced by its content digest: a key survives moving the files."""
    if messages is None:
        return None
    from .images import image_digest

    out = []
    for message in messages:
        if isinstance(message.get("content"), list):
            parts = []
            for part in message["content"]:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    part = {"type": "image_url", "image_url": {"url": image_digest(part["image_url"]["url"])}}
                parts.append(part)
            message = {**message, "content": parts}
        out.append(message)
    return out


def request_key(model: str, request: TeacherRequest, params: SamplingParams, template_version: str) -> str:
    """SHA-256 of everything that determines an answer: same key, same paid-for answer."""
    payload = {
        "model": model,
        "prompt": request.prompt,
        "messages": _canonical_messages(request.messages),
        "params": asdict(params),
        "template": template_version,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def request_seed(request: TeacherRequest, params: SamplingParams) -> int:
    """A sampling seed of this request alone (content + the run's seed), below 2**31 for every backend."""
    payload = json.dumps([request.prompt, _canonical_messages(request.messages), params.seed], sort_keys=True,
                         ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(payload.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF

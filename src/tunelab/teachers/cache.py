"""Never pay twice: every teacher answer is appended, fsynced, to a JSONL cache keyed by request.

A rerun with the same config finds its answers here and sends only the requests that are missing.
Answers are stored as they arrive, group by group, so a kill loses only the requests in flight.

Each line: `key`, `model`, the request as sent (`prompt`, or chat `messages` whose images are
local paths or URLs, never image bytes, plus `images`: each local image's content digest), and
`response`. A record built from an answer names its line by `request_key` (see `run_requests`).
Lines of older caches, without the request or the digests, still load.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import closing
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from ..console import show_progress
from ..records import append_jsonl, drop_partial_last_line
from .base import SamplingParams, Teacher, TeacherError, TeacherRequest, TeacherResponse, request_key


class RequestCache:
    """Answers by request key. A writing cache holds an exclusive lock on its file, so two runs on
    one folder cannot both pay for the same requests; `read_only` (dry runs) neither locks nor repairs.
    """

    def __init__(self, path: str | os.PathLike, *, read_only: bool = False, sitting: str | None = None):
        self.path = Path(path)
        self.sitting = sitting  # stamped on every answer stored, so costs can be told apart by sitting
        self._answers: dict[str, TeacherResponse] = {}
        self.damaged_lines = 0
        self._lock = None
        if not read_only:
            self._lock = _lock(self.path)
            drop_partial_last_line(self.path)  # a line cut by a kill mid-write: that request is simply sent again
        if self.path.exists():
            with self.path.open(encoding="utf-8", errors="replace") as f:
                for line in f:
                    if not line.endswith("\n"):
                        break  # being written by a live run (seen only by read-only caches)
                    try:
                        row = json.loads(line)
                        self._answers[row["key"]] = TeacherResponse(**row["response"])
                    except (json.JSONDecodeError, KeyError, TypeError):
                        self.damaged_lines += 1  # a damaged line costs one request, never the run

    def close(self) -> None:
        """Release the lock (also released when the process ends, however it ends)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> "RequestCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __contains__(self, key: str) -> bool:
        return key in self._answers

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: str) -> TeacherResponse | None:
        return self._answers.get(key)

    def put_many(self, entries: Sequence[tuple[str, TeacherRequest, TeacherResponse]], model: str,
                 retries_so_far: int | None = None) -> None:
        """Store answers with one fsync; the raw request rides along so the cache is readable on its own.
        Each line also says when, in which sitting, and after how many retries of that sitting it arrived:
        what a killed sitting spent is known from its lines alone."""
        stamp = {} if self.sitting is None else {"sitting": self.sitting, "at": round(time.time(), 3),
                                                 **({} if retries_so_far is None else {"retries_so_far": retries_so_far})}
        append_jsonl(self.path, [
            {"key": key, "model": model, **stored_request(request), "response": vars(response), **stamp}
            for key, request, response in entries
        ])
        for key, _, response in entries:
            self._answers[key] = response


def stored_request(request: TeacherRequest) -> dict:
    """The request as a cache line keeps it: the prompt, or the messages with each image as its path
    or URL (an inline data: image as its digest only), and `images`: local path -> content digest."""
    if request.messages is None:
        return {"prompt": request.prompt, "messages": None}
    from .images import image_digest, is_remote

    images: dict[str, str] = {}
    messages = []
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    url = str(part["image_url"]["url"])
                    if url.startswith("data:"):
                        url = "sha256:" + hashlib.sha256(url.encode("utf-8")).hexdigest() + " (inline image)"
                        part = {**part, "image_url": {"url": url}}
                    elif not is_remote(url):
                        try:
                            images[url] = image_digest(url)
                        except OSError:
                            pass  # gone since its key was made: the path alone still names it
                parts.append(part)
            message = {**message, "content": parts}
        messages.append(message)
    return {"prompt": None, "messages": messages, **({"images": images} if images else {})}


def request_text(row: dict) -> str | None:
    """A cache line's request as plain text for people (chat turns headed by their role), or None
    for a line written before requests were kept."""
    if isinstance(row.get("prompt"), str):
        return row["prompt"]
    messages = row.get("messages")
    if not isinstance(messages, list):
        return None
    digests = row.get("images") or {}
    turns = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        parts = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
        texts = []
        for part in parts:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "image_url":
                url = str((part.get("image_url") or {}).get("url", ""))
                texts.append(f"[image: {url}{' ' + digests[url] if url in digests else ''}]")
            else:
                texts.append(str(part.get("text", "")))
        turns.append(f"[{message.get('role', '?')}]\n" + "\n".join(texts))
    return "\n\n".join(turns)


def read_cached_requests(path: str | os.PathLike, keys: set[str] | None = None) -> dict[str, dict]:
    """The cache lines of `keys` (every line when None), by key, read without locking; a damaged
    line is skipped. Only the wanted lines are parsed, so a large cache is read quickly."""
    found: dict[str, dict] = {}
    path = Path(path)
    if not path.exists():
        return found
    head = '{"key": "'
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if keys is not None and line.startswith(head):
                # put_many writes the key first: skip unwanted lines without parsing them
                if line[len(head):line.find('"', len(head))] not in keys:
                    continue
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("key"), str) and (keys is None or row["key"] in keys):
                found[row["key"]] = row
    return found


def _lock(path: Path):
    """An exclusive, non-blocking lock on `path` (held while the cache object lives)."""
    import fcntl

    from .base import TeacherError

    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise TeacherError(f"another run is writing to {path}; wait for it or use another output_dir") from None
    return handle


class RequestProgress:
    """One progress bar over every request of a build, with the build's own counts beside it."""

    def __init__(self, total: int, desc: str, disable: bool = False):
        self.bar = tqdm(total=total, desc=desc, unit="req", disable=disable or not show_progress(),
                        dynamic_ncols=True)
        self.counts: dict[str, int] = {}
        self.completion_tokens = 0
        self.started = time.monotonic()

    def update(self, answered: int, completion_tokens: int, in_flight: int) -> None:
        self.completion_tokens += completion_tokens
        self.bar.update(answered)
        self.show(in_flight)

    def show(self, in_flight: int = 0) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        self.bar.set_postfix(self.counts | {"in_flight": in_flight, "tok/s": round(self.completion_tokens / elapsed)},
                             refresh=False)

    def close(self) -> None:
        self.bar.close()


def run_requests(
    teacher: Teacher,
    requests: Sequence[TeacherRequest],
    params: SamplingParams,
    cache: RequestCache,
    *,
    template_version: str,
    progress: RequestProgress | None = None,
) -> tuple[list[TeacherResponse], dict[str, int]]:
    """Answer `requests` in order, from the cache where possible; returns responses and counts.

    Identical requests are sent once. If the teacher fails, every answer received so far is
    already in the cache and the error says so: rerunning continues from there. Each request's
    key is put in its `meta["request_key"]`, so what is built from an answer can name its cache line.
    """
    keys = [request_key(teacher.name, r, params, template_version) for r in requests]
    for request, key in zip(requests, keys, strict=True):
        request.meta["request_key"] = key
    first_of: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key not in cache:
            first_of.setdefault(key, i)
    todo = list(first_of.values())
    cached = sum(k in cache for k in keys)
    stats = {"requests": len(requests), "cached": cached, "repeated": len(requests) - cached - len(todo), "sent": 0,
             "completion_tokens": 0}
    if progress is not None:
        progress.update(len(requests) - len(todo), 0, 0)
    try:
        # closing(): whatever stops this loop (an error, a full disk) also stops the teacher's workers.
        with closing(teacher.answer([requests[i] for i in todo], params)) as groups:
            for group in groups:
                entries = [(keys[todo[j]], requests[todo[j]], response) for j, response in group]
                retries = getattr(teacher, "retries", None)
                cache.put_many(entries, teacher.name, sum(retries.values()) if retries is not None else None)
                tokens = sum(r.completion_tokens for _, r in group)
                stats["sent"] += len(group)
                stats["completion_tokens"] += tokens
                if progress is not None:
                    progress.update(len(group), tokens, getattr(teacher, "in_flight", 0))
    except TeacherError as e:
        raise TeacherError(f"{e}\n{stats['sent']} answers of this run are saved in {cache.path}; "
                           "rerun the same command to continue from there") from e
    missing = [i for i, k in enumerate(keys) if k not in cache]
    if missing:
        raise TeacherError(f"teacher {teacher.name} returned no answer for {len(missing)} request(s) "
                           f"(first: #{missing[0]}); answers received are saved in {cache.path}")
    return [cache.get(k) for k in keys], stats

"""Any OpenAI-compatible endpoint: vLLM `serve`, TGI, SGLang, llama.cpp server, Ollama, OpenAI.

Requests run concurrently (at most `max_in_flight` at once) on an asyncio loop in a background
thread; answers are handed back in groups as they complete, so the caller stores them while the
rest are in flight. Failures that a retry can fix (429, 5xx, timeouts, dropped connections, a
body that is not the expected JSON) are retried with exponential back-off and full jitter, or
after the server's `Retry-After` when it sends one. Anything else (401, 404, 400) stops the run
with the server's own message. The API key is read from the environment variable named in the
config and never written anywhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import random
import re
import threading
from collections import Counter
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone

from ..errors import ConfigError
from .base import AnswerGroups, SamplingParams, TeacherError, TeacherRequest, TeacherResponse, request_seed
from .images import is_remote, to_data_url

RETRY_STATUSES = {408, 409, 425, 429} | set(range(500, 600))
# The server understood and refused this one request (too long, bad image): a reject, not a dead run.
RECORD_ERROR_STATUSES = {400, 413, 422}
CONNECT_TIMEOUT_S = 30.0  # an unreachable host is reported in minutes, not after the full request timeout
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONVENTIONAL_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class RetryableError(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def api_key_from_env(env_var: str | None) -> str | None:
    """The key named by the config; a named variable that is unset is a config error, not a silent 401."""
    if not env_var:
        return None
    if not _ENV_NAME.match(env_var):  # most likely the key itself: never echo it
        raise ConfigError("teacher_api_key_env must be the NAME of an environment variable (like OPENAI_API_KEY), "
                          "not the key")
    key = os.environ.get(env_var)
    if not key:
        # Variable names are conventionally UPPER_SNAKE; anything else (hf_..., sk_...) may be the key itself.
        named = f"names ${env_var}, which" if _CONVENTIONAL_ENV_NAME.match(env_var) else (
            "names a variable that (the value is not shown: it may be a key given by mistake)")
        raise ConfigError(f"teacher_api_key_env {named} is not set; export it or clear the setting")
    return key


class OpenAICompatibleTeacher:
    """Chat messages go to /chat/completions, plain prompts to /completions."""

    def __init__(self, model: str, base_url: str, *, api_key_env: str | None = None, max_in_flight: int = 32,
                 timeout_s: float = 300.0, max_retries: int = 6, backoff_base_s: float = 1.0,
                 backoff_max_s: float = 60.0):
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"teacher_base_url must be an http(s) URL like http://localhost:8000/v1, got {base_url!r}")
        from urllib.parse import urlsplit

        if urlsplit(base_url).username or urlsplit(base_url).password:
            raise ConfigError("teacher_base_url must not hold credentials; put the key in an environment variable "
                              "and name it in teacher_api_key_env")
        if max_in_flight < 1:
            raise ConfigError("teacher_max_in_flight must be at least 1")
        self.name = model
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key_from_env(api_key_env)
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.in_flight = 0
        self.retries: Counter[str] = Counter()  # reason -> retries, for the run's stats

    def __repr__(self) -> str:  # never show the key
        return f"OpenAICompatibleTeacher(model={self.name!r}, base_url={self.base_url!r})"

    # -- request building and parsing -------------------------------------------------------

    def _body(self, request: TeacherRequest, params: SamplingParams) -> tuple[str, dict]:
        body: dict = {"model": self.name, "max_tokens": params.max_new_tokens, "temperature": params.temperature,
                      "top_p": params.top_p, "seed": request_seed(request, params), "n": 1}
        if params.top_k:
            body["top_k"] = params.top_k  # vLLM/TGI/llama.cpp extension; sent only when asked for
        if params.repetition_penalty != 1.0:
            body["repetition_penalty"] = params.repetition_penalty
        if params.stop:
            body["stop"] = list(params.stop)
        if request.prompt is not None:
            return "/completions", body | {"prompt": request.prompt}
        return "/chat/completions", body | {"messages": [self._inline_images(m) for m in request.messages]}

    @staticmethod
    def _inline_images(message: dict) -> dict:
        """Local image paths become data URLs; http(s) URLs are passed for the server to fetch."""
        if not isinstance(message.get("content"), list):
            return message
        parts = []
        for part in message["content"]:
            if isinstance(part, dict) and part.get("type") == "image_url":
                url = part["image_url"]["url"]
                part = {"type": "image_url", "image_url": {"url": url if is_remote(url) or url.startswith("data:")
                                                           else to_data_url(url)}}
            parts.append(part)
        return {**message, "content": parts}

    @staticmethod
    def _parse(route: str, raw: bytes) -> TeacherResponse:
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = choice["message"]["content"] if route == "/chat/completions" else choice["text"]
            # null content is a real answer (e.g. a reasoning model that ran out of tokens): the parser rejects it
            text = "" if text is None else text
            if not isinstance(text, str):
                raise TypeError("answer text is not a string")
            usage = data.get("usage") or {}
            return TeacherResponse(text, "length" if choice.get("finish_reason") == "length" else "stop",
                                   int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise RetryableError(f"malformed response ({type(e).__name__})") from None

    # -- the async engine -------------------------------------------------------------------

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:  # plus a little jitter, so workers told the same time do not all return at once
            return min(retry_after, self.backoff_max_s) + random.uniform(0, self.backoff_base_s)
        return random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2 ** attempt))  # full jitter

    async def _one(self, session, request: TeacherRequest, params: SamplingParams) -> TeacherResponse:
        import aiohttp

        route, body = self._body(request, params)
        url = self.base_url + route
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                self.in_flight += 1
                try:
                    async with session.post(url, json=body) as resp:
                        raw = await resp.read()
                        if resp.status in RETRY_STATUSES:
                            raise RetryableError(f"HTTP {resp.status}", retry_after_seconds(resp.headers.get("Retry-After")))
                        if resp.status >= 400:
                            detail = raw[:300].decode("utf-8", "replace")
                            if self._api_key:
                                detail = detail.replace(self._api_key, "***")
                            if resp.status in RECORD_ERROR_STATUSES:
                                return TeacherResponse("", "error", error=f"HTTP {resp.status}: {detail}")
                            hint = " (check the API key variable named by teacher_api_key_env)" if resp.status in (401, 403) else ""
                            raise TeacherError(f"{url} refused a request with HTTP {resp.status}{hint}: {detail}")
                        return self._parse(route, raw)
                finally:
                    self.in_flight -= 1
            except RetryableError as e:
                last, wait = e.reason, self._delay(attempt, e.retry_after)
            except asyncio.TimeoutError:  # before connection errors: aiohttp's timeouts are both
                last, wait = f"timed out after {self.timeout_s:g} s", self._delay(attempt, None)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
                last, wait = f"connection error ({type(e).__name__})", self._delay(attempt, None)
            self.retries[last.split(" (")[0]] += 1
            if attempt < self.max_retries:
                await asyncio.sleep(wait)
        hint = " (is the server running and reachable?)" if last.startswith("connection") else ""
        raise TeacherError(f"{url}: a request failed {self.max_retries + 1} times, last: {last}{hint}")

    async def _run_all(self, requests, params, results: queue.Queue, stop: asyncio.Event) -> None:
        import aiohttp

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        timeout = aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=min(CONNECT_TIMEOUT_S, self.timeout_s))
        connector = aiohttp.TCPConnector(limit=self.max_in_flight)
        pending = iter(range(len(requests)))  # shared by the workers: each takes the next index

        async def worker(session):
            for i in pending:
                if stop.is_set():
                    return
                try:
                    results.put((i, await self._one(session, requests[i], params)))
                except Exception as e:  # handed to the consuming thread, which raises it
                    stop.set()
                    results.put((i, e))
                    return

        async with aiohttp.ClientSession(headers=headers, timeout=timeout, connector=connector) as session:
            workers = [asyncio.create_task(worker(session)) for _ in range(min(self.max_in_flight, len(requests)))]

            async def cancel_on_stop():
                await stop.wait()
                for task in workers:
                    task.cancel()

            canceller = asyncio.create_task(cancel_on_stop())
            await asyncio.gather(*workers, return_exceptions=True)
            canceller.cancel()
            await asyncio.gather(canceller, return_exceptions=True)

    def answer(self, requests: Sequence[TeacherRequest], params: SamplingParams) -> AnswerGroups:
        if not requests:
            return
        results: queue.Queue = queue.Queue()
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        done = threading.Event()

        def run():
            try:
                loop.run_until_complete(self._run_all(requests, params, results, stop))
            except BaseException as e:  # surface anything unexpected instead of hanging the consumer
                results.put((-1, e))
            finally:
                loop.close()
                done.set()
                results.put(None)

        thread = threading.Thread(target=run, name="http-teacher", daemon=True)
        thread.start()
        received = 0
        try:
            while received < len(requests):
                item = results.get()
                if item is None:
                    break
                group = [item]
                while True:  # drain what else has arrived: one fsync per group, not per answer
                    try:
                        extra = results.get_nowait()
                    except queue.Empty:
                        break
                    if extra is None:
                        results.put(None)
                        break
                    group.append(extra)
                errors = [e for _, e in group if isinstance(e, BaseException)]
                answers = [(i, r) for i, r in group if not isinstance(r, BaseException)]
                if answers:
                    received += len(answers)
                    yield answers
                if errors:
                    error = errors[0]
                    raise error if isinstance(error, TeacherError) else TeacherError(
                        f"{self.base_url}: {type(error).__name__}: {error}")
        finally:
            if not done.is_set():
                try:
                    loop.call_soon_threadsafe(stop.set)  # cancel what is still queued or in flight
                except RuntimeError:  # the loop finished meanwhile
                    pass
            thread.join(timeout=30)

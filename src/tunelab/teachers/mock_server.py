"""A local OpenAI-compatible server with deterministic answers, fixed latency and injected faults.

For trying a pipeline without a model, for the tests (a flaky endpoint that must not cost a
record) and for the HTTP teacher benchmark (a fixed latency to measure concurrency against):

    python -m tunelab.teachers.mock_server --port 8000 --latency 0.1 --fault-rate 0.3

Faults, each as likely as the others: 429 with Retry-After, 500, a stall longer than the client's
timeout, a body that is not JSON, and a connection dropped before the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import socket
import threading
from collections import Counter
from collections.abc import Callable

FAULTS = ("429", "500", "timeout", "malformed", "drop")


def default_answer(body: dict) -> str:
    """A stable pseudo-answer: the same request always gets the same text."""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return f"answer {digest[:16]}"


def request_identity(body: dict) -> str:
    """What identifies a request for counting repeats (the body without transport details)."""
    return hashlib.sha256(json.dumps({k: body.get(k) for k in ("model", "prompt", "messages", "seed")},
                                     sort_keys=True).encode()).hexdigest()


class MockServer:
    """Serve in a background thread: `with MockServer(...) as server: server.base_url`."""

    def __init__(self, *, latency_s: float = 0.0, fault_rate: float = 0.0, faults: tuple[str, ...] = FAULTS,
                 stall_s: float = 2.0, retry_after_s: float = 0.05, seed: int = 0,
                 answer: Callable[[dict], str] = default_answer, host: str = "127.0.0.1", port: int = 0):
        self.latency_s, self.fault_rate, self.faults = latency_s, fault_rate, faults
        self.stall_s, self.retry_after_s = stall_s, retry_after_s
        self.answer = answer
        self.rng = random.Random(seed)
        self.host, self.port = host, port
        self.received: Counter[str] = Counter()  # request identity -> times received
        self.answered: Counter[str] = Counter()  # request identity -> times answered in full
        self.faults_served: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def _handle(self, request):
        from aiohttp import web

        body = await request.json()
        identity = request_identity(body)
        self.received[identity] += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.fault_rate and self.rng.random() < self.fault_rate:
            fault = self.rng.choice(self.faults)
            self.faults_served[fault] += 1
            if fault == "429":
                return web.json_response({"error": "rate limited"}, status=429,
                                         headers={"Retry-After": f"{self.retry_after_s:g}"})
            if fault == "500":
                return web.json_response({"error": "internal"}, status=500)
            if fault == "timeout":  # the client gives up before this answer arrives
                await asyncio.sleep(self.stall_s)
                return web.json_response({"error": "too late"}, status=504)
            if fault == "malformed":
                return web.Response(text='{"choices": [', content_type="application/json")
            if fault == "drop":
                request.transport.close()
                return web.Response()
        text = self.answer(body)
        self.answered[identity] += 1
        usage = {"prompt_tokens": len(json.dumps(body.get("prompt") or body.get("messages"))) // 4,
                 "completion_tokens": len((text or "").split())}
        if request.path.endswith("/chat/completions"):
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        else:
            choice = {"index": 0, "text": text, "finish_reason": "stop"}
        return web.json_response({"id": identity[:12], "object": "completion", "model": body.get("model"),
                                  "choices": [choice], "usage": usage})

    async def _serve(self):
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/v1/completions", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(runner, sock)
        await site.start()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def start(self) -> "MockServer":
        def run():
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._serve())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="mock-openai-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("mock server did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def __enter__(self) -> "MockServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests that get a fault")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    server = MockServer(latency_s=args.latency, fault_rate=args.fault_rate, seed=args.seed, host=args.host,
                        port=args.port).start()
    print(f"serving {server.base_url} (Ctrl-C stops)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()

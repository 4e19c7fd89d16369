"""A real local teacher server: llama.cpp's OpenAI-compatible server (the `llamacpp` extra) serving
SmolLM2-135M-Instruct on 127.0.0.1, driven by generate and by inference.py --backend openai."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.util import find_spec

import pytest

from tunelab.stages import generate, infer

if find_spec("llama_cpp") is None:
    pytest.skip("the llamacpp extra is not installed: pip install -e '.[llamacpp]' (builds llama.cpp, minutes)",
                allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python -m llama_cpp.server` on SmolLM2's GGUF, as a CPU user runs it; its base URL."""
    from tunelab.smollm2 import gguf_path

    try:
        model = gguf_path()
    except Exception as e:  # noqa: BLE001 - the weights package is what is missing
        pytest.skip(str(e))
    port = free_port()
    log = tmp_path_factory.mktemp("llamacpp") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
                                 "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2"],
                                stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_generate_through_the_server_writes_self_instruct_and_qa(server, tmp_path):
    out = tmp_path / "gen"
    stats = generate.generate(["--config", "demo", "--tasks", "self_instruct", "moderation_qa", "--teacher_backend",
                               "openai", "--teacher", "smollm2", "--teacher_base_url", server, "--max_requests", "2",
                               "--requests_per_round", "2", "--max_posts", "2", "--max_new_tokens", "160",
                               "--temperature", "0.7", "--teacher_max_in_flight", "2", "--output_dir", str(out)])
    for build in ("self_instruct", "moderation_qa"):
        assert stats[build]["sent"] == 2 and stats[build]["completion_tokens"] > 0, stats[build]
    rows = [json.loads(line) for line in (out / "teacher_cache.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(row["response"]["text"].strip() for row in rows)
    assert stats["teacher_sittings"]["total"]["answers"] == 4


def test_inference_through_the_server_answers_in_words(server, tmp_path):
    out = tmp_path / "answers"
    summary = infer.infer(["--model", "smollm2", "--backend", "openai", "--base_url", server, "--data",
                           "data/alpaca_heldout.json", "--limit", "3", "--max_new_tokens", "48",
                           "--output_dir", str(out)])
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert summary["examples"] == 3 and len(rows) == 3
    assert sum(len(row["prediction"].split()) for row in rows) > 10  # real words, not an empty stop

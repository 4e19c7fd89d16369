"""Teachers: the HTTP teacher against a faulty local server, per-request seeds, images under a root."""

import json

import pytest

from tunelab.errors import ConfigError
from tunelab.teachers import RequestCache, SamplingParams, TeacherError, TeacherRequest, request_key, run_requests
from tunelab.teachers.http_teacher import OpenAICompatibleTeacher, retry_after_seconds
from tunelab.teachers.images import resolve_image, user_message
from tunelab.teachers.mock_server import MockServer

FAST_RETRIES = dict(max_retries=10, backoff_base_s=0.01, backoff_max_s=0.1)


def mixed_requests(n):
    return [TeacherRequest(prompt=f"prompt {i}") if i % 2 else
            TeacherRequest(messages=[{"role": "user", "content": f"question {i}"}]) for i in range(n)]


def test_http_teacher_survives_faults_without_losing_or_repeating_records(tmp_path):
    with MockServer(fault_rate=0.3, stall_s=1.0, seed=1) as server:
        teacher = OpenAICompatibleTeacher("m", server.base_url, max_in_flight=8, timeout_s=0.4, **FAST_RETRIES)
        requests = mixed_requests(60)
        answers, stats = run_requests(teacher, requests, SamplingParams(), RequestCache(tmp_path / "c.jsonl"),
                                      template_version="v")
    assert set(server.faults_served) == {"429", "500", "timeout", "malformed", "drop"}
    assert sum(server.faults_served.values()) >= 10
    assert stats["sent"] == 60 and all(a.text.startswith("answer ") for a in answers)
    assert len(server.answered) == 60 and max(server.answered.values()) == 1  # every request answered exactly once
    rows = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert len(rows) == 60 and len({r["key"] for r in rows}) == 60
    assert sum(teacher.retries.values()) == sum(server.faults_served.values())


def test_http_teacher_honours_retry_after():
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: retry now
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    teacher = OpenAICompatibleTeacher("m", "http://127.0.0.1:1/v1", backoff_max_s=30)
    assert 7.0 <= teacher._delay(0, 7.0) <= 8.0 and 30 <= teacher._delay(0, 600.0) <= 31  # capped, plus jitter
    assert all(0 <= teacher._delay(3, None) <= 8.0 for _ in range(50))  # full jitter under base * 2**attempt


def test_dead_endpoint_is_a_clear_error_and_keeps_what_was_answered(tmp_path):
    cache = RequestCache(tmp_path / "c.jsonl")
    with MockServer() as server:
        teacher = OpenAICompatibleTeacher("m", server.base_url, **FAST_RETRIES)
        run_requests(teacher, mixed_requests(3), SamplingParams(), cache, template_version="v")
    # The server is gone now: the three answers are kept, the new request fails with a clear message.
    dead = OpenAICompatibleTeacher("m", server.base_url, max_retries=2, backoff_base_s=0.01)
    with pytest.raises(TeacherError, match=r"(?s)failed 3 times.*connection error.*rerun the same command"):
        run_requests(dead, mixed_requests(4), SamplingParams(), cache, template_version="v")
    cache.close()
    assert len(RequestCache(tmp_path / "c.jsonl", read_only=True)) == 3


def test_one_run_at_a_time_writes_a_cache(tmp_path):
    with RequestCache(tmp_path / "c.jsonl"):
        with pytest.raises(TeacherError, match="another run is writing"):
            RequestCache(tmp_path / "c.jsonl")
        assert len(RequestCache(tmp_path / "c.jsonl", read_only=True)) == 0  # a dry run may still look
    RequestCache(tmp_path / "c.jsonl").close()


def test_a_request_the_server_refuses_becomes_a_reject_not_a_dead_run(tmp_path):
    from aiohttp import web

    def picky(body):
        if "prompt 3" in json.dumps(body):
            raise web.HTTPBadRequest(text='{"error": "maximum context length exceeded"}')
        return "fine"

    with MockServer(answer=picky) as server:
        teacher = OpenAICompatibleTeacher("m", server.base_url, **FAST_RETRIES)
        answers, stats = run_requests(teacher, mixed_requests(6), SamplingParams(), RequestCache(tmp_path / "c.jsonl"),
                                      template_version="v")
    assert stats["sent"] == 6 and [a.finish_reason for a in answers].count("error") == 1
    assert "HTTP 400" in answers[3].error and "maximum context length" in answers[3].error


def test_a_null_answer_is_an_empty_answer(tmp_path):
    with MockServer(answer=lambda body: None) as server:
        teacher = OpenAICompatibleTeacher("m", server.base_url, **FAST_RETRIES)
        [answer], _ = run_requests(teacher, [TeacherRequest(messages=[{"role": "user", "content": "hi"}])],
                                   SamplingParams(), RequestCache(tmp_path / "c.jsonl"), template_version="v")
    assert answer.text == "" and answer.error is None


def test_api_key_settings_never_echo_a_key():
    with pytest.raises(ConfigError) as info:
        OpenAICompatibleTeacher("m", "http://127.0.0.1:1/v1", api_key_env="sk-abc123-not-a-name")
    assert "sk-abc123" not in str(info.value)
    with pytest.raises(ConfigError, match="must not hold credentials"):
        OpenAICompatibleTeacher("m", "http://user:pw@127.0.0.1:1/v1")


def test_http_client_errors_stop_at_once_with_the_servers_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_TEACHER_KEY", "sk-secret-123")

    with MockServer() as server:
        teacher = OpenAICompatibleTeacher("m", server.base_url.replace("/v1", "/nope"), api_key_env="TEST_TEACHER_KEY",
                                          **FAST_RETRIES)
        with pytest.raises(TeacherError, match="HTTP 404") as info:
            run_requests(teacher, mixed_requests(2), SamplingParams(), RequestCache(tmp_path / "c.jsonl"),
                         template_version="v")
    assert "sk-secret-123" not in str(info.value) and "sk-secret-123" not in repr(teacher)


def test_a_named_but_unset_key_variable_is_a_config_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ConfigError, match=r"\$NO_SUCH_KEY_VAR"):
        OpenAICompatibleTeacher("m", "http://127.0.0.1:1/v1", api_key_env="NO_SUCH_KEY_VAR")


def test_http_teacher_sends_sampling_settings_and_inline_images(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(tmp_path / "post.png")
    seen = []

    def record(body):
        seen.append(body)
        return "ok"

    image = resolve_image("post.png", tmp_path)
    requests = [TeacherRequest(messages=[user_message("what is shown?", [image])])]
    params = SamplingParams(max_new_tokens=7, temperature=0.5, top_k=5, seed=3)
    with MockServer(answer=record) as server:
        teacher = OpenAICompatibleTeacher("m", server.base_url)
        run_requests(teacher, requests, params, RequestCache(tmp_path / "c.jsonl"), template_version="v")
    body = seen[0]
    assert body["max_tokens"] == 7 and body["temperature"] == 0.5 and body["top_k"] == 5
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")


def test_image_paths_must_stay_under_the_root(tmp_path):
    from PIL import Image

    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (4, 4)).save(root / "a.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "secret.png")
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    assert resolve_image("a.png", root) == str((root / "a.png").resolve())
    for escape in ("../secret.png", str(tmp_path / "secret.png"), "link.png"):
        with pytest.raises(ValueError, match="escapes the images root"):
            resolve_image(escape, root)
    with pytest.raises(ValueError, match="HTTP teacher"):
        resolve_image("https://example.org/a.png", root)
    assert resolve_image("https://example.org/a.png", root, allow_urls=True) == "https://example.org/a.png"


def test_request_key_follows_image_content_not_its_path(tmp_path):
    from PIL import Image

    for name, color in (("a.png", "red"), ("b.png", "red"), ("c.png", "blue")):
        Image.new("RGB", (4, 4), color).save(tmp_path / name)
    key = {n: request_key("m", TeacherRequest(messages=[user_message("q", [str(tmp_path / n)])]), SamplingParams(), "v")
           for n in ("a.png", "b.png", "c.png")}
    assert key["a.png"] == key["b.png"] != key["c.png"]


def test_sampled_answers_do_not_depend_on_batching(tiny_llama):
    from tunelab.teachers.transformers_teacher import TransformersTeacher

    teacher = TransformersTeacher(tiny_llama, dtype="float32", batch_size=5)
    requests = [TeacherRequest(prompt=p) for p in ("Name a colour.", "Give me three tips for sleeping well tonight.",
                                                   "Hi", "Translate 'cat' into French, please.", "Why?")]
    params = SamplingParams(max_new_tokens=12, temperature=1.0, seed=4)

    def texts(batch_size, subset):
        teacher.batch_size = batch_size
        out = {}
        for group in teacher.answer([requests[i] for i in subset], params):
            out.update({subset[j]: r.text for j, r in group})
        return out

    together = texts(5, [0, 1, 2, 3, 4])
    assert texts(2, [3, 1, 4]) == {i: together[i] for i in (3, 1, 4)}
    assert texts(1, [2]) == {2: together[2]}
    assert len(set(together.values())) > 1  # sampling happened


def test_a_cache_line_cut_by_a_kill_is_dropped_and_the_next_append_is_clean(tmp_path):
    path = tmp_path / "c.jsonl"
    with MockServer() as server:
        teacher = OpenAICompatibleTeacher("m", server.base_url)
        with RequestCache(path) as cache:
            run_requests(teacher, mixed_requests(2), SamplingParams(), cache, template_version="v")
        with path.open("a") as f:
            f.write('{"key": "half-writ')
        with RequestCache(path) as cache:
            assert len(cache) == 2
            run_requests(teacher, mixed_requests(4), SamplingParams(), cache, template_version="v")
    assert len(path.read_text().splitlines()) == 4 and len(RequestCache(path, read_only=True)) == 4


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_teacher_loads_quantized_with_bitsandbytes(tiny_llama, quantization):
    from tunelab.teachers.transformers_teacher import TransformersTeacher

    teacher = TransformersTeacher(tiny_llama, dtype="float32", quantization=quantization)
    assert getattr(teacher.model, f"is_loaded_in_{quantization}")
    [[(i, answer)]] = list(teacher.answer([TeacherRequest(prompt="Name a colour.")], SamplingParams(max_new_tokens=4)))
    assert i == 0 and 1 <= answer.completion_tokens <= 4


def test_missing_vllm_is_a_clear_config_error():
    import importlib.util

    if importlib.util.find_spec("vllm"):
        pytest.skip("vllm is installed here")
    from tunelab.generation.settings import TeacherConfig
    from tunelab.teachers import make_teacher

    with pytest.raises(ConfigError, match="vllm serve"):
        make_teacher(TeacherConfig(teacher="m", teacher_backend="vllm").spec())


def test_cpu_generation_autocasts_to_bf16_only_where_it_is_native_and_asked_for_by_auto(monkeypatch, tiny_llama):
    import contextlib

    import torch

    from tunelab import models

    from tunelab.models import load_causal_lm

    model = load_causal_lm(tiny_llama, dtype="float32")
    monkeypatch.setattr(models, "native_bf16_cpu", lambda: True)
    assert isinstance(models.cpu_autocast(model, "auto"), torch.autocast)
    assert isinstance(models.cpu_autocast(model, "float32"), contextlib.nullcontext)  # an explicit dtype is kept
    monkeypatch.setattr(models, "native_bf16_cpu", lambda: False)
    assert isinstance(models.cpu_autocast(model, "auto"), contextlib.nullcontext)  # emulated bf16 is slower

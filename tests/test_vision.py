"""Vision-language models offline: tiny random LLaVA 1.5 / 1.6 builds and the in-process LLaVA-NeXT teacher."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tunelab.teachers.base import SamplingParams, TeacherRequest
from tunelab.teachers.images import user_message


@pytest.fixture(scope="module")
def tiny_llava_next(tunelab_cache) -> str:
    from tunelab.models import resolve_model

    return resolve_model("tunelab:tiny-llava-next")


@pytest.fixture(scope="module")
def teacher(tiny_llava_next):
    from tunelab.teachers.llava_teacher import LlavaNextTeacher

    return LlavaNextTeacher("tunelab:tiny-llava-next", dtype="float32", batch_size=4)


@pytest.fixture
def images(tmp_path) -> list[str]:
    """Two random PNGs of different sizes and aspect ratios (different LLaVA-NeXT tilings)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for name, (w, h) in (("wide.png", (40, 30)), ("square.png", (64, 64))):
        path = tmp_path / name
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _answers(teacher, requests, params) -> list:
    got = {}
    for group in teacher.answer(requests, params):
        for index, response in group:
            assert index not in got
            got[index] = response
    assert sorted(got) == list(range(len(requests)))
    return [got[i] for i in range(len(requests))]


def test_tiny_llava_next_processor_expands_image_tokens(tiny_llava_next, images):
    from transformers import AutoProcessor

    from tunelab.models import is_tiny_random
    from tunelab.teachers.images import load_image

    assert is_tiny_random(tiny_llava_next)
    processor = AutoProcessor.from_pretrained(tiny_llava_next)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == "<s>[INST] <image>\nWhat is this? [/INST]"
    processor.tokenizer.padding_side = "left"
    inputs = processor(images=[load_image(p) for p in images], text=[prompt, prompt], padding=True,
                       return_tensors="pt", add_special_tokens=False)
    assert inputs["image_sizes"].tolist() == [[30, 40], [64, 64]]
    image_tokens = (inputs["input_ids"] == processor.image_token_id).sum(dim=1).tolist()
    # Base tile (16 patches) plus the unpadded high-resolution grid and its newline features: size-dependent.
    assert image_tokens[0] != image_tokens[1] and min(image_tokens) > 16


def test_llava_next_teacher_answers_mixed_batch_deterministically(teacher, images):
    params = SamplingParams(max_new_tokens=8, temperature=1.0, seed=3)
    requests = [
        TeacherRequest(messages=[user_message("Describe the picture.", [images[0]])]),
        TeacherRequest(messages=[user_message("Compare these two.", images)]),
        TeacherRequest(messages=[{"role": "system", "content": "Be brief."},
                                 user_message("What colour dominates?", [images[1]])]),
        TeacherRequest(messages=[user_message("Write a haiku about rain.")]),
        TeacherRequest(prompt="Once upon a time"),
    ]
    answers = _answers(teacher, requests, params)
    for answer in answers:
        assert 1 <= answer.completion_tokens <= 8
        assert answer.finish_reason in ("stop", "length")
        assert answer.finish_reason == "stop" or answer.completion_tokens == 8
        assert answer.prompt_tokens > 0
    # The image tokens count towards the prompt: the two-image request reads more than the text-only one.
    assert answers[1].prompt_tokens > answers[0].prompt_tokens > answers[3].prompt_tokens

    # Per-request seeds: alone or in another batch, the same answer.
    for i in (1, 3):
        alone = _answers(teacher, [requests[i]], params)[0]
        assert alone.text == answers[i].text and alone.completion_tokens == answers[i].completion_tokens

    greedy = SamplingParams(max_new_tokens=8, temperature=0.0)
    first, second = _answers(teacher, requests[:2], greedy), _answers(teacher, requests[:2], greedy)
    assert [a.text for a in first] == [a.text for a in second]


def test_tiny_llava_builds_and_trains(tunelab_cache, images):
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from tunelab.models import resolve_model
    from tunelab.teachers.images import load_image

    path = resolve_model("tunelab:tiny-llava")
    processor = AutoProcessor.from_pretrained(path)
    model = LlavaForConditionalGeneration.from_pretrained(path, use_safetensors=True)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Noise."}]},
    ]
    text = processor.apply_chat_template(messages, tokenize=False)
    assert text == "<s>USER: <image>\nWhat is this? ASSISTANT: Noise.</s>"
    inputs = processor(images=[load_image(images[0])], text=[text], return_tensors="pt", add_special_tokens=False)
    assert (inputs["input_ids"] == processor.image_token_id).sum().item() == 16  # (32 / 8) ** 2 patches, CLS dropped
    labels = inputs["input_ids"].masked_fill(inputs["input_ids"] == processor.image_token_id, -100)
    loss = model(**inputs, labels=labels).loss
    assert math.isfinite(loss.item())
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

"""The vision loop end to end on tiny random LLaVA models: image posts -> a LLaVA-NeXT teacher writes QA
(canned text for the answers a random model cannot write) -> a LLaVA 1.5 student learns it with its
projector -> inference.py answers held-aside image records -> evaluate scores the answers as text and
the verdicts as classification. Image references stay relative to the images root all the way."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tunelab.stages import evaluate, finetune, generate, infer
from tunelab.teachers import factory

JIGSAW = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
WORDS = ["harbour", "lantern", "meadow", "quartz", "saddle", "thistle", "walnut", "velvet", "cobalt", "ember",
         "fjord", "garnet", "hazel", "juniper", "kestrel", "lilac", "marble", "nectar"]
FAST = ["--max_steps", "3", "--save_strategy", "no", "--report_to", "none", "--learning_rate", "1e-2",
        "--logging_steps", "1", "--per_device_train_batch_size", "4", "--lora_r", "4", "--lora_alpha", "8",
        "--lora_dropout", "0", "--activation_checkpointing", "false", "--seed", "0", "--disable_tqdm", "true"]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def canned_answer(prompt: str) -> str:
    """A schema-valid QA answer about the post whose words are in the prompt (a random model writes no JSON)."""
    i = next(k for k in range(6) if f"post number {k} " in prompt)
    return json.dumps({
        "qa": [{"question": f"What does post {i} show?", "answer": f"Noise and the word {WORDS[3 * i]}."},
               {"question": f"Is post {i} about {WORDS[3 * i + 1]}?", "answer": f"Yes, {WORDS[3 * i + 1]}."}],
        "verdicts": [{"category": c, "violates": c == JIGSAW[i % 3] and i % 2 == 0, "rationale": f"Post {i}: {c}."}
                     for c in JIGSAW]})


@pytest.fixture
def canned_llava_next(monkeypatch):
    """The tiny LLaVA-NeXT teacher in process (it reads every image and generates), with its text replaced."""
    from tunelab.teachers.llava_teacher import LlavaNextTeacher

    class CannedLlavaNext(LlavaNextTeacher):
        def generate_batch(self, requests, params):
            responses = super().generate_batch(requests, params)
            for request, response in zip(requests, responses, strict=True):
                assert [p["type"] for p in request.messages[0]["content"]] == ["image_url", "text"]
                response.text = canned_answer(request.messages[0]["content"][1]["text"])
                response.finish_reason = "stop"
            return responses

    built = factory.BACKENDS["llava_next"]
    monkeypatch.setitem(factory.BACKENDS, "llava_next", lambda spec: CannedLlavaNext(
        spec.model, dtype="float32", batch_size=spec.batch_size))
    yield
    assert factory.BACKENDS["llava_next"] is not built  # still patched: the run used the canned teacher


def test_image_posts_to_scored_llava_student(tmp_path, canned_llava_next):
    from PIL import Image
    from safetensors.torch import load_file
    from transformers import LlavaForConditionalGeneration

    from tunelab.models import resolve_model

    # 1. Posts about generated noise images, under an images root with a subfolder.
    images = tmp_path / "images"
    (images / "memes").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["id,text,image"]
    for i, (w, h) in enumerate([(40, 30), (32, 32), (48, 64), (36, 36), (64, 40), (30, 50)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / "memes" / f"m{i}.png")
        rows.append(f"p{i},post number {i} {' '.join(WORDS[3 * i:3 * i + 3])},memes/m{i}.png")
    (tmp_path / "posts.csv").write_text("\n".join(rows) + "\n")

    # 2. generate: moderation QA by the tiny LLaVA-NeXT teacher; image paths relative to the root.
    gen = tmp_path / "gen"
    stats = generate.generate([
        "--config", "demo", "--output_dir", str(gen), "--tasks", "moderation_qa", "--qa_template", "moderation_qa",
        "--qa_request", "chat", "--teacher", "tunelab:tiny-llava-next", "--teacher_backend", "llava_next",
        "--max_new_tokens", "4", "--qa_questions", "2", "--posts", str(tmp_path / "posts.csv"),
        "--posts_text_column", "text", "--posts_image_column", "image", "--images_root", str(images)])["moderation_qa"]
    assert stats["kept_posts"] == 6 and stats["pairs"] == 18
    chat = read_jsonl(gen / "moderation_qa.chat.jsonl")
    alpaca = json.loads((gen / "moderation_qa.alpaca.json").read_text())
    assert {r["image"] for r in alpaca} == {f"memes/m{i}.png" for i in range(6)}
    assert {r["messages"][0]["content"][0]["image_url"]["url"] for r in chat} == {f"memes/m{i}.png" for i in range(6)}
    assert [r["image"] for r in read_jsonl(gen / "moderation_qa.jsonl")] == [f"memes/m{i}.png" for i in range(6)]
    assert all(r["image"] == f"memes/m{r['id'][1]}.png" for r in read_jsonl(gen / "moderation_qa.completion.jsonl"))

    # Posts p0-p3 train the student; p4 and p5 are held aside.
    held = ("p4:", "p5:")
    train = gen / "train.chat.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in chat if not r["id"].startswith(held)))
    heldout_chat = gen / "heldout.chat.jsonl"
    heldout_chat.write_text("".join(json.dumps(r) + "\n" for r in chat if r["id"].startswith(held)))
    # The held-aside verdicts as Alpaca records, in the images root itself: the default root finds them.
    verdicts = images / "heldout_verdicts.alpaca.json"
    verdicts.write_text(json.dumps([r for r in alpaca if r["id"].startswith(held) and r["id"].endswith(":verdict")]))

    # 3. finetune: LoRA on the language model, the projector trained in full beside it.
    student = tmp_path / "student"
    summary = finetune.finetune(["--base", "tunelab:tiny-llava", "--data", str(train), "--images_root", str(images),
                                 "--train_projector", "--output_dir", str(student), *FAST])
    assert summary["examples"] == summary["image_examples"] == 12 and summary["skipped_records"] == 0
    info = json.loads((student / "tunelab_model.json").read_text())
    assert info["task"] == "vision_sft" and info["train_projector"] is True
    assert json.loads((student / "adapter_config.json").read_text())["modules_to_save"] == ["multi_modal_projector"]
    saved = load_file(student / "adapter_model.safetensors")
    base = dict(LlavaForConditionalGeneration.from_pretrained(resolve_model("tunelab:tiny-llava")).named_parameters())
    projector = {k: v for k, v in saved.items() if "multi_modal_projector" in k}
    assert len(projector) == 4 and not any("vision_tower" in k for k in saved)
    for key, value in projector.items():  # base_model.model.model.multi_modal_projector.linear_1.weight, ...: trained
        assert not torch.equal(base["model.multi_modal_projector." + key.split("multi_modal_projector.")[1]], value)

    # 4. inference: the adapter answers the held-aside chat records with their images.
    answers = tmp_path / "answers"
    infer.infer(["--model", str(student), "--data", str(heldout_chat), "--images_root", str(images),
                 "--max_new_tokens", "6", "--dtype", "float32", "--output_dir", str(answers)])
    rows = read_jsonl(answers / "predictions.jsonl")
    assert len(rows) == 6 and all(r["adapter"] == str(student) and r["model"] == "tunelab:tiny-llava" for r in rows)
    assert [r["image"] for r in rows] == [f"memes/m{r['id'][1]}.png" for r in rows]
    assert all(r["prompt_tokens"] > 16 for r in rows)  # each read its image's 16 tokens and the text
    by_id = {r["id"]: r for r in chat}
    assert all(r["reference"] == by_id[r["id"]]["messages"][1]["content"] for r in rows)

    # 5. evaluate: text scores of every answer; the verdicts scored as classification.
    scores = evaluate.score(["--task", "text", "--predictions", str(answers / "predictions.jsonl"),
                             "--allow_empty_predictions", "true", "--bootstrap_resamples", "50",
                             "--output_dir", str(tmp_path / "text_scores")])
    assert scores["examples"] == 6 and {"bleu", "rouge_l_f1", "bertscore_f1"} <= set(scores["runs"][0])
    per_example = read_jsonl(tmp_path / "text_scores/per_example.jsonl")
    assert len(per_example) == 6

    verdict_answers = tmp_path / "verdict_answers"
    infer.infer(["--model", str(student), "--data", str(verdicts), "--max_new_tokens", "6", "--dtype", "float32",
                 "--output_dir", str(verdict_answers)])
    verdict_rows = read_jsonl(verdict_answers / "predictions.jsonl")
    assert [r["image"] for r in verdict_rows] == ["memes/m4.png", "memes/m5.png"]
    labels = evaluate.score(["--task", "classification", "--predictions", str(verdict_answers / "predictions.jsonl"),
                             "--taxonomy", "jigsaw", "--allow_empty_predictions", "true", "--plots", "false",
                             "--bootstrap_resamples", "0", "--output_dir", str(tmp_path / "verdict_scores")])
    assert labels["examples"] == 2 and labels["source"] == "llm_answers"
    per_verdict = read_jsonl(tmp_path / "verdict_scores/per_example.jsonl")
    assert [r["reference"] for r in per_verdict] == [["severe_toxic"], []]  # the verdict's label line, not its reasons


def test_image_records_and_models_that_do_not_fit_are_refused_before_loading(tmp_path):
    """A text-only model given image records, a LLaVA given none, and an image outside the root: one line
    naming the file and the record, before any weights load and before the output folder appears."""
    from PIL import Image

    from tunelab.errors import ConfigError, RecordError

    Image.new("RGB", (20, 20), (10, 200, 30)).save(tmp_path / "a.png")
    with_image = tmp_path / "with_image.alpaca.json"
    with_image.write_text(json.dumps([{"id": "t0", "instruction": "Describe it.", "input": "", "output": "Green."},
                                      {"id": "i1", "instruction": "Describe it.", "input": "", "output": "Green.",
                                       "image": "a.png"}]))
    text_only = tmp_path / "text.alpaca.json"
    text_only.write_text(json.dumps([{"id": "t0", "instruction": "Say hi.", "input": "", "output": "Hi."}]))
    out = ["--output_dir", str(tmp_path / "out")]
    with pytest.raises(ConfigError, match=r"with_image.alpaca.json: record 'i1' has an image, and tunelab:tiny-llama "
                                          r"is a text-only model \(llama\)"):
        infer.infer(["--model", "tunelab:tiny-llama", "--data", str(with_image), *out])
    with pytest.raises(ConfigError, match=r"text.alpaca.json: no record has an image .* tunelab:tiny-llava is a LLaVA"):
        infer.infer(["--model", "tunelab:tiny-llava", "--data", str(text_only), *out])
    escaping = tmp_path / "sub" / "heldout.chat.jsonl"
    escaping.parent.mkdir()
    escaping.write_text(json.dumps({"id": "e0", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "../a.png"}},
                                     {"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": "A square."}]}) + "\n")
    with pytest.raises(RecordError, match=r"heldout.chat.jsonl:1: record 'e0': image path '../a.png' escapes"):
        infer.infer(["--model", "tunelab:tiny-llava", "--data", str(escaping), *out])
    escaping.write_text(escaping.read_text().replace("../a.png", "a.png"))
    with pytest.raises(RecordError, match=r"record 'e0': image 'a.png' not found under .*sub \(set --images_root"):
        infer.infer(["--model", "tunelab:tiny-llava", "--data", str(escaping), *out])
    # With the root that holds the image, the record is answered and its reference kept as written.
    infer.infer(["--model", "tunelab:tiny-llava", "--data", str(escaping), "--images_root", str(tmp_path),
                 "--max_new_tokens", "3", "--dtype", "float32", *out])
    assert read_jsonl(tmp_path / "out/predictions.jsonl")[0]["image"] == "a.png"
    # A served model gets the image inline in its chat turn; a text template cannot carry it.
    from tunelab.teachers.mock_server import MockServer

    bodies = []
    with MockServer(answer=lambda body: bodies.append(body) or "served") as server:
        served = ["--model", "served-llava", "--backend", "openai", "--base_url", server.base_url,
                  "--data", str(escaping), "--images_root", str(tmp_path)]
        infer.infer([*served, "--output_dir", str(tmp_path / "served")])
        with pytest.raises(ConfigError, match=r"record 'e0' has an image, and the alpaca_student prompt format"):
            infer.infer([*served, "--template", "alpaca_student", "--output_dir", str(tmp_path / "other")])
    parts = bodies[0]["messages"][0]["content"]
    assert parts[0]["image_url"]["url"].startswith("data:image/png;base64,") and parts[1]["text"] == "What is it?"
    assert read_jsonl(tmp_path / "served/predictions.jsonl")[0]["image"] == "a.png"
    with pytest.raises(ConfigError, match="template 'alpaca_student': a LLaVA student is prompted"):
        infer.infer(["--model", "tunelab:tiny-llava", "--data", str(escaping), "--images_root", str(tmp_path),
                     "--template", "alpaca_student", "--output_dir", str(tmp_path / "other")])
    assert not (tmp_path / "other").exists()

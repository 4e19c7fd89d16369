"""The LLaVA student: image QA records as the generate stage writes them, the label mask, what
training may change (LoRA on the language model; the projector only with train_projector; the vision
tower never), QLoRA on CPU, and bad images skipped and listed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from tunelab.errors import ConfigError, RecordError
from tunelab.generation.moderation_qa import pair_to_chat

FAST = ["--max_steps", "3", "--save_strategy", "no", "--report_to", "none", "--learning_rate", "1e-2",
        "--logging_steps", "1", "--per_device_train_batch_size", "4", "--lora_r", "4", "--lora_alpha", "8",
        "--lora_dropout", "0", "--activation_checkpointing", "false", "--seed", "0"]
IMAGE_TOKENS = 16  # the tiny tower: 32x32 input, 8x8 patches
# llava-hf/llava-1.5-7b-hf's chat template: no BOS (left to the tokenizer), no EOS after the answer.
LLAVA_HF_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_llava(tunelab_cache) -> str:
    from tunelab.models import resolve_model

    return resolve_model("tunelab:tiny-llava")


@pytest.fixture(scope="module")
def processor(tiny_llava):
    from tunelab.training.vision import load_processor

    return load_processor(tiny_llava)


def _save_images(folder, specs) -> dict:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = {}
    for name, (w, h), mode in specs:
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(folder / name)
        paths[name] = folder / name
    return paths


def _chat(pid: str, question: str, answer: str, image=None) -> dict:
    """A record as the generate stage's moderation_qa.chat.jsonl holds it (which writes paths relative to
    the images root; absolute ones under the root work too)."""
    pair = {"id": pid, "instruction": question, "input": "A post about the weekend.", "output": answer}
    if image is not None:
        pair["image"] = str(image)
    return pair_to_chat(pair) | {"provenance": {"teacher": "fake"}}


def _write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


@pytest.fixture(scope="module")
def qa_file(tmp_path_factory):
    """A generate output folder: QA pairs about generated images (absolute paths; one relative to the
    default root, the file's folder), a text-only pair, and two records whose image is missing or not an image."""
    out = tmp_path_factory.mktemp("generate")
    images = _save_images(out / "images", [("wide.png", (40, 30), "RGB"), ("tall.png", (20, 50), "L"),
                                           ("square.png", (32, 32), "RGBA"), ("photo.jpg", (64, 48), "RGB")])
    (out / "images" / "broken.png").write_bytes(b"not an image")
    records = [_chat(f"{name}:qa{i}", f"Question {i} about the {name} picture?", f"Answer {i} for {name}.", path)
               for name, path in images.items() for i in range(2)]
    records.append(_chat("rel:qa0", "What does the relative path show?", "A relative image.", "images/wide.png"))
    records.append(_chat("text:qa0", "Is this post about the weekend?", "Yes, it is."))
    records.append(_chat("missing:qa0", "Where is it?", "Nowhere.", out / "images" / "missing.png"))  # line 11
    records.append(_chat("broken:qa0", "What is it?", "Noise.", out / "images" / "broken.png"))  # line 12
    path = out / "moderation_qa.chat.jsonl"
    _write_jsonl(path, records)
    return path


class Capture(TrainerCallback):
    """Keeps the trained model, the LoRA weights before training and the LoRA gradients at each step."""

    def __init__(self):
        self.model, self.optimizer, self.lora_before, self.grads = None, None, {}, []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.model, self.optimizer = model, kwargs.get("optimizer")
        self.lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads.append({n: p.grad.detach().abs().sum().item() for n, p in model.named_parameters()
                           if "lora_" in n and p.grad is not None})


def _finetune(argv, capture=None) -> dict:
    from tunelab.stages.finetune import finetune

    return finetune(argv, callbacks=[capture] if capture else None)


def _base_weights(tiny_llava) -> dict:
    from transformers import LlavaForConditionalGeneration

    return dict(LlavaForConditionalGeneration.from_pretrained(tiny_llava).named_parameters())


def test_lora_trains_the_language_model_only_and_saves_a_vision_student(tiny_llava, qa_file, tmp_path):
    capture = Capture()
    out = tmp_path / "student"
    summary = _finetune(["--base", "tunelab:tiny-llava", "--data", str(qa_file), "--output_dir", str(out), *FAST], capture)
    assert summary["steps"] == 3 and summary["examples"] == 10 and summary["image_examples"] == 9
    assert summary["skipped_records"] == 2

    model = capture.model
    lora = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert lora and all(".language_model." in n for n in lora)
    assert all(not torch.equal(capture.lora_before[n], p.detach()) for n, p in lora.items())
    assert not [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    base = _base_weights(tiny_llava)
    frozen = {n.removeprefix("base_model.model."): p for n, p in model.named_parameters()
              if ".vision_tower." in n or ".multi_modal_projector." in n}
    assert len(frozen) == len([n for n in base if "vision_tower" in n or "multi_modal_projector" in n])
    assert all(torch.equal(base[n], p.detach()) for n, p in frozen.items())

    assert (out / "adapter_model.safetensors").exists() and (out / "processor_config.json").exists()
    info = json.loads((out / "tunelab_model.json").read_text())
    assert info | {"base_path": None} == {
        "task": "vision_sft", "base": "tunelab:tiny-llava", "base_path": None, "model_type": "llava", "adapter": True,
        "quantization": "none", "template": "chat", "template_version": None, "tiny_random": True,
        "train_projector": False}
    skipped = [json.loads(line) for line in (out / "skipped_records.jsonl").read_text().splitlines()]
    assert [(s["file"], s["line"], s["id"]) for s in skipped] == [(str(qa_file), 11, "missing:qa0"),
                                                                 (str(qa_file), 12, "broken:qa0")]
    assert "not found" in skipped[0]["reason"] and "not a readable image" in skipped[1]["reason"]
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["inputs"]["data[0]"].startswith(str(qa_file))
    card = (out / "README.md").read_text()  # the model card, not the trainer's
    assert "`tunelab:tiny-llava`: a tiny random LLaVA 1.5" in card and "pipeline_tag: image-text-to-text" in card
    assert provenance["inputs"]["data[0]"].split(" sha256:")[1] in card and "| 12 |" in card
    assert "None" not in card and "More Information Needed" not in card and str(tiny_llava) not in card


def test_train_projector_trains_it_in_full_beside_lora_and_merge_and_inference_carry_it(tiny_llava, qa_file, tmp_path):
    """LLaVA's LoRA recipe: the projector trained in full (PEFT modules_to_save) at its own rate, the vision
    tower frozen; the adapter (safetensors) carries the projector, the merge folds it in and checks it on an
    image, and inference answers the same from the adapter folder and the merged folder."""
    from tunelab.stages import infer, merge

    capture = Capture()
    out = tmp_path / "student"
    _finetune(["--base", "tunelab:tiny-llava", "--data", str(qa_file), "--output_dir", str(out), "--train_projector",
               "--projector_learning_rate", "5e-3", *FAST], capture)
    model = capture.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n}
    assert trainable and all(".multi_modal_projector.modules_to_save." in n for n in trainable)
    rates = {round(g["initial_lr"], 6) for g in capture.optimizer.param_groups}
    assert rates == {0.01, 0.005}
    assert all(g["initial_lr"] == 5e-3 for g in capture.optimizer.param_groups
               if any(p is q for p in g["params"] for n, q in model.named_parameters() if n in trainable))
    base = _base_weights(tiny_llava)
    weights = {n: p.detach() for n, p in model.named_parameters()}
    tower = {n.removeprefix("base_model.model."): p for n, p in weights.items() if ".vision_tower." in n}
    assert tower and all(torch.equal(base[n], p) for n, p in tower.items())
    trained = {n.replace("base_model.model.", "").replace("modules_to_save.default.", ""): p
               for n, p in weights.items() if n in trainable}
    assert len(trained) == 4 and all(not torch.equal(base[n], p) for n, p in trained.items())
    info = json.loads((out / "tunelab_model.json").read_text())
    assert info["train_projector"] is True and not list(out.glob("*.bin"))

    merged = tmp_path / "merged"
    check = merge.merge(["--model", str(out), "--output_dir", str(merged), "--dtype", "float32"])["logits_check"]
    assert check["passed"] and check["sequences"] == 4  # three text sequences and one with an image
    from transformers import LlavaForConditionalGeneration

    reloaded = dict(LlavaForConditionalGeneration.from_pretrained(merged).named_parameters())
    assert all(torch.equal(reloaded[n], p) for n, p in trained.items())
    assert all(torch.equal(reloaded[n], base[n]) for n in tower)

    heldout = tmp_path / "heldout.chat.jsonl"
    heldout.write_text("".join(line + "\n" for line in qa_file.read_text().splitlines()[:3]))
    answers = {}
    for name, ref in (("adapter", out), ("merged", merged)):
        infer.infer(["--model", str(ref), "--data", str(heldout), "--images_root", str(qa_file.parent),
                     "--max_new_tokens", "5", "--dtype", "float32", "--output_dir", str(tmp_path / f"answers_{name}")])
        answers[name] = [json.loads(line) for line in (tmp_path / f"answers_{name}" / "predictions.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in answers["adapter"]] == [r["prediction"] for r in answers["merged"]]
    assert [r["image"] for r in answers["merged"]] == [json.loads(line)["messages"][0]["content"][0]["image_url"]["url"]
                                                      for line in heldout.read_text().splitlines()]


def test_train_projector_is_refused_for_text_students(tmp_path, project_root):
    from tunelab.stages.finetune import finetune

    data = str(project_root / "data/alpaca_sample.json")
    with pytest.raises(ConfigError, match="train_projector / projector_learning_rate apply to vision"):
        finetune(["--base", "tunelab:tiny-llama", "--data", data, "--output_dir", str(tmp_path / "t"),
                  "--train_projector", *FAST])
    with pytest.raises(ConfigError, match="train_projector is off"):
        finetune(["--base", "tunelab:tiny-llava", "--data", data, "--output_dir", str(tmp_path / "t"),
                  "--projector_learning_rate", "1e-4", *FAST])
    assert not (tmp_path / "t").exists()


def test_label_mask_is_the_answer_and_eos_never_prompt_image_or_padding(tiny_llava, processor, qa_file, tmp_path):
    from transformers import LlavaForConditionalGeneration

    from tunelab.training.arguments import TrainConfig
    from tunelab.training.vision import ChatFormat, build_vision_trainer, load_vision_examples

    examples = load_vision_examples([qa_file], ChatFormat(processor), bad_records="skip").examples
    args = TrainConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_length=256,
                       report_to="none", activation_checkpointing=False)
    trainer = build_vision_trainer(LlavaForConditionalGeneration.from_pretrained(tiny_llava), processor, examples,
                                   None, args)
    tok = processor.tokenizer
    assert tok.pad_token_id != tok.eos_token_id
    by_completion = {tuple(tok(ex["completion"], add_special_tokens=False)["input_ids"]): ex for ex in examples}
    seen = []
    for batch in trainer.get_train_dataloader():
        assert batch["pixel_values"].shape[0] == (batch["input_ids"] == processor.image_token_id).sum() // IMAGE_TOKENS
        for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
            real, real_labels = ids[mask.bool()].tolist(), labels[mask.bool()].tolist()
            start = next(i for i, label in enumerate(real_labels) if label != -100)
            answer = tuple(real[start:])
            example = by_completion[answer]  # exactly one example's answer tokens, up to the end
            assert real_labels[start:] == real[start:] and real[-1] == tok.eos_token_id
            assert all(label == -100 for label in real_labels[:start])
            # The prompt is the template's, each <image> expanded to the tower's feature count.
            prompt = []
            for t in tok(example["prompt"], add_special_tokens=False)["input_ids"]:
                prompt += [t] * (IMAGE_TOKENS if t == processor.image_token_id else 1)
            assert real[:start] == prompt and real[0] == tok.bos_token_id
            assert real.count(processor.image_token_id) == IMAGE_TOKENS * len(example["images"])
            assert processor.image_token_id not in real_labels
            assert all(label == -100 for label in labels[~mask.bool()].tolist())
            seen.append(example["id"])
    assert sorted(seen) == sorted(ex["id"] for ex in examples)


def test_chat_format_adds_bos_and_eos_the_llava_hf_template_leaves_out(tiny_llava):
    from tokenizers.processors import TemplateProcessing

    from tunelab.training.vision import ChatFormat, load_processor, to_hf_message

    processor = load_processor(tiny_llava)
    processor.chat_template = LLAVA_HF_TEMPLATE
    tok = processor.tokenizer
    tok._tokenizer.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)])
    record = _chat("p:qa0", "Is there a cat?", "No cat.", "/images/a.png")
    messages = [to_hf_message(m)[0] for m in record["messages"]]
    prompt, completion = ChatFormat(processor).render(messages)
    assert prompt == "<s>USER: <image>\nIs there a cat?\n\nA post about the weekend. ASSISTANT:"
    assert completion == " No cat.</s>"


def test_qlora_on_cpu_trains_the_adapter_through_evaluations(tiny_llava, qa_file, tmp_path):
    """4-bit language model (bitsandbytes on CPU), full-precision tower and projector; evaluations (no-grad
    forwards) between steps neither repack the 4-bit weights nor stop the LoRA gradients."""
    import bitsandbytes as bnb

    capture = Capture()
    summary = _finetune(["--base", "tunelab:tiny-llava", "--data", str(qa_file), "--output_dir", str(tmp_path / "q"),
                         "--quantization", "4bit", "--eval_split", "0.3", "--eval_strategy", "steps", "--eval_steps", "1",
                         *FAST], capture)
    assert summary["steps"] == 3 and summary["eval_examples"] == 3 and "best_eval_loss" in summary
    modules = dict(capture.model.named_modules())
    quantized = [n for n, m in modules.items() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized and all(".language_model." in n for n in quantized)
    assert any(".vision_tower." in n and isinstance(m, torch.nn.Linear) for n, m in modules.items())
    # No evaluation repacked the weights for the CPU inference kernel, whose backward is not autograd's.
    assert not any(modules[n].support_avx512bf16_for_cpu for n in quantized)
    assert not any(getattr(modules[n].weight.quant_state, "packing_format_for_cpu", False) for n in quantized)
    last = capture.grads[-1]  # step 3, after two evaluations
    assert len(capture.grads) == 3 and last and all(g > 0 for g in last.values())
    assert all(not torch.equal(capture.lora_before[n], p.detach())
               for n, p in capture.model.named_parameters() if "lora_" in n)
    info = json.loads((tmp_path / "q/tunelab_model.json").read_text())
    assert info["quantization"] == "4bit" and info["task"] == "vision_sft"


def test_bad_images_are_skipped_and_listed_or_stop_the_run(processor, tmp_path):
    from tunelab.training.vision import ChatFormat, load_vision_examples

    images = _save_images(tmp_path / "data" / "images", [("ok.png", (32, 32), "RGB")])
    outside = tmp_path / "elsewhere.png"  # outside the default root (the data file's folder)
    outside.write_bytes(images["ok.png"].read_bytes())
    path = tmp_path / "data" / "qa.chat.jsonl"
    _write_jsonl(path, [_chat("ok", "Q?", "A.", images["ok.png"]),
                        _chat("out", "Q?", "A.", outside),
                        _chat("url", "Q?", "A.", "http://example.com/a.png"),
                        _chat("gone", "Q?", "A.", "images/gone.png")])
    fmt = ChatFormat(processor)
    loaded = load_vision_examples([path], fmt, bad_records="skip")
    assert [ex["id"] for ex in loaded.examples] == ["ok"]
    assert [(s["line"], s["id"]) for s in loaded.skipped] == [(2, "out"), (3, "url"), (4, "gone")]
    assert "escapes the images root" in loaded.skipped[0]["reason"]
    with pytest.raises(RecordError, match=r"qa\.chat\.jsonl:2: .*escapes the images root"):
        load_vision_examples([path], fmt, bad_records="error")
    # A root that holds none of the images is a setting problem, not a few bad records.
    with pytest.raises(ConfigError, match="none of the images"):
        load_vision_examples([path], fmt, tmp_path / "data" / "empty", bad_records="skip")
    # A root that holds it makes the outside image usable.
    assert [ex["id"] for ex in load_vision_examples([path], fmt, tmp_path, bad_records="skip").examples] == ["ok", "out"]


def test_over_long_examples_are_truncated_or_dropped_and_image_filled_prompts_always_dropped(processor, tmp_path):
    from tunelab.training.vision import ChatFormat, example_lengths, fit_to_max_length, load_vision_examples

    images = _save_images(tmp_path / "images", [("a.png", (32, 32), "RGB")])
    path = tmp_path / "qa.chat.jsonl"
    _write_jsonl(path, [_chat("short", "Q?", "A.", images["a.png"]),
                        _chat("long", "Q?", "A long answer " * 20, images["a.png"])])
    examples = load_vision_examples([path], ChatFormat(processor)).examples
    (p_short, n_short), (p_long, n_long) = example_lengths(examples, processor)
    assert p_short == p_long > IMAGE_TOKENS and n_long > n_short
    skipped = []
    kept, over, no_answer = fit_to_max_length(examples, processor, n_short, "truncate", skipped)
    assert [ex["id"] for ex in kept] == ["short", "long"] and (over, no_answer) == (1, 0) and not skipped
    kept, over, _ = fit_to_max_length(examples, processor, n_short, "drop", skipped)
    assert [ex["id"] for ex in kept] == ["short"] and skipped[0]["line"] == 2
    kept, _, no_answer = fit_to_max_length(examples, processor, p_short, "truncate", [])
    assert kept == [] and no_answer == 2


def test_text_records_and_wrong_settings_are_refused_early(tmp_path, project_root):
    from tunelab.stages.finetune import finetune

    out = tmp_path / "x"
    with pytest.raises(RecordError, match="chat records"):
        finetune(["--base", "tunelab:tiny-llava", "--data", str(project_root / "data/alpaca_sample.json"),
                  "--output_dir", str(out), *FAST])
    with pytest.raises(ConfigError, match="not dataset folders or hub datasets"):
        finetune(["--base", "tunelab:tiny-llava", "--data", str(tmp_path), "--output_dir", str(out), *FAST])
    with pytest.raises(ConfigError, match="completion_only_loss"):
        finetune(["--base", "tunelab:tiny-llava", "--data", str(project_root / "data/alpaca_sample.json"),
                  "--output_dir", str(out), "--completion_only_loss", "false", *FAST])

"""A vision-language model in process: LLaVA 1.6 (LLaVA-NeXT) teachers and LLaVA 1.5 / 1.6 students.

`LlavaTeacher` answers with an already loaded model and its processor (inference.py wraps a tuned
LLaVA student in it); `LlavaNextTeacher` loads a LLaVA 1.6 teacher by name for the generate stage.
Requests are OpenAI-format chat messages whose user turns may carry local images. Images are
converted to the processor's `{"type": "image"}` parts, the processor's chat template renders the
prompt with one `<image>` placeholder per image, and the processor expands each placeholder to as
many tokens as the vision tower yields for that image (which, for LLaVA-NeXT, depends on the
image's size: hence `image_sizes`). Sampling is seeded per request, as for text teachers, so an
answer does not depend on its batch-mates.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..models import cpu_autocast, ensure_pad_token, hub_token, quantization_config, resolve_model, torch_dtype
from .base import BatchedTeacher, SamplingParams, TeacherRequest, TeacherResponse, request_seed
from .decoding import decode_answer, eos_token_ids, seeded_generation_kwargs
from .images import load_image, message_images


def processor_messages(request: TeacherRequest) -> list[dict[str, Any]]:
    """The request as HF content-part messages: image_url parts become `{"type": "image"}`.

    Every content becomes a list of parts (a prompt-only request is one user text turn), since the
    llava-hf chat templates index `message['content']` as a list even for text-only turns.
    """
    if request.messages is None:
        return [{"role": "user", "content": [{"type": "text", "text": request.prompt}]}]
    out = []
    for message in request.messages:
        content = message.get("content")
        if not isinstance(content, list):
            parts = [{"type": "text", "text": content or ""}]
        else:
            parts = []
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    parts.append({"type": "text", "text": part.get("text", "")})
                elif kind == "image_url":
                    parts.append({"type": "image"})
                else:
                    raise ConfigError(f"unsupported message content part {part!r}: use text and image_url parts")
        out.append({"role": message["role"], "content": parts})
    return out


class LlavaTeacher(BatchedTeacher):
    """A loaded LLaVA model (1.5 or 1.6) and its processor, batched and left-padded.

    `dtype` "auto" runs generation under bf16 autocast on CPUs that compute bf16 natively, as the
    text teachers do (`models.cpu_autocast`); other values leave the weights' own dtype.
    """

    def __init__(self, model, processor, *, name: str, batch_size: int = 4, dtype: str = "auto"):
        self.name = name
        self.batch_size = batch_size
        self.dtype = dtype
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        # Left padding: every continuation starts right after its own prompt.
        self.tokenizer.padding_side = "left"
        ensure_pad_token(self.tokenizer)
        if getattr(processor, "chat_template", None) is None and self.tokenizer.chat_template is None:
            raise ConfigError(f"{name} has no chat template; a LLaVA model is prompted with it")


    def _prompt(self, request: TeacherRequest) -> str:
        return self.processor.apply_chat_template(processor_messages(request), add_generation_prompt=True,
                                                  tokenize=False)

    def generate_batch(self, requests: Sequence[TeacherRequest], params: SamplingParams) -> list[TeacherResponse]:
        images = [[load_image(url) for url in message_images(r.messages)] if r.messages else [] for r in requests]
        prompts = [self._prompt(r) for r in requests]
        seeds = [request_seed(r, params) for r in requests]
        results: list[TeacherResponse | None] = [None] * len(requests)
        # The processor takes images for a whole batch or for none of it, so image and text-only
        # requests go in separate sub-batches; per-request seeds make the split invisible.
        for with_images in (True, False):
            idx = [i for i in range(len(requests)) if bool(images[i]) == with_images]
            if idx:
                outs = self._generate([prompts[i] for i in idx], [images[i] for i in idx],
                                      [seeds[i] for i in idx], params)
                for i, out in zip(idx, outs, strict=True):
                    results[i] = out
        return results  # type: ignore[return-value]

    def _generate(self, prompts: list[str], images: list[list], seeds: list[int],
                  params: SamplingParams) -> list[TeacherResponse]:
        import torch

        tokenizer = self.tokenizer
        flat_images = [image for row in images for image in row]
        # llava-hf templates leave BOS to the tokenizer; templates that write it themselves must not get two.
        bos = tokenizer.bos_token
        add_special = not (bos and all(p.startswith(bos) for p in prompts))
        inputs = self.processor(images=flat_images or None, text=prompts, padding=True, return_tensors="pt",
                                add_special_tokens=add_special)
        device = next(self.model.parameters()).device
        inputs = inputs.to(device)
        if "pixel_values" in inputs:  # match the vision tower's dtype (bf16/fp16 teachers)
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        kwargs = seeded_generation_kwargs(params, tokenizer, seeds, device)
        with torch.no_grad(), cpu_autocast(self.model, self.dtype):
            out = self.model.generate(**inputs, **kwargs)
        eos_ids = eos_token_ids(self.model, tokenizer)
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()  # image tokens included: what the model read
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        answers = [decode_answer(new_tokens[row].tolist(), tokenizer, eos_ids, params, int(prompt_lengths[row]))
                   for row in range(len(prompts))]
        return [TeacherResponse(a.text, a.finish_reason, a.prompt_tokens, a.completion_tokens) for a in answers]


class LlavaNextTeacher(LlavaTeacher):
    """LLaVA 1.6 (e.g. `llava-hf/llava-v1.6-34b-hf`, or `tunelab:tiny-llava-next`), loaded by name."""

    def __init__(self, model: str, *, dtype: str = "auto", device_map: str | None = None, batch_size: int = 4,
                 quantization: str = "none", trust_remote_code: bool = False):
        from transformers import AutoProcessor, LlavaNextForConditionalGeneration

        self.path = resolve_model(model)
        processor = AutoProcessor.from_pretrained(self.path, trust_remote_code=trust_remote_code, token=hub_token())
        if getattr(processor, "chat_template", None) is None and processor.tokenizer.chat_template is None:
            raise ConfigError(f"{model} has no chat template; a LLaVA teacher renders prompts with it")
        compute_dtype = dtype if dtype in ("bfloat16", "float16", "float32") else "bfloat16"
        kwargs: dict[str, Any] = dict(dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code,
                                      use_safetensors=True, token=hub_token())
        if device_map:
            kwargs["device_map"] = device_map
        quant = quantization_config(quantization, compute_dtype)
        if quant is not None:
            kwargs["quantization_config"] = quant
        loaded = LlavaNextForConditionalGeneration.from_pretrained(self.path, **kwargs)
        loaded.eval()
        super().__init__(loaded, processor, name=model, batch_size=batch_size, dtype=dtype)


def load_student_processor(student: str | Path, base: str, *, trust_remote_code: bool = False):
    """A LLaVA student's processor: its own (finetune and merge save it), else its base's."""
    from transformers import AutoProcessor

    for source in dict.fromkeys((str(student), str(base))):
        try:
            processor = AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code, token=hub_token())
        except (OSError, ValueError, TypeError):
            continue
        if hasattr(processor, "image_processor") and processor.chat_template:
            ensure_pad_token(processor.tokenizer)
            return processor
    raise ConfigError(f"{student}: no image processor with a chat template in the student folder or its base {base}")


def load_llava_student(base: str, adapter: str | None, model_type: str, *, dtype: str = "auto",
                       trust_remote_code: bool = False, vocab_size: int | None = None):
    """A LLaVA 1.5 / 1.6 base (or merged student) for generation, with its LoRA adapter folded into the
    weights in memory (a trained projector, PEFT's modules_to_save, replaces the base's). The files on
    disk are never touched; `vocab_size` (the student's tokenizer) grows the embeddings when training
    added a pad token."""
    import transformers

    from ..models import VISION_LANGUAGE_CLASSES, merged_for_generation, require_safetensors_adapter

    if model_type not in VISION_LANGUAGE_CLASSES:
        raise ConfigError(f"{base} is a {model_type!r} model, not a LLaVA ({sorted(VISION_LANGUAGE_CLASSES)})")
    if adapter:
        require_safetensors_adapter(adapter)  # before any weights load
    cls = getattr(transformers, VISION_LANGUAGE_CLASSES[model_type])
    model = cls.from_pretrained(base, dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code,
                                use_safetensors=True, token=hub_token())
    if vocab_size and vocab_size > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(vocab_size)
    if adapter:
        model = merged_for_generation(model, adapter)
    else:
        model.requires_grad_(True)  # as merged_for_generation leaves it: autocast then caches its bf16 weights
    model.eval()
    return model

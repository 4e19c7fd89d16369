"""Any causal LM in process through transformers: batched, left-padded, length-sorted, optionally 4/8-bit."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError
from ..models import cpu_autocast, load_causal_lm, load_tokenizer, quantization_config, resolve_model
from .base import BatchedTeacher, SamplingParams, TeacherRequest, TeacherResponse, request_seed
from .decoding import generate_texts

class TransformersTeacher(BatchedTeacher):
    def __init__(self, model: str, *, dtype: str = "auto", device_map: str | None = None, batch_size: int = 8,
                 quantization: str = "none", trust_remote_code: bool = False, chat_template: bool = True):
        self.name = model
        self.batch_size = batch_size
        self.path = resolve_model(model)
        self.tokenizer = load_tokenizer(self.path, trust_remote_code=trust_remote_code, padding_side="left")
        compute_dtype = dtype if dtype in ("bfloat16", "float16", "float32") else "bfloat16"
        self.model = load_causal_lm(self.path, dtype=dtype, device_map=device_map, trust_remote_code=trust_remote_code,
                                    quantization_config=quantization_config(quantization, compute_dtype))
        self.model.eval()
        self.dtype = dtype
        self.use_chat_template = chat_template and self.tokenizer.chat_template is not None

    def _text(self, request: TeacherRequest) -> tuple[str, bool]:
        """The prompt text, and whether special tokens still need adding."""
        if request.messages is not None:
            if not self.use_chat_template:
                raise ConfigError(f"{self.name} has no chat template; send a prompt instead of messages")
            if any(isinstance(m.get("content"), list) for m in request.messages):
                raise ConfigError(f"{self.name} is a text model; image posts need a vision teacher "
                                  "(teacher_backend: llava_next, or an HTTP endpoint serving one)")
            text = self.tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
            return text, False  # the template writes BOS itself
        return request.prompt, True

    def generate_batch(self, requests: Sequence[TeacherRequest], params: SamplingParams) -> list[TeacherResponse]:
        texts = [self._text(r) for r in requests]
        seeds = [request_seed(r, params) for r in requests]
        # Chat-template prompts already carry BOS; raw prompts get it from the tokenizer.
        results: list[TeacherResponse | None] = [None] * len(requests)
        for add_special in (True, False):
            idx = [i for i, (_, add) in enumerate(texts) if add == add_special]
            if not idx:
                continue
            with cpu_autocast(self.model, self.dtype):
                outs = generate_texts(self.model, self.tokenizer, [texts[i][0] for i in idx], params,
                                      add_special_tokens=add_special, batch_size=len(idx), progress=False,
                                      seeds=[seeds[i] for i in idx])
            for i, out in zip(idx, outs, strict=True):
                results[i] = TeacherResponse(out.text, out.finish_reason, out.prompt_tokens, out.completion_tokens)
        return results  # type: ignore[return-value]

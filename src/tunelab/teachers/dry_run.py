"""Prompt-token counts for `--dry_run`, from the teacher's tokenizer alone (no weights are loaded)."""

from __future__ import annotations

from ..errors import ConfigError
from .base import TeacherRequest

CHARS_PER_TOKEN = 4  # the usual rule of thumb for English with Llama/GPT tokenizers


class TokenCounter:
    """Counts with `teacher_tokenizer`, else the teacher's own tokenizer, else estimates from characters."""

    def __init__(self, cfg):
        from ..models import load_tokenizer, resolve_model

        self.tokenizer = None
        missing = ""
        ref = cfg.teacher_tokenizer or (cfg.teacher if cfg.teacher_backend != "openai" else None)
        if ref:
            try:
                path = resolve_model(ref)
                if cfg.teacher_backend == "llava_next":
                    from transformers import AutoProcessor

                    self.tokenizer = AutoProcessor.from_pretrained(path, trust_remote_code=cfg.trust_remote_code).tokenizer
                else:
                    self.tokenizer = load_tokenizer(path, trust_remote_code=cfg.trust_remote_code)
            except (OSError, ValueError, ConfigError):  # offline, gated or unknown: fall back to an estimate
                self.tokenizer = None
                missing = f" (the tokenizer of {ref} could not be loaded; --teacher_tokenizer names another)"
        self.method = (f"tokenizer of {ref}" if self.tokenizer is not None
                       else f"estimate: characters / {CHARS_PER_TOKEN}{missing}")

    def _text(self, request: TeacherRequest) -> str:
        if request.prompt is not None:
            return request.prompt
        messages = [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str) else
                     " ".join(p.get("text", "") for p in m["content"] if isinstance(p, dict))}
                    for m in request.messages]
        if self.tokenizer is not None and self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n".join(m["content"] for m in messages)

    def count(self, request: TeacherRequest) -> int:
        """Text tokens of the prompt; image tokens depend on the server's vision encoder and are not counted."""
        text = self._text(request)
        if self.tokenizer is None:
            return max(1, len(text) // CHARS_PER_TOKEN)
        return len(self.tokenizer(text, add_special_tokens=request.prompt is not None)["input_ids"])

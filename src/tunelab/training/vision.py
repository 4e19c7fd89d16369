"""QLoRA / LoRA SFT of a LLaVA student on image QA pairs (vision tower frozen)."""

from __future__ import annotations

from ..errors import ConfigError


def finetune_vision(ctx) -> dict:
    raise ConfigError("vision-language students are not supported yet")

"""QLoRA / LoRA SFT of a LLaVA student on image QA pairs (vision tower frozen)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError


@dataclass
class VisionConfig:
    """Settings of the vision-language student (a LLaVA base)."""

    images_root: str | None = field(default=None, metadata={
        "help": "Folder that image paths in the training records are relative to (default: each file's folder)."})


def finetune_vision(ctx) -> dict:
    raise ConfigError("vision-language students are not supported yet")

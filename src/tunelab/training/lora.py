"""LoRA settings for every student: which modules to adapt per architecture, and LoRA/DoRA/rsLoRA."""

from __future__ import annotations

from ..errors import ConfigError

# Attention projections of encoder families (the original LoRA recipe for classifiers); the new
# classification head is trained in full by PEFT's modules_to_save.
ENCODER_TARGETS = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "electra": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
    "deberta-v2": ["query_proj", "value_proj"],
    "mpnet": ["q", "v"],
}
# The language model's linear layers only: the vision tower and projector stay frozen.
VISION_LANGUAGE_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
AUTO = "auto"


def target_modules(requested: list[str], model_type: str, task: str) -> list[str] | str:
    """Resolve `lora_target_modules` for a model: `auto` picks per architecture and task.

    Causal LMs: every linear layer but the head (`all-linear`, QLoRA's choice). Vision-language
    models: the language model's projections. Encoders: the attention query/value projections.
    """
    if requested and requested != [AUTO]:
        if AUTO in requested:
            raise ConfigError("lora_target_modules: 'auto' cannot be combined with module names")
        return list(requested)
    if model_type in ("llava", "llava_next"):
        return VISION_LANGUAGE_TARGETS
    if task == "classify":
        if model_type in ENCODER_TARGETS:
            return ENCODER_TARGETS[model_type]
        return "all-linear"
    return "all-linear"


def lora_config(r: int, alpha: int, dropout: float, targets: list[str] | str, task_type: str | None, *,
                use_dora: bool = False, use_rslora: bool = False):
    """A `peft.LoraConfig`. DoRA splits each update into magnitude and direction (better at low rank,
    slower); rsLoRA scales by alpha/sqrt(r) instead of alpha/r, which keeps high ranks stable."""
    from peft import LoraConfig

    if r <= 0:
        raise ConfigError(f"lora_r must be positive, got {r}")
    if isinstance(targets, list) and targets == ["all-linear"]:
        targets = "all-linear"  # PEFT's keyword is a string, not a module name
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type=task_type,
                      use_dora=use_dora, use_rslora=use_rslora)


def lora_from_settings(mcfg, model_type: str, task: str, task_type: str | None):
    """The LoraConfig for a finetune run's model settings (`ModelConfig`)."""
    return lora_config(mcfg.lora_r, mcfg.lora_alpha, mcfg.lora_dropout,
                       target_modules(mcfg.lora_target_modules, model_type, task), task_type,
                       use_dora=mcfg.use_dora, use_rslora=mcfg.use_rslora)

"""LoRA SFT of a causal LM with TRL's SFTTrainer, on prompt/completion examples."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import SFTConfig


@dataclass
class TrainConfig(SFTConfig):
    """`trl.SFTConfig` (every trainer setting) with defaults that suit this workbench.

    bf16 is on only where the hardware has it, so the same config runs on a laptop CPU.
    """

    bf16: bool | None = field(default=None, metadata={"help": "bf16 mixed precision; default: on where CUDA supports it."})
    report_to: str | list[str] = field(default="none", metadata={"help": "none, tensorboard, wandb, ..."})
    completion_only_loss: bool | None = field(default=True, metadata={"help": "Loss on the response and EOS only."})

    def __post_init__(self):
        import torch

        if self.bf16 is None:
            self.bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator; on CPU it only warns
        super().__post_init__()


def lora_config(r: int, alpha: int, dropout: float, target_modules: list[str] | str, task_type: str):
    from peft import LoraConfig

    targets = target_modules[0] if isinstance(target_modules, list) and len(target_modules) == 1 else target_modules
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type=task_type)


def build_sft_trainer(model, tokenizer, train_examples: list[dict], eval_examples: list[dict] | None,
                      args: TrainConfig, peft_config=None):
    """An SFTTrainer over prompt/completion rows; TRL appends EOS and masks the prompt from the loss."""
    from datasets import Dataset
    from trl import SFTTrainer

    def to_dataset(rows):
        return Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])

    return SFTTrainer(
        model=model, args=args, train_dataset=to_dataset(train_examples),
        eval_dataset=to_dataset(eval_examples) if eval_examples else None,
        processing_class=tokenizer, peft_config=peft_config,
    )

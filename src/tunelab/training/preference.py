"""Preference tuning of a causal student with TRL's trainers: DPO (task dpo), KTO (task kto: each pair read as a
desirable and an undesirable answer) and ORPO (task orpo, TRL's experimental trainer: no reference model).
LoRA (the reference model is the base with the adapter switched off), QLoRA, or full (TRL keeps a frozen
copy as the reference).

Columns in (generate's preferences.jsonl or preferences.chat.jsonl, or any TRL preference file):
{prompt, chosen, rejected} as text, or as turns (prompt: user turns, chosen/rejected: one assistant turn);
a record with `instruction` (and `input`) is asked in the student's own format, as SFT asks Alpaca records.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import ConfigError, RecordError
from .arguments import PreferenceConfig
from .data import SFTData
from .sft import SFTRecipe

# task -> (TRL's trainer, its config), imported when used; DPO's loss_type is the only one offered by name
TRAINERS = {"dpo": ("trl:DPOTrainer", "trl:DPOConfig"), "kto": ("trl:KTOTrainer", "trl:KTOConfig"),
            "orpo": ("trl.experimental.orpo:ORPOTrainer", "trl.experimental.orpo:ORPOConfig")}
PREFERENCE_TASKS = tuple(TRAINERS)


def _trl(ref: str):
    import importlib

    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def _turn_text(value, role: str) -> str | None:
    """The text of one answer given as text or as a single `role` turn; None when it is neither."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict) and value[0].get("role") == role \
            and isinstance(value[0].get("content"), str):
        return value[0]["content"]
    return None


def preference_example(obj, prompt, tokenizer) -> dict | str:
    """One record as TRL's {prompt, chosen, rejected} in the student's format, or why it cannot be one."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    missing = [k for k in ("chosen", "rejected") if k not in obj] + ([] if "prompt" in obj or "instruction" in obj
                                                                      else ["prompt"])
    if missing:
        return f"missing field(s) {missing}"
    chosen, rejected = _turn_text(obj["chosen"], "assistant"), _turn_text(obj["rejected"], "assistant")
    if chosen is None or rejected is None:
        return "chosen and rejected must each be a text or one assistant turn"
    if not chosen.strip() or not rejected.strip():
        return "chosen or rejected is empty"
    if chosen.strip() == rejected.strip():
        return "chosen and rejected are the same answer"
    if isinstance(obj.get("instruction"), str) and obj["instruction"].strip():
        instruction, input_text = obj["instruction"], obj.get("input") or ""
        if prompt.is_chat:
            return {"prompt": prompt.messages(instruction, input_text), "chosen": [{"role": "assistant", "content": chosen}],
                    "rejected": [{"role": "assistant", "content": rejected}]}
        return {"prompt": prompt.render(tokenizer, instruction, input_text), "chosen": chosen, "rejected": rejected}
    given = obj["prompt"]
    if isinstance(given, list):
        if not prompt.is_chat:
            return "a prompt of turns needs a student answering in its chat template (template chat)"
        if not given or not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in given):
            return "prompt turns must each have a text content"
        return {"prompt": given, "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}]}
    if not isinstance(given, str) or not given.strip():
        return "prompt must be a text or a list of turns"
    if prompt.is_chat:
        return ("a text prompt was rendered for another format than this student's chat template: train on the "
                "conversational file (preferences.chat.jsonl), records with an instruction, or --template alpaca_student")
    return {"prompt": given, "chosen": chosen, "rejected": rejected}


def load_preference_examples(paths: list[Path], prompt, tokenizer, *, bad_records: str) -> SFTData:
    data = SFTData()
    for path in paths:
        data.read(path, lambda obj: preference_example(obj, prompt, tokenizer), bad_records=bad_records,
                  what="preference")
    if not data.examples:
        first = data.skipped[0] if data.skipped else None
        raise RecordError(", ".join(map(str, paths)), None, "no preference pairs in these files" + (
            f" ({len(data.skipped)} bad records skipped; the first, line {first['line']}: {first['reason']})"
            if first else ""))
    return data


def preference_config(args, pcfg: PreferenceConfig, task: str = "dpo"):
    """TRL's config of `task` with every trainer setting of this run (TrainConfig is an SFTConfig) and its own."""
    config_class = _trl(TRAINERS[task][1])
    # SFT's own meanings of a shared name (loss_type: nll or dft) are not the preference trainers'
    shared = {f.name for f in dataclasses.fields(config_class) if f.init} - {"loss_type", "beta"}
    # a setting given for this run that the trainer has no use for is refused, never silently dropped
    defaults = type(args)(output_dir=args.output_dir)  # as parsed, post-init values included
    unused = [f"--{f.name}" for f in dataclasses.fields(args) if f.init and f.name not in shared
              and getattr(args, f.name) != getattr(defaults, f.name)]
    if "--loss_type" in unused:
        raise ConfigError(f"--loss_type is SFT's loss (nll or dft), not task {task}'s"
                          + (": DPO's loss is --dpo_loss_type" if task == "dpo" else ""))
    if unused:
        raise ConfigError(f"{', '.join(unused)} {'has' if len(unused) == 1 else 'have'} no meaning for task {task} "
                          f"(TRL's {config_class.__name__} has no such setting)")
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init and f.name in shared}
    own: dict = {"beta": pcfg.beta}
    if task == "dpo":
        own["loss_type"] = [pcfg.dpo_loss_type]
    if task == "kto":  # its KL term pairs each example with its neighbours in a fixed-order batch (TRL requires it)
        own["train_sampling_strategy"] = "sequential"
    given = {k: v for k, v in given.items() if k not in own}
    try:
        return config_class(**given, **own)
    except ValueError as e:  # TRL names a loss it does not know
        raise ConfigError(f"task {task}: {e}") from None


class PreferenceRecipe(SFTRecipe):
    """Tasks dpo, kto and orpo: the student's data, model, adapter and saved folder as in SFT; TRL's trainer between."""

    @property
    def task(self) -> str:
        return self.ctx.model.task

    def setup_data(self) -> None:
        dcfg = self.ctx.data
        self.setup_prompt()
        self.train, self.evals = self.load_examples(
            lambda paths: load_preference_examples(paths, self.prompt, self.tokenizer, bad_records=dcfg.bad_records))
        self.over = []  # TRL truncates each pair to max_length itself (its truncation_mode)

    def setup_trainer(self):
        from datasets import Dataset

        from .runner import early_stopping_callbacks

        args = self.ctx.train
        config = preference_config(args, self.ctx.preference, self.task)  # a refused setting: said before the model loads
        model, peft_config = self.causal_student()

        def to_dataset(rows):
            return Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])

        trainer_class = _trl(TRAINERS[self.task][0])
        return trainer_class(model=model, args=config,
                             train_dataset=to_dataset(self.train),
                             eval_dataset=to_dataset(self.evals) if self.evals else None,
                             processing_class=self.tokenizer, peft_config=peft_config,
                             callbacks=early_stopping_callbacks(args) + self.ctx.callbacks)

    def data_summary(self, trainer) -> dict:
        return {"pairs": len(self.train), "eval_pairs": len(self.evals) if self.evals else 0,
                "skipped_records": sum(s["file"] is not None for s in self.skipped),
                "beta": self.ctx.preference.beta,
                **({"loss_type": self.ctx.preference.dpo_loss_type} if self.task == "dpo" else {})}

    def after_training(self, trainer, summary: dict) -> None:
        """The last logged reward margin and accuracy (DPO, ORPO): did the tuned model come to prefer the chosen
        answers?"""
        logged = [e for e in trainer.state.log_history if "rewards/margins" in e]
        if logged:
            summary["last_reward_margin"] = logged[-1]["rewards/margins"]
            summary["last_reward_accuracy"] = logged[-1].get("rewards/accuracies")

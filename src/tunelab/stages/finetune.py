"""finetune: LoRA/QLoRA SFT of a causal or vision-language student, or tuning of an encoder classifier.

    python finetune/train.py --config demo_student
    python finetune/train.py --config demo_classifier
    python finetune/train.py --base meta-llama/Llama-2-7b-chat-hf --data my_data.json --output_dir runs/llama2-lora
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..console import PLAIN, get_logger
from ..errors import ConfigError
from ..paths import STAGE_CONFIG_DIRS
from ..runs import RunRecord, check_output_dir, check_resumable_run
from ..settings import HelpLayout
from ..training.arguments import (DataConfig, ModelConfig, PreferenceConfig, TrainConfig, VisionConfig,
                                  check_vision_settings)
from ..training.classify.config import ClassifierConfig
from ..training.runner import FinetuneContext, is_main_process
from .common import quiet_libraries, run_main

_log = get_logger("finetune")
PREFERENCE_TASKS = ("dpo", "kto", "orpo")  # training.preference.TRAINERS
TASKS = ("sft", *PREFERENCE_TASKS, "classify")

CONFIG_TYPES = (ModelConfig, DataConfig, ClassifierConfig, VisionConfig, PreferenceConfig, TrainConfig)

# The settings of TRL's SFTConfig and the Trainer that runs change all the time, shown by `--help` in these
# groups (TrainConfig's own fields are shown anyway); the other hundred-odd are listed by `--help-all`.
TRAINER_SETTINGS = {
    "trust_remote_code": "model",
    "data_seed": "data",
    "max_length": "training",
    "learning_rate": "training",
    "num_train_epochs": "training",
    "max_steps": "training",
    "per_device_train_batch_size": "training",
    "gradient_accumulation_steps": "training",
    "lr_scheduler_type": "training",
    "warmup_steps": "training",
    "weight_decay": "training",
    "seed": "training",
    "eval_strategy": "training",
    "eval_steps": "training",
    "per_device_eval_batch_size": "training",
    "output_dir": "output",
    "save_strategy": "output",
    "save_steps": "output",
    "logging_steps": "output",
}

HELP = HelpLayout(
    prog="finetune/train.py",
    description="Fine-tune a student: LoRA/QLoRA SFT of a causal or vision-language LM, DPO, KTO or ORPO on "
                "preference pairs, or an encoder classifier.",
    groups={"model": "model", "lora": "LoRA and quantization", "data": "data", "training": "training",
            "output": "output", "classifier": "classifier (task classify)", "preference": "preference tuning (tasks dpo, kto, orpo)"},
    defaults={ModelConfig: "model", DataConfig: "data", VisionConfig: "data", ClassifierConfig: "classifier",
              PreferenceConfig: "preference", TrainConfig: "training"},
    surfaced=TRAINER_SETTINGS,
    library="TRL's SFTConfig and the Trainer",
    library_docs="https://huggingface.co/docs/trl/sft_trainer#trl.SFTConfig",
)


# Ranges of the Trainer's own numbers (TRL's and transformers' fields carry no tunelab metadata): refused
# when parsed, before anything loads, rather than by a traceback mid-run.
TRAINER_RANGES = {
    "per_device_train_batch_size": (1, None), "per_device_eval_batch_size": (1, None),
    "gradient_accumulation_steps": (1, None), "num_train_epochs": (0, None), "max_steps": (-1, None),
    "learning_rate": (0, None), "warmup_steps": (0, None), "weight_decay": (0, None),
    "max_grad_norm": (0, None), "max_length": (1, None), "logging_steps": (0, None, "low"),
    "save_steps": (0, None, "low"), "eval_steps": (0, None, "low"), "dataloader_num_workers": (0, None),
}


def validate(mcfg: ModelConfig, dcfg: DataConfig, args: TrainConfig) -> None:
    """Every setting problem, before any folder is created or weights are loaded."""
    from ..models import QUANTIZATIONS

    if mcfg.task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {mcfg.task!r}")
    if not dcfg.data:
        raise ConfigError("no training data: give --data FILE [FILE ...] or 'data:' in the config")
    check_data_refs(dcfg.data, "data")
    check_data_refs(dcfg.eval_data, "eval_data")
    if args.max_steps <= 0 and args.num_train_epochs <= 0:
        raise ConfigError(f"num_train_epochs is {args.num_train_epochs:g} and max_steps is off: nothing would train; "
                          "give num_train_epochs > 0 or max_steps > 0")
    if mcfg.quantization not in QUANTIZATIONS:
        raise ConfigError(f"quantization must be one of {QUANTIZATIONS}, got {mcfg.quantization!r}")
    if mcfg.quantization != "none" and (mcfg.task == "classify" or not mcfg.use_lora):
        raise ConfigError("quantization trains a LoRA adapter on a frozen quantized causal LM: "
                          "it needs a causal task (sft, dpo, kto, orpo) and use_lora true")
    if mcfg.task in PREFERENCE_TASKS and (dcfg.overlength != "truncate" or dcfg.data_format != "auto"):
        raise ConfigError(f"task {mcfg.task} reads preference pairs (overlength and data_format are SFT's): TRL "
                          "truncates each pair to max_length, and the format is told by each record")
    if (mcfg.use_dora or mcfg.use_rslora) and not mcfg.use_lora:
        raise ConfigError("use_dora / use_rslora are LoRA variants: they need use_lora true")
    if dcfg.eval_split and dcfg.eval_data:
        raise ConfigError("give eval_data or eval_split, not both")
    if dcfg.overlength not in ("truncate", "drop"):
        raise ConfigError(f"overlength must be truncate or drop, got {dcfg.overlength!r}")
    if dcfg.bad_records not in ("skip", "error"):
        raise ConfigError(f"bad_records must be skip or error, got {dcfg.bad_records!r}")
    if args.early_stopping_patience is not None:
        if not (dcfg.eval_data or dcfg.eval_split):
            raise ConfigError("early stopping needs an eval set: give eval_data or eval_split")
    if mcfg.resume and mcfg.overwrite:
        raise ConfigError("resume continues the run in output_dir; overwrite would replace it: choose one")


def check_data_refs(refs: Sequence[str], setting: str) -> None:
    """Each data entry is a file, a texts+labels pair, a dataset folder or a hub dataset id: a missing file is
    named now, not after a model has loaded."""
    from ..paths import resolve_input
    from ..records import split_joined_path
    from ..training.data import is_dataset_ref

    for ref in refs:
        if resolve_input(ref).exists() or split_joined_path(ref) or is_dataset_ref(ref):
            continue
        raise ConfigError(f"{setting}: {ref}: file not found")


def finetune(argv: Sequence[str] | None = None, callbacks: Sequence | None = None) -> dict:
    """Run the finetune stage; `callbacks` are extra `transformers.TrainerCallback`s (library use)."""
    from ..config import parse_config

    (mcfg, dcfg, ccfg, vcfg, pcfg, args), config_file = parse_config(
        CONFIG_TYPES, argv, configs_dir=STAGE_CONFIG_DIRS["finetune"], layout=HELP, ranges=TRAINER_RANGES)
    validate(mcfg, dcfg, args)
    quiet_libraries()
    record = RunRecord(args.output_dir, "finetune", [mcfg, dcfg, ccfg, vcfg, pcfg, args], config_file)
    if mcfg.resume:
        out = check_resumable_run(args.output_dir, record, ignore=("resume", "overwrite"))
    else:  # created once the data and model have loaded
        out = check_output_dir(args.output_dir, mcfg.overwrite,
                               unfinished_hint="add --resume to continue it from its last checkpoint")
    from accelerate import PartialState

    PartialState().wait_for_everyone()  # every rank has checked the folder before rank 0 writes into it
    ctx = FinetuneContext(model=mcfg, data=dcfg, classifier=ccfg, vision=vcfg, train=args, out=out, record=record,
                          preference=pcfg, callbacks=list(callbacks or []))
    from ..models import is_vision_language, resolve_model

    vision = mcfg.task != "classify" and is_vision_language(resolve_model(mcfg.base))
    if vision and mcfg.task in PREFERENCE_TASKS:
        raise ConfigError(f"task {mcfg.task} tunes a text-only causal student; {mcfg.base} is a vision-language model")
    check_vision_settings(vcfg, vision, mcfg.base)  # before the output folder appears
    if mcfg.task == "classify":
        import torch

        if args.bf16_by_default and not torch.cuda.is_available():
            # bf16 on a CPU only when asked: thresholds tuned at training must hold at evaluate's float32
            args.bf16 = False
        from ..training.classify.recipe import ClassifyRecipe as Recipe
    elif vision:
        from ..training.vision import VisionRecipe as Recipe
    elif mcfg.task in PREFERENCE_TASKS:
        from ..training.preference import PreferenceRecipe as Recipe
    else:
        from ..training.sft import SFTRecipe as Recipe
    summary = Recipe(ctx).run()
    if is_main_process():  # one writer under accelerate / torchrun
        record.notes["summary"] = summary
        from ..cards import write_model_card

        write_model_card(out, record, summary)  # replaces the README.md the trainer wrote when it saved
        record.write()
        _log.info(json.dumps(summary, indent=2, default=str), extra=PLAIN)
        _log.info(f"model in {out}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(finetune, argv,
                    interrupted_hint="add --resume to the same command to continue from its last checkpoint")

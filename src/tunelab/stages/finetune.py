"""finetune: LoRA SFT of a causal student, or tuning of an encoder classifier.

    python finetune/train.py --config demo_student
    python finetune/train.py --config demo_classifier
    python finetune/train.py --base meta-llama/Llama-2-7b-chat-hf --data my_data.json --output_dir runs/llama2-lora
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..paths import STAGE_CONFIG_DIRS, resolve_input
from ..records import write_json
from ..runs import RunRecord, ensure_output_dir
from ..training.sft import TrainConfig
from .common import quiet_libraries, run_main

MODEL_INFO = "tunelab_model.json"
STUDENT_TEMPLATE = "student_template.jinja2"


@dataclass
class ModelConfig:
    base: str = field(metadata={"help": "Hub id, local folder, or a built-in (tunelab:tiny-llama, tunelab:minilm)."})
    task: str = field(default="sft", metadata={"help": "sft (causal student) or classify (encoder, multi-label)."})
    use_lora: bool = field(default=True, metadata={"help": "Train a LoRA adapter; off = full fine-tuning."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank: capacity vs adapter size."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scale (alpha / r multiplies the update)."})
    lora_dropout: float = field(default=0.05)
    lora_target_modules: list[str] = field(default_factory=lambda: ["all-linear"], metadata={
        "help": "Module names to adapt; all-linear = every linear layer but the head (QLoRA's choice)."})
    dtype: str = field(default="auto", metadata={"help": "Weights dtype to load: auto, float32, bfloat16, float16."})
    quantization: str = field(default="none", metadata={
        "help": "none | 4bit (QLoRA: NF4 + double quantization, LoRA on top) | 8bit; bitsandbytes, GPU or CPU."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing, non-empty output_dir."})


@dataclass
class DataConfig:
    data: list[str] = field(default_factory=list, metadata={"help": "Training files (.json/.jsonl): Alpaca, chat, prompt/completion, or moderation for classify."})
    data_format: str = field(default="auto", metadata={"help": "auto, alpaca, chat or completion (sft)."})
    eval_data: list[str] = field(default_factory=list, metadata={"help": "Evaluation files, same formats."})
    template: str = field(default="alpaca_student", metadata={"help": "Student prompt template in prompts/ (Alpaca records)."})
    taxonomy: str = field(default="jigsaw", metadata={"help": "Label taxonomy for classify."})
    max_examples: int | None = field(default=None, metadata={"help": "Use only the first N training examples."})


CONFIG_TYPES = (ModelConfig, DataConfig, TrainConfig)


# trust_remote_code lives in TrainConfig (TRL's own field, default off).


def _finetune_sft(mcfg: ModelConfig, dcfg: DataConfig, args: TrainConfig, out: Path, record: RunRecord) -> dict:
    from ..models import (is_tiny_random, keep_4bit_trainable_on_cpu, load_causal_lm, load_tokenizer,
                          quantization_config, resolve_model)
    from ..prompts import load_template
    from ..training.data import load_sft_examples
    from ..training.sft import build_sft_trainer, lora_config

    base = resolve_model(mcfg.base)
    template = load_template(dcfg.template)
    record.models["base"] = mcfg.base
    record.add_template(template.name, template.source)
    tokenizer = load_tokenizer(base, trust_remote_code=args.trust_remote_code)
    paths = [resolve_input(p) for p in dcfg.data]
    for i, p in enumerate(paths):
        record.add_input(f"data[{i}]", p)
    train = load_sft_examples(paths, template, tokenizer, dcfg.data_format)[: dcfg.max_examples]
    eval_paths = [resolve_input(p) for p in dcfg.eval_data]
    evals = load_sft_examples(eval_paths, template, tokenizer, dcfg.data_format) if eval_paths else None

    quant = quantization_config(mcfg.quantization, mcfg.dtype if mcfg.dtype in ("bfloat16", "float16", "float32")
                                else ("bfloat16" if args.bf16 else "float32"))
    model = load_causal_lm(base, dtype=mcfg.dtype, trust_remote_code=args.trust_remote_code, quantization_config=quant)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:  # a pad token was added
        model.resize_token_embeddings(len(tokenizer))
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing)
        keep_4bit_trainable_on_cpu(model)
    peft_config = lora_config(mcfg.lora_r, mcfg.lora_alpha, mcfg.lora_dropout, mcfg.lora_target_modules,
                              "CAUSAL_LM") if mcfg.use_lora else None
    trainer = build_sft_trainer(model, tokenizer, train, evals, args, peft_config)
    # TRL drops examples whose response was truncated away entirely (prompt >= max_length).
    dropped = len(train) - len(trainer.train_dataset)
    if not len(trainer.train_dataset):
        raise ConfigError(f"all {len(train)} training examples have prompts of max_length ({args.max_length}) "
                          "tokens or more, so no response token is left to learn; raise --max_length")
    result = trainer.train()
    trainer.save_model(str(out))
    shutil.copyfile(template.path, out / STUDENT_TEMPLATE)
    (out / MODEL_INFO).write_text(json.dumps({
        "task": "sft", "base": mcfg.base, "base_path": base, "adapter": mcfg.use_lora,
        "template": STUDENT_TEMPLATE, "template_version": template.version, "tiny_random": is_tiny_random(base),
    }, indent=2), encoding="utf-8")
    write_json(out / "train_log.json", {"log_history": trainer.state.log_history})
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {"examples": len(train), "dropped_prompt_too_long": dropped, "steps": result.global_step,
            "train_loss": result.training_loss, "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}


def _finetune_classifier(mcfg: ModelConfig, dcfg: DataConfig, args: TrainConfig, out: Path, record: RunRecord) -> dict:
    from ..models import load_tokenizer, resolve_model
    from ..records import read_records
    from ..taxonomy import load_taxonomy
    from ..training.classifier import build_classifier_trainer, load_classifier_base, save_classifier_info
    from ..training.sft import lora_config

    base = resolve_model(mcfg.base)
    taxonomy = load_taxonomy(dcfg.taxonomy)
    record.models["base"] = mcfg.base
    record.add_input("taxonomy", taxonomy.path)

    def read(paths):
        rows = []
        for i, p in enumerate(paths):
            p = resolve_input(p)
            record.add_input(f"{p.name}", p)
            rows += [r.data for r in read_records(p, "moderation", taxonomy.labels)]
        return rows

    train = read(dcfg.data)[: dcfg.max_examples]
    evals = read(dcfg.eval_data) if dcfg.eval_data else None
    tokenizer = load_tokenizer(base, trust_remote_code=args.trust_remote_code)
    model = load_classifier_base(base, taxonomy.labels, trust_remote_code=args.trust_remote_code)
    if mcfg.use_lora:
        from peft import get_peft_model

        targets = mcfg.lora_target_modules if mcfg.lora_target_modules != ["all-linear"] else ["query", "value"]
        model = get_peft_model(model, lora_config(mcfg.lora_r, mcfg.lora_alpha, mcfg.lora_dropout, targets, "SEQ_CLS"))
    trainer = build_classifier_trainer(model, tokenizer, train, evals, taxonomy.labels, args, args.max_length)
    result = trainer.train()
    trainer.save_model(str(out))
    save_classifier_info(out, mcfg.base, taxonomy.labels, str(taxonomy.path), args.max_length, mcfg.use_lora)
    write_json(out / "train_log.json", {"log_history": trainer.state.log_history})
    summary = {"examples": len(train), "steps": result.global_step, "train_loss": result.training_loss}
    if evals:
        summary["eval"] = {k: v for k, v in trainer.evaluate().items() if k.startswith("eval_")}
    return summary


def finetune(argv: Sequence[str] | None = None) -> dict:
    from ..config import parse_config

    (mcfg, dcfg, args), config_file = parse_config(
        CONFIG_TYPES, argv, configs_dir=STAGE_CONFIG_DIRS["finetune"], prog="finetune/train.py",
        description="Fine-tune a student: LoRA SFT of a causal LM, or an encoder classifier.")
    if mcfg.task not in ("sft", "classify"):
        raise ConfigError(f"task must be sft or classify, got {mcfg.task!r}")
    if not dcfg.data:
        raise ConfigError("no training data: give --data FILE [FILE ...] or 'data:' in the config")
    if mcfg.quantization != "none" and (mcfg.task != "sft" or not mcfg.use_lora):
        raise ConfigError("quantization trains a LoRA adapter on a frozen quantized causal LM: "
                          "it needs task sft and use_lora true")
    quiet_libraries()
    out = ensure_output_dir(args.output_dir, mcfg.overwrite)
    record = RunRecord(out, "finetune", [mcfg, dcfg, args], config_file)
    summary = (_finetune_sft if mcfg.task == "sft" else _finetune_classifier)(mcfg, dcfg, args, out, record)
    record.notes["summary"] = summary
    record.write()
    print(json.dumps(summary, indent=2, default=str))
    print(f"finetune: model in {out}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(finetune, argv)

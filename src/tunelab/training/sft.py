"""LoRA / QLoRA SFT of a causal LM with TRL's SFTTrainer, on prompt/completion examples."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field

from trl import SFTConfig

from ..errors import ConfigError

MODEL_INFO = "tunelab_model.json"  # what a student folder is: base, adapter or not, prompt format
STUDENT_TEMPLATE = "student_template.jinja2"


@dataclass
class TrainConfig(SFTConfig):
    """`trl.SFTConfig` (every trainer setting) with defaults that suit this workbench.

    Activation checkpointing and the paged 8-bit optimizer are on only where CUDA is, and bf16 where the
    hardware computes it natively, so the same config runs on a laptop CPU and on a GPU.
    """

    bf16: bool | None = field(default=None, metadata={"help": "bf16 mixed precision; default: on where CUDA supports "
                                                              "it, and on CPUs with native bf16 (autocast, 2-3x faster)."})
    # A list default: HfArgumentParser reads a plain string default of a list field as [None].
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"], metadata={"group": "output",
        "help": "tensorboard (logs in output_dir/runs), wandb, none, ...; a PNG of the curves is always written."})
    completion_only_loss: bool | None = field(default=True, metadata={"help": "Loss on the response and EOS only."})
    packing: bool = field(default=False, metadata={
        "help": "Pack examples whole into rows of max_length (packing_strategy bfd: best-fit decreasing; a longer "
                "example is truncated). Each keeps its own positions, attention (padding-free) and loss mask; "
                "about 98%% real tokens instead of about 55%% on Alpaca. Needs sdpa, eager, flex or flash attention."})
    optim: str = field(default="auto", metadata={
        "help": "auto: paged 8-bit AdamW for QLoRA on CUDA (optimizer state off the GPU's peak), fused AdamW otherwise; "
                "or any transformers optimizer name."})
    gradient_checkpointing: bool | None = field(default=None, metadata={"help": "Deprecated alias of activation_checkpointing."})
    activation_checkpointing: bool | None = field(default=None, metadata={
        "help": "Recompute activations in backward: much less memory, about 20%% slower. Default: on with CUDA."})
    disable_tqdm: bool | None = field(default=False, metadata={"group": "output", "help": "Hide the progress bar."})
    save_total_limit: int | None = field(default=2, metadata={"range": (1, None),
        "group": "output", "help": "Checkpoints kept in output_dir (for --resume): more to go back to, more disk."})
    early_stopping_patience: int | None = field(default=None, metadata={"range": (1, None),
        "help": "Stop after this many evaluations without improvement of metric_for_best_model (default eval_loss); "
                "keeps the best checkpoint. Needs eval_data or eval_split."})
    early_stopping_threshold: float = field(default=0.0, metadata={"range": (0, None), "help": "Smallest change that counts as improvement."})
    ddp_find_unused_parameters: bool | None = field(default=False, metadata={
        "help": "DDP: search for parameters without gradients each step (an extra pass); LoRA uses all of its own."})

    def __post_init__(self):
        import torch

        cuda = torch.cuda.is_available()
        self.bf16_by_default = self.bf16 is None  # the classify task keeps float32 on a CPU (finetune stage)
        if self.bf16 is None:
            from ..models import native_bf16_cpu

            self.bf16 = bool(torch.cuda.is_bf16_supported()) if cuda else native_bf16_cpu()
        if not cuda:
            self.dataloader_pin_memory = False  # pinning needs an accelerator; on CPU it only warns
            if not torch.backends.mps.is_available():
                self.use_cpu = True  # lets --bf16 train on a CPU (autocast) instead of refusing
        if self.activation_checkpointing is None and self.gradient_checkpointing is None:
            self.activation_checkpointing = cuda
        self.optim_auto = self.optim == "auto"
        if self.optim_auto:
            self.optim = "adamw_torch_fused"
        if (self.packing or self.eval_packing) and self.packing_strategy == "wrapped":
            # Wrapped packing cuts examples at row ends and keeps no boundaries: a response would lose its
            # prompt, and examples sharing a row would attend to each other.
            raise ConfigError("packing_strategy wrapped splits examples and lets them attend to each other; "
                              "use bfd (the default) or bfd_split")
        if self.hub_token:
            raise ConfigError("hub_token is refused: a token given as a setting lands in shell history and run "
                              "records; put it in the HF_TOKEN environment variable")
        if self.push_to_hub:
            # The Trainer's own push uploads its auto-written README (no base model, no data) and checkpoints.
            raise ConfigError("push_to_hub is not a finetune setting: after training, upload the folder with its "
                              "model card by `python finetune/push.py --model OUTPUT_DIR --hub_repo_id user/name` "
                              "(token from HF_TOKEN)")
        if self.early_stopping_patience is not None:
            # The best checkpoint is what early stopping keeps: evaluate and save on the same schedule.
            if self.eval_strategy == "no":
                self.eval_strategy = self.save_strategy if self.save_strategy != "no" else "steps"
            if self.save_strategy == "no":
                self.save_strategy = self.eval_strategy
            if self.eval_strategy == "steps" and self.eval_steps is None:
                self.eval_steps = self.save_steps
            self.load_best_model_at_end = True
            self.metric_for_best_model = self.metric_for_best_model or "eval_loss"
        super().__post_init__()


def resolve_qlora_defaults(args: TrainConfig, quantization: str) -> None:
    """QLoRA on CUDA: a paged 8-bit optimizer unless one was chosen (bitsandbytes' GPU kernels).

    Not under FSDP / ZeRO-3, where bitsandbytes' paged optimizers do not work on sharded parameters."""
    import torch

    from ..models import sharded_training

    if args.optim_auto and quantization != "none" and torch.cuda.is_available() and not sharded_training():
        from transformers.training_args import OptimizerNames

        args.optim = OptimizerNames.PAGED_ADAMW_8BIT


def build_sft_trainer(model, tokenizer, train_examples: list[dict], eval_examples: list[dict] | None,
                      args: TrainConfig, peft_config=None, callbacks=None):
    """An SFTTrainer over prompt/completion rows; TRL appends EOS and masks the prompt from the loss."""
    from datasets import Dataset
    from trl import SFTTrainer

    if args.packing or args.padding_free or args.eval_packing:
        # A packed row holds several examples. TRL's padding-free collator marks where each starts only by
        # position_ids restarting at 0 (and cu_seq_lens) with no attention mask; transformers turns that into a
        # block-diagonal causal mask for sdpa, eager and flex attention, and flash attention reads cu_seq_lens.
        # Any other attention function (a custom registered kernel) or remote modelling code may not, and then
        # the examples in one row attend to each other with nothing to show for it but a worse model.
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        impl = base.config.get_text_config()._attn_implementation
        if impl not in ALL_MASK_ATTENTION_FUNCTIONS or not type(base).__module__.startswith("transformers."):
            raise ConfigError(
                f"packing / padding_free needs transformers' own modelling with an attention implementation that "
                f"keeps packed examples apart ({', '.join(ALL_MASK_ATTENTION_FUNCTIONS)}); this model is "
                f"{type(base).__module__}.{type(base).__name__} with {impl!r} attention. Load it with "
                f"attn_implementation='sdpa', or turn packing off")

    def to_dataset(rows):
        return Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])

    return SFTTrainer(
        model=model, args=args, train_dataset=to_dataset(train_examples),
        eval_dataset=to_dataset(eval_examples) if eval_examples else None,
        processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks,
    )


def finetune_sft(ctx) -> dict:
    """LoRA (or QLoRA, or full) SFT of a causal student; saves adapter, tokenizer and prompt format."""
    from ..models import (is_tiny_random, load_causal_lm, load_tokenizer, model_type, prepare_quantized_student,
                          resolve_model, student_quantization)
    from ..paths import resolve_input
    from ..prompts import student_prompt
    from .data import example_lengths, load_sft_examples, split_eval
    from .lora import lora_from_settings
    from .runner import early_stopping_callbacks, is_main_process, train_and_save

    mcfg, dcfg, args, record, out = ctx.model, ctx.data, ctx.train, ctx.record, ctx.out
    base = resolve_model(mcfg.base)
    record.models["base"] = mcfg.base
    tokenizer = load_tokenizer(base, trust_remote_code=args.trust_remote_code)
    prompt = student_prompt(dcfg.template, tokenizer)
    if not prompt.is_chat:
        record.add_template(prompt.template.name, prompt.template.source)
    else:
        record.add_template("chat_template", tokenizer.chat_template)

    paths = [resolve_input(p) for p in dcfg.data]  # hub ids come back unchanged
    for i, p in enumerate(paths):
        record.add_input(f"data[{i}]", p)
    loaded = load_sft_examples(paths, prompt, tokenizer, dcfg.data_format, bad_records=dcfg.bad_records)
    train = loaded.examples[: dcfg.max_examples]
    skipped = loaded.skipped
    evals = None
    if dcfg.eval_data:
        eval_paths = [resolve_input(p) for p in dcfg.eval_data]
        for i, p in enumerate(eval_paths):
            record.add_input(f"eval_data[{i}]", p)
        eval_loaded = load_sft_examples(eval_paths, prompt, tokenizer, dcfg.data_format, bad_records=dcfg.bad_records)
        evals, skipped = eval_loaded.examples, skipped + eval_loaded.skipped
    elif dcfg.eval_split:
        train, evals = split_eval(train, dcfg.eval_split, args.data_seed if args.data_seed is not None else args.seed)

    # Over-long examples are counted here; TRL truncates them (keep_start) unless they are dropped.
    lengths = example_lengths(train, tokenizer)
    over = [i for i, n in enumerate(lengths) if args.max_length is not None and n > args.max_length]
    if dcfg.overlength == "drop" and over:
        dropped_ids = set(over)
        for i in over:
            skipped.append({"file": None, "line": None, "id": train[i]["id"],
                            "reason": f"{lengths[i]} tokens, longer than max_length {args.max_length} (overlength: drop)"})
        train = [ex for i, ex in enumerate(train) if i not in dropped_ids]
        if not train:
            raise ConfigError(f"every training example is longer than max_length ({args.max_length}) and "
                              "overlength is drop; raise --max_length or use --overlength truncate")
    ctx.write_skipped(skipped)  # once data and model have loaded (the folder appears here)

    quant, load_dtype, sharded = student_quantization(mcfg.quantization, mcfg.dtype, args.bf16)
    resolve_qlora_defaults(args, mcfg.quantization)
    model = load_causal_lm(base, dtype=load_dtype, trust_remote_code=args.trust_remote_code, quantization_config=quant)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:  # a pad token was added
        model.resize_token_embeddings(len(tokenizer))
    if quant is not None:
        model = prepare_quantized_student(model, sharded=sharded, activation_checkpointing=bool(args.activation_checkpointing))
    peft_config = lora_from_settings(mcfg, model_type(base), "sft", "CAUSAL_LM") if mcfg.use_lora else None
    trainer = build_sft_trainer(model, tokenizer, train, evals, args, peft_config,
                                callbacks=early_stopping_callbacks(args) + ctx.callbacks)
    # TRL drops examples whose response was truncated away entirely (prompt >= max_length).
    no_response_left = 0 if args.packing else len(train) - len(trainer.train_dataset)
    if not len(trainer.train_dataset):
        raise ConfigError(f"all {len(train)} training examples have prompts of max_length ({args.max_length}) "
                          "tokens or more, so no response token is left to learn; raise --max_length")
    summary = {"examples": len(train), "eval_examples": len(evals) if evals else 0,
               "skipped_records": sum(s["file"] is not None for s in skipped),
               "overlength": len(over), "overlength_action": dcfg.overlength,
               "dropped_no_response_left": no_response_left}
    summary.update(train_and_save(trainer, ctx))
    if not is_main_process():
        return summary
    if prompt.is_chat:
        template_ref = "chat"
    else:
        shutil.copyfile(prompt.template.path, out / STUDENT_TEMPLATE)
        template_ref = STUDENT_TEMPLATE
    tokenizer.save_pretrained(str(out))  # the chat template and pad token travel with the adapter
    (out / MODEL_INFO).write_text(json.dumps({
        "task": "sft", "base": mcfg.base, "base_path": base, "adapter": mcfg.use_lora,
        "quantization": mcfg.quantization, "template": template_ref,
        "template_version": prompt.template.version if prompt.template else None,
        "tiny_random": is_tiny_random(base),
    }, indent=2), encoding="utf-8")
    return summary

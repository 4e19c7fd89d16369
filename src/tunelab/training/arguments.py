"""The finetune stage's settings: the model and LoRA, the data, a vision student's projector, and the trainer's
(`TrainConfig`, TRL's SFTConfig with this workbench's defaults). The classify task adds `ClassifierConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import SFTConfig

from ..errors import ConfigError


@dataclass
class ModelConfig:
    base: str = field(metadata={"help": "Hub id, local folder, or a built-in (tunelab:tiny-llama, tunelab:tiny-llava, tunelab:minilm, tunelab:smollm2)."})
    task: str = field(default="sft", metadata={"help": "sft (causal or vision-language student); dpo, kto or orpo (a "
                                                       "causal student on preference pairs); classify (encoder)."})
    use_lora: bool = field(default=True, metadata={
        "group": "lora", "help": "Train a LoRA adapter; off = full fine-tuning."})
    lora_r: int = field(default=16, metadata={"range": (1, None), "group": "lora", "help": "LoRA rank: capacity vs adapter size."})
    lora_alpha: int = field(default=32, metadata={"range": (1, None),
        "group": "lora", "help": "LoRA scale (alpha / r multiplies the update)."})
    lora_dropout: float = field(default=0.05, metadata={"range": (0, 1), "range_open": "high",
        "group": "lora", "help": "Dropout on the LoRA input: regularizes small data sets; 0 for long runs on plenty."})
    use_dora: bool = field(default=False, metadata={
        "group": "lora", "help": "DoRA: magnitude + direction updates; better at low rank, slower."})
    use_rslora: bool = field(default=False, metadata={
        "group": "lora", "help": "rsLoRA: scale alpha/sqrt(r); keeps high ranks stable."})
    lora_target_modules: list[str] = field(default_factory=lambda: ["auto"], metadata={"group": "lora",
        "help": "Modules to adapt. auto: every linear layer but the head for causal LMs, the language model's for "
                "LLaVA, query/value for encoders; or all-linear, or module names."})
    dtype: str = field(default="auto", metadata={"help": "Weights dtype to load: auto, float32, bfloat16, float16."})
    quantization: str = field(default="none", metadata={"group": "lora",
        "help": "none | 4bit (QLoRA: NF4 + double quantization, LoRA on top) | 8bit; bitsandbytes, GPU or CPU."})
    resume: bool = field(default=False, metadata={"group": "output",
        "help": "Continue an interrupted run from the last checkpoint in output_dir (same settings required)."})
    overwrite: bool = field(default=False, metadata={
        "group": "output", "help": "Replace an existing, non-empty output_dir."})


@dataclass
class DataConfig:
    data: list[str] = field(default_factory=list, metadata={
        "help": "Training data: .json/.jsonl files, a dataset folder or a hub dataset id (org/name[:split]) with "
                "Alpaca, chat or prompt/completion records (sft); labeled text tables (classify)."})
    data_format: str = field(default="auto", metadata={"help": "auto, alpaca, chat or completion (sft)."})
    eval_data: list[str] = field(default_factory=list, metadata={"help": "Evaluation files, same formats."})
    eval_split: float = field(default=0.0, metadata={"range": (0, 1), "range_open": "high",
        "help": "Without eval_data: hold out this fraction of the training data (seeded by data_seed or seed)."})
    template: str = field(default="auto", metadata={
        "help": "Prompt format for Alpaca records: chat (the model's own chat template), a template in prompts/ "
                "(alpaca_student), or auto (chat when the tokenizer has a chat template). Saved with the model."})
    max_examples: int | None = field(default=None, metadata={"range": (1, None), "help": "Use only the first N training examples."})
    overlength: str = field(default="truncate", metadata={
        "help": "Examples longer than max_length: truncate (keep the start) or drop. Counted either way."})
    bad_records: str = field(default="skip", metadata={
        "help": "Records with missing fields or empty text: skip (counted, listed in skipped_records.jsonl) or error."})


@dataclass
class PreferenceConfig:
    """Tasks dpo, kto, orpo: the preference trainers' own settings (the others are TrainConfig's)."""

    beta: float = field(default=0.1, metadata={"range": (0, None), "range_open": "low", "group": "preference",
        "help": "dpo, kto: how strongly the tuned model is held to the reference (higher: nearer); orpo: the "
                "weight of the odds-ratio term beside the SFT loss."})
    dpo_loss_type: str = field(default="sigmoid", metadata={"group": "preference",
        "help": "Task dpo: TRL's DPO loss (sigmoid is the paper's; ipo, hinge, robust, ...)."})


@dataclass
class VisionConfig:
    """Settings of the vision-language student (a LLaVA base)."""

    images_root: str | None = field(default=None, metadata={
        "help": "Folder that image paths in the training records are relative to (default: each file's folder). "
                "A path resolving outside it is a bad record. The generate stage writes paths relative to its "
                "own images_root: give that folder here."})
    train_projector: bool = field(default=False, metadata={
        "help": "Vision students: also train the multi-modal projector in full (PEFT modules_to_save with LoRA), "
                "as LLaVA's own LoRA recipe does; the adapter then carries the projector (a few MB for 7B). "
                "Off: only the language model adapts to the new images."})
    projector_learning_rate: float | None = field(default=None, metadata={"range": (0, None), "range_open": "low",
        "help": "With train_projector: the projector's own learning rate (LLaVA 1.5's LoRA recipe: 2e-5 beside "
                "2e-4 for LoRA); default: learning_rate."})


def check_vision_settings(vcfg, vision: bool, base: str) -> None:
    """Projector settings make sense for a LLaVA base only, and the rate only with the projector on."""
    if not vision and (vcfg.train_projector or vcfg.projector_learning_rate is not None):
        raise ConfigError(f"train_projector / projector_learning_rate apply to vision (LLaVA) students; {base} "
                          "is not one")
    if vcfg.projector_learning_rate is not None and not vcfg.train_projector:
        raise ConfigError("projector_learning_rate is given but train_projector is off: add --train_projector")


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

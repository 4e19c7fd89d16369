"""LoRA / QLoRA SFT of a causal LM with TRL's SFTTrainer, on prompt/completion examples."""

from __future__ import annotations

import shutil

from ..errors import ConfigError
from .arguments import TrainConfig
from .data import example_lengths, load_sft_examples, split_eval
from .lora import lora_from_settings
from .runner import FinetuneRecipe, early_stopping_callbacks
from .student_info import STUDENT_TEMPLATE, StudentInfo


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


class SFTRecipe(FinetuneRecipe):
    """LoRA (or QLoRA, or full) SFT of a causal student; saves adapter, tokenizer and prompt format."""

    task = "sft"

    def setup_prompt(self) -> None:
        """The student's tokenizer and the way it is asked (its chat template or a template file), recorded."""
        from ..models import load_tokenizer
        from ..prompts import student_prompt

        record = self.ctx.record
        self.tokenizer = load_tokenizer(self.base, trust_remote_code=self.ctx.train.trust_remote_code)
        self.prompt = student_prompt(self.ctx.data.template, self.tokenizer)
        if not self.prompt.is_chat:
            record.add_template(self.prompt.template.name, self.prompt.template.source)
        else:
            record.add_template("chat_template", self.tokenizer.chat_template)

    def setup_data(self) -> None:
        dcfg, args = self.ctx.data, self.ctx.train
        self.setup_prompt()
        self.train, self.evals = self.load_examples(
            lambda paths: load_sft_examples(paths, self.prompt, self.tokenizer, dcfg.data_format,
                                            bad_records=dcfg.bad_records))
        # Over-long examples are counted here; TRL truncates them (keep_start) unless they are dropped.
        lengths = example_lengths(self.train, self.tokenizer)
        self.over = [i for i, n in enumerate(lengths) if args.max_length is not None and n > args.max_length]
        if dcfg.overlength == "drop" and self.over:
            dropped_ids = set(self.over)
            for i in self.over:
                self.skipped.append({"file": None, "line": None, "id": self.train[i]["id"], "reason":
                                     f"{lengths[i]} tokens, longer than max_length {args.max_length} (overlength: drop)"})
            self.train = [ex for i, ex in enumerate(self.train) if i not in dropped_ids]
            if not self.train:
                raise ConfigError(f"every training example is longer than max_length ({args.max_length}) and "
                                  "overlength is drop; raise --max_length or use --overlength truncate")

    def load_examples(self, read) -> tuple[list[dict], list[dict] | None]:
        """(train, eval) examples: the first max_examples of the data files, and eval_data or an eval_split of
        them; `read(paths)` gives an SFTData (examples and skipped records)."""
        dcfg = self.ctx.data
        loaded = read(self.input_paths("data", dcfg.data))
        train, self.skipped = loaded.examples[: dcfg.max_examples], self.skipped + loaded.skipped
        evals = None
        if dcfg.eval_data:
            eval_loaded = read(self.input_paths("eval_data", dcfg.eval_data))
            evals, self.skipped = eval_loaded.examples, self.skipped + eval_loaded.skipped
        elif dcfg.eval_split:
            train, evals = split_eval(train, dcfg.eval_split, self.seed)
        return train, evals

    def load_student(self, load, embeddings_tokenizer):
        """The base loaded by `load(dtype, quantization_config)`: in 4 or 8 bits for QLoRA (prepared for
        k-bit training), its embeddings grown for an added pad token."""
        from ..models import prepare_quantized_student, student_quantization

        mcfg, args = self.ctx.model, self.ctx.train
        quant, load_dtype, sharded = student_quantization(mcfg.quantization, mcfg.dtype, args.bf16)
        resolve_qlora_defaults(args, mcfg.quantization)
        model = load(load_dtype, quant)
        if len(embeddings_tokenizer) > model.get_input_embeddings().num_embeddings:  # a pad token was added
            model.resize_token_embeddings(len(embeddings_tokenizer))
        if quant is not None:
            model = prepare_quantized_student(model, sharded=sharded,
                                              activation_checkpointing=bool(args.activation_checkpointing))
        return model

    def causal_student(self):
        """(the causal base, loaded for this run's precision and quantization; its LoRA config or None)."""
        from ..models import load_causal_lm, model_type

        mcfg, args = self.ctx.model, self.ctx.train
        model = self.load_student(lambda dtype, quant: load_causal_lm(
            self.base, dtype=dtype, trust_remote_code=args.trust_remote_code, quantization_config=quant),
            self.tokenizer)
        peft_config = lora_from_settings(mcfg, model_type(self.base), "sft", "CAUSAL_LM") if mcfg.use_lora else None
        return model, peft_config

    def setup_trainer(self):
        args = self.ctx.train
        model, peft_config = self.causal_student()
        trainer = build_sft_trainer(model, self.tokenizer, self.train, self.evals, args, peft_config,
                                    callbacks=early_stopping_callbacks(args) + self.ctx.callbacks)
        if not len(trainer.train_dataset):
            raise ConfigError(f"all {len(self.train)} training examples have prompts of max_length ({args.max_length}) "
                              "tokens or more, so no response token is left to learn; raise --max_length")
        return trainer

    def data_summary(self, trainer) -> dict:
        # TRL drops examples whose response was truncated away entirely (prompt >= max_length).
        no_response_left = 0 if self.ctx.train.packing else len(self.train) - len(trainer.train_dataset)
        return {"examples": len(self.train), "eval_examples": len(self.evals) if self.evals else 0,
                "skipped_records": sum(s["file"] is not None for s in self.skipped),
                "overlength": len(self.over), "overlength_action": self.ctx.data.overlength,
                "dropped_no_response_left": no_response_left}

    def save(self) -> None:
        from ..models import is_tiny_random

        out, mcfg = self.ctx.out, self.ctx.model
        if self.prompt.is_chat:
            template_ref = "chat"
        else:
            shutil.copyfile(self.prompt.template.path, out / STUDENT_TEMPLATE)
            template_ref = STUDENT_TEMPLATE
        self.tokenizer.save_pretrained(str(out))  # the chat template and pad token travel with the adapter
        StudentInfo(task=self.task, base=mcfg.base, base_path=self.base, adapter=mcfg.use_lora,
                    quantization=mcfg.quantization, template=template_ref,
                    template_version=self.prompt.template.version if self.prompt.template else None,
                    tiny_random=is_tiny_random(self.base)).write(out)

"""QLoRA on a GPU: tunelab's path against plain transformers + bitsandbytes + peft, Llama-2-7B sized.

    .venv/bin/python bench/gpu_qlora.py [--steps 10] [--warmup 3] [--json results.json]
    .venv/bin/python bench/gpu_qlora.py --smoke        # a tiny config, any device: checks the plumbing only

Needs a CUDA GPU (about 40 GB free, 10 minutes on an H200); without one it prints SKIPPED and exits 0.

Model: the architecture of meta-llama/Llama-2-7b-hf (its config.json, written out below) with random
weights: built directly on the GPU in bf16, saved once to a temporary folder (about 13.5 GB) and loaded
by each path 4-bit (NF4, double quantization, bf16 compute) through bitsandbytes, so both quantize the
same weights the way a real checkpoint is loaded. No download. Tokenizer: the tiny model's BPE (ids fit
Llama's 32,000 vocabulary). Data: data/alpaca_sample.json, alpaca_student template, response-only loss.
LoRA r 16 / alpha 32 / dropout 0.05 on every linear layer for both. Measured, one path after the other:
  * ours: `tunelab.stages.finetune.finetune([...])` in process, as `python finetune/train.py --base DIR
    --quantization 4bit --packing true --max_length 1024` runs it: TrainConfig's CUDA defaults (bf16,
    activation checkpointing, paged 8-bit AdamW), SDPA (transformers' default), bfd packing padding-free;
  * plain: `AutoModelForCausalLM.from_pretrained(..., BitsAndBytesConfig)`, `prepare_model_for_kbit_training`
    (without its activation checkpointing, as Trainer's default has none), `get_peft_model`, `Trainer`
    with TrainingArguments defaults (batch 8, fused AdamW) plus bf16, examples tokenized with the prompt
    masked and truncated at 1024, padded per batch (`DataCollatorForSeq2Seq`).
Figures: real (non-padding) tokens per second over the timed steps, from the Trainer's own count
(`include_num_input_tokens_seen`: "non_padding" for plain; every token for ours, whose padding-free
batches hold no padding), and peak GPU memory while training
(`torch.cuda.max_memory_allocated`, reset when training starts, so the 4-bit weights count). Paged
optimizer states live in CUDA unified memory outside PyTorch's allocator and are not counted; for LoRA
they are small (8-bit, two states per adapter weight).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import sys
import tempfile
import time
from pathlib import Path

from _sizes import (gpu_script_main, gpu_suite_run, llama_config, peak_memory_ratio, save_results,
                    smoke_config)  # bench/ helpers (bench/ is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
# bench/suite.py's quick mode: fewer steps; building, saving and loading the 7B model costs the same.
QUICK = {"steps": 4, "warmup": 2}
NEEDS = "4-bit Llama-2-7B training"  # why it needs a GPU, for the SKIPPED line

# config.json of meta-llama/Llama-2-7b-hf.
LLAMA2_7B = llama_config(32000, 4096, 11008, layers=32, heads=32, kv_heads=32, rope_theta=10000.0)
SMOKE = smoke_config(LLAMA2_7B, kv_heads=4)
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05)


def build_model(out: Path, sizes: dict, device: str) -> Path:
    """A random Llama of `sizes`, built on `device` in bf16, saved with the tiny BPE tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig

    from tunelab.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    assert len(tokenizer) <= sizes["vocab_size"]
    config = LlamaConfig(**sizes, pad_token_id=tokenizer.pad_token_id)
    assert (config.bos_token_id, config.eos_token_id) == (tokenizer.bos_token_id, tokenizer.eos_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    del model
    return out


def meter(warmup: int):
    """A TrainerCallback that times optimizer steps and reads real tokens seen and peak GPU memory."""
    import torch
    from transformers import TrainerCallback

    cuda = torch.cuda.is_available()

    class Meter(TrainerCallback):
        def __init__(self):
            self.marks: list[tuple[float, int]] = []
            self.peak = None
            self.at_start = None
            self.attn = None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                # what the model (and anything a previous run left behind) holds before the first step
                self.at_start = torch.cuda.memory_allocated()
            if model is not None:
                self.attn = model.config._attn_implementation

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()  # the step's kernels are done, not just queued
            self.marks.append((time.perf_counter(), int(state.num_input_tokens_seen)))

        def on_train_end(self, args, state, control, **kwargs):
            if cuda:
                self.peak = torch.cuda.max_memory_allocated()

        def figures(self) -> dict:
            (t0, n0), (t1, n1) = self.marks[warmup - 1], self.marks[-1]  # from the end of the last warm-up step
            steps = len(self.marks) - warmup
            return {"tokens_per_s": (n1 - n0) / (t1 - t0), "timed_steps": steps, "timed_tokens": n1 - n0,
                    "seconds_per_step": (t1 - t0) / steps, "peak_gpu_bytes": self.peak,
                    "gpu_bytes_at_start": self.at_start, "attn_implementation": self.attn}

    return Meter()


def run_ours(model_dir: Path, out: Path, args, meter) -> dict:
    from tunelab.stages import finetune

    argv = ["--base", str(model_dir), "--quantization", "4bit", "--dtype", "bfloat16",
            "--data", "data/alpaca_sample.json", "--template", "alpaca_student",
            "--lora_r", str(LORA["r"]), "--lora_alpha", str(LORA["lora_alpha"]),
            "--lora_dropout", str(LORA["lora_dropout"]), "--lora_target_modules", "all-linear",
            "--packing", "true", "--max_length", str(args.max_length),
            "--per_device_train_batch_size", str(args.batch_size),
            "--max_steps", str(args.warmup + args.steps), "--logging_steps", "5", "--save_strategy", "no",
            "--disable_tqdm", "true",
            "--report_to", "none", "--include_num_input_tokens_seen", "true", "--seed", "0",  # no padding to count
            "--output_dir", str(out), "--overwrite", "true"]
    finetune.finetune(argv, callbacks=[meter])
    return meter.figures()


def plain_dataset(model_dir: Path, max_length: int):
    """input_ids / attention_mask / labels with the prompt masked, as a plain QLoRA script would build them."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from tunelab.prompts import student_prompt
    from tunelab.training.data import load_sft_examples

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = []
    for ex in load_sft_examples([ROOT / "data/alpaca_sample.json"], student_prompt("alpaca_student")).examples:
        prompt = tokenizer(ex["prompt"])["input_ids"]
        ids = (tokenizer(ex["prompt"] + ex["completion"])["input_ids"] + [tokenizer.eos_token_id])[:max_length]
        labels = ([-100] * len(prompt) + ids[len(prompt):])[: len(ids)]
        if any(label != -100 for label in labels):
            rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return tokenizer, Dataset.from_list(rows)


def run_plain(model_dir: Path, out: Path, args, meter) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (AutoModelForCausalLM, BitsAndBytesConfig, DataCollatorForSeq2Seq, Trainer,
                              TrainingArguments)

    tokenizer, dataset = plain_dataset(model_dir, args.max_length)
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=bnb, dtype=torch.bfloat16)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.plain_checkpointing)
    model = get_peft_model(model, LoraConfig(**LORA, target_modules="all-linear", task_type="CAUSAL_LM"))
    cuda = torch.cuda.is_available()
    training_args = TrainingArguments(
        output_dir=str(out), max_steps=args.warmup + args.steps, per_device_train_batch_size=args.plain_batch_size,
        bf16=cuda, gradient_checkpointing=args.plain_checkpointing, logging_steps=5, save_strategy="no",
        report_to="none", include_num_input_tokens_seen="non_padding", remove_unused_columns=False, seed=0,
        use_cpu=not cuda)
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset, callbacks=[meter],
                      data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
    trainer.train()
    return meter.figures()


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per path")
    parser.add_argument("--warmup", type=int, default=3, help="steps before timing starts")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=4, help="ours: packed rows of max-length per step")
    parser.add_argument("--plain-batch-size", type=int, default=8, help="plain: examples per step (Trainer's default)")
    parser.add_argument("--plain-checkpointing", action="store_true",
                        help="give plain activation checkpointing too (memory like for like)")
    parser.add_argument("--model-dir", type=Path, help="reuse (or keep) the random model here instead of a temp folder")
    parser.add_argument("--smoke", action="store_true", help="a tiny config on any device, to check the script")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser


def invalid(args: argparse.Namespace) -> str | None:
    return "--warmup and --steps must be at least 1" if args.warmup < 1 or args.steps < 1 else None



def measure(args: argparse.Namespace) -> dict:
    """Run the benchmark (on a GPU, or --smoke), print its figures, write --json; the results."""
    import torch

    cuda = torch.cuda.is_available()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.chdir(ROOT)  # the stage resolves data/ from here
    from datasets.utils.logging import disable_progress_bar

    from tunelab.stages.common import quiet_libraries

    quiet_libraries()
    disable_progress_bar()
    sizes = SMOKE if args.smoke else LLAMA2_7B
    device = "cuda" if cuda else "cpu"
    name = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"{'tiny smoke config' if args.smoke else 'Llama-2-7B architecture'} (hidden {sizes['hidden_size']}, "
          f"{sizes['num_hidden_layers']} layers), random weights, NF4; max_length {args.max_length}; "
          f"{args.warmup} + {args.steps} steps per path; {name}; torch {torch.__version__}", flush=True)

    with tempfile.TemporaryDirectory(prefix="tunelab-qlora-") as tmp:
        tmp = Path(tmp)
        model_dir = args.model_dir or tmp / "model"
        start = time.perf_counter()
        if not (model_dir / "config.json").exists():
            build_model(model_dir, sizes, device)
            free_memory()
            print(f"built and saved the random model in {time.perf_counter() - start:.0f} s", flush=True)
        results = {}
        for path, train in (("ours", run_ours), ("plain", run_plain)):
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the stage's summary, the trainers' log lines
                results[path] = train(model_dir, tmp / path, args, meter(args.warmup))
            free_memory()
            r = results[path]
            peak = (f"{r['peak_gpu_bytes'] / 2**30:.1f} GiB ({r['gpu_bytes_at_start'] / 2**30:.1f} GiB at the start)"
                    if r["peak_gpu_bytes"] is not None else "n/a (no GPU)")
            print(f"{path:>5}: {r['tokens_per_s']:,.0f} real tokens/s ({r['seconds_per_step']:.2f} s/step, "
                  f"{r['timed_tokens'] / r['timed_steps']:,.0f} tokens/step), peak {peak}, "
                  f"attention {r['attn_implementation']}; {time.perf_counter() - start:.0f} s with loading",
                  flush=True)

    ours, plain = results["ours"], results["plain"]
    results["ratio_tokens_per_s"] = ours["tokens_per_s"] / plain["tokens_per_s"]
    print()
    print(f"tokens/s ours / plain: {results['ratio_tokens_per_s']:.2f}x")
    if (ratio := peak_memory_ratio(results, "ours", "plain")) is not None:
        print(f"peak GPU memory ours / plain: {ratio:.2f}x")
    return save_results(args, results, device=name, max_length=args.max_length, batch_size=args.batch_size,
                        plain_batch_size=args.plain_batch_size, plain_checkpointing=args.plain_checkpointing)


def main(argv: list[str] | None = None) -> int:
    return gpu_script_main("gpu_qlora.py", NEEDS, build_parser, invalid, measure, argv)


def suite_entry(args: argparse.Namespace, results: dict) -> dict:
    """What bench/suite.py records of a measured run."""
    ours, plain = results["ours"], results["plain"]
    return {
        "measures": f"QLoRA training real tokens/s, random {'tiny smoke' if args.smoke else 'Llama-2-7B'} model, "
                    f"max_length {args.max_length}, {results['device']}"
                    + (f"; peak memory ours / plain {results['ratio_peak_memory']:.2f}x"
                       if "ratio_peak_memory" in results else ""),
        "figure": {"label": "tunelab finetune stage", "value": ours["tokens_per_s"], "unit": "tokens/s"},
        "baseline": {"label": "plain transformers + peft", "value": plain["tokens_per_s"], "unit": "tokens/s"},
        "ratio": {"value": results["ratio_tokens_per_s"], "label": "ours / plain"},
        "target": None, "met": None, "missed": [],
        "sizes": {"steps": args.steps, "warmup": args.warmup, "smoke": args.smoke},
        "details": results,
    }


def run(quick: bool = True, **sizes) -> dict:
    """bench/suite.py's entry: QUICK sizes (or the command line's defaults), `sizes` overriding."""
    return gpu_suite_run(build_parser, invalid, measure, suite_entry, NEEDS, {**(QUICK if quick else {}), **sizes})


if __name__ == "__main__":
    sys.exit(main())

"""LLaVA-1.5-7B QLoRA on a GPU: a few steps of the finetune stage on generated images, 4-bit vs bf16 weights.

    .venv/bin/python bench/gpu_llava_qlora.py [--steps 10] [--warmup 3] [--json FILE]
    .venv/bin/python bench/gpu_llava_qlora.py --smoke      # a tiny config, any device: checks the plumbing only

Needs a CUDA GPU (about 40 GB free, a few minutes on an H200); without one it prints SKIPPED and exits 0.

Model: the architecture of llava-hf/llava-1.5-7b-hf (CLIP ViT-L/14 at 336 pixels, 24 layers; a two-layer
GELU projector; Vicuna-7B, i.e. Llama-2-7B with a 32,064-token vocabulary) with random weights, built on
the GPU in bf16 and saved once to a temporary folder (about 14 GB), with a LLaVA 1.5 processor (336-pixel
tiles of 14-pixel patches: 576 image tokens) around the tiny model's tokenizer. No download.
Data: --images generated pictures (shapes on a background, several sizes), each with a question and an
answer about it, written as the generate stage's moderation_qa.chat.jsonl records.
Runs, one after the other, the finetune stage in process as `python finetune/train.py --config llava_student`
runs it (LoRA r 16 on the language model's projections; vision tower and projector frozen; on CUDA bf16 and
activation checkpointing; 4 images per device step, 4 accumulated):
  * QLoRA: the config's 4-bit NF4 language model, with the stage's QLoRA optimizer, paged 8-bit AdamW;
  * bf16 LoRA: the same with --quantization none, as the baseline, given the same optimizer on a GPU so
    that only the weights differ. (The QLoRA run's peft `prepare_model_for_kbit_training` also keeps the
    vision tower, projector, embeddings and lm_head in fp32, about 1.2 GB: part of what QLoRA costs.)
Figures: peak GPU memory while training (`torch.cuda.max_memory_allocated`, reset when training starts,
so the weights count; paged optimizer states live outside it and are small for LoRA), the memory held when
training starts (a run that left memory behind would show there), seconds per optimizer step and tokens
per second over the steps after --warmup
(every token of the batches: image tokens, and the little padding the records' near-equal lengths need).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _sizes import gpu_script_main, gpu_suite_run, peak_memory_ratio, save_results  # bench/ helpers (on sys.path)
from gpu_qlora import LLAMA2_7B, free_memory, meter

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"steps": 3, "warmup": 2}
NEEDS = "4-bit LLaVA-1.5-7B training"  # why it needs a GPU, for the SKIPPED line

# vision_config of llava-hf/llava-1.5-7b-hf: openai/clip-vit-large-patch14-336.
CLIP_L_336 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5)
VICUNA_7B = {k: v for k, v in LLAMA2_7B.items() if k not in ("bos_token_id", "eos_token_id")} | {"vocab_size": 32064}
SMOKE_VISION = dict(CLIP_L_336, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    image_size=56, projection_dim=32)
SMOKE_TEXT = dict(VICUNA_7B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=4)
SHAPES = ["circle", "square", "triangle"]
COLOURS = {"red": (200, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 200), "yellow": (230, 200, 40)}
GiB = 2**30


def build_model(out: Path, vision: dict, text: dict, device: str) -> Path:
    """A random LLaVA 1.5 of these sizes, built on `device` in bf16, saved with its processor."""
    import torch
    from transformers import GenerationConfig, LlavaForConditionalGeneration

    from tunelab.tiny import llava_parts

    config, processor, tokenizer = llava_parts(vision, text)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    del model
    return out


def write_data(folder: Path, count: int) -> Path:
    """`count` pictures and a chat record per picture, as the generate stage writes image QA pairs."""
    import random

    from PIL import Image, ImageDraw

    from tunelab.generation.moderation_qa import pair_to_chat

    rng = random.Random(0)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        size = rng.choice([(336, 336), (640, 480), (480, 640), (500, 375)])
        shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
        picture = Image.new("RGB", size, tuple(rng.randrange(120, 240) for _ in range(3)))
        draw = ImageDraw.Draw(picture)
        w, h = size
        box = (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
        if shape == "circle":
            draw.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            draw.rectangle(box, fill=COLOURS[colour])
        else:
            draw.polygon([(w // 2, h // 4), (w // 4, 3 * h // 4), (3 * w // 4, 3 * h // 4)], fill=COLOURS[colour])
        path = images / f"picture_{i:03d}.png"
        picture.save(path)
        pair = {"id": f"picture_{i:03d}", "instruction": "Describe the picture attached to this post. Is anything in it "
                "harmful?", "input": f"Post {i}: look what I drew today.", "image": str(path),
                "output": f"The picture shows a {colour} {shape} in the middle of a plain background, {w} by {h} "
                          "pixels. Nothing in it is harmful: it is a simple drawing with no text, people or symbols."}
        lines.append(json.dumps(pair_to_chat(pair)))
    data = folder / "moderation_qa.chat.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return data


def run_stage(model_dir: Path, data: Path, out: Path, quantization: str, args, meter) -> dict:
    from tunelab.stages import finetune

    argv = ["--config", "llava_student", "--base", str(model_dir), "--data", str(data),
            "--images_root", str(data.parent), "--quantization", quantization, "--eval_split", "0",
            "--eval_strategy", "no", "--max_steps", str(args.warmup + args.steps), "--save_strategy", "no",
            "--logging_steps", "1", "--disable_tqdm", "true", "--report_to", "none",
            "--include_num_input_tokens_seen", "true", "--output_dir", str(out), "--overwrite", "true"]
    if args.smoke:  # a CPU: small steps
        argv += ["--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1"]
    else:  # the same optimizer for both runs (the stage picks it for 4-bit bases only)
        argv += ["--optim", "paged_adamw_8bit"]
    finetune.finetune(argv, callbacks=[meter])
    return meter.figures()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="steps before timing starts")
    parser.add_argument("--images", type=int, default=256, help="generated pictures (one QA record each)")
    parser.add_argument("--model-dir", type=Path, help="reuse (or keep) the random model here instead of a temp folder")
    parser.add_argument("--smoke", action="store_true", help="a tiny config on any device, to check the script")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser


def invalid(args: argparse.Namespace) -> str | None:
    if args.warmup < 1 or args.steps < 1 or args.images < 1:
        return "--warmup, --steps and --images must be at least 1"
    return None



def measure(args: argparse.Namespace) -> dict:
    """Run the benchmark (on a GPU, or --smoke), print its figures, write --json; the results."""
    import torch

    cuda = torch.cuda.is_available()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.chdir(ROOT)  # the stage finds finetune/configs from here
    from datasets.utils.logging import disable_progress_bar

    from tunelab.stages.common import quiet_libraries

    quiet_libraries()
    disable_progress_bar()
    vision, text = (SMOKE_VISION, SMOKE_TEXT) if args.smoke else (CLIP_L_336, VICUNA_7B)
    name = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"{'tiny smoke config' if args.smoke else 'LLaVA-1.5-7B architecture'} (CLIP {vision['num_hidden_layers']} "
          f"layers at {vision['image_size']} px; text hidden {text['hidden_size']}, {text['num_hidden_layers']} layers), "
          f"random weights; {args.warmup} + {args.steps} steps per run; {name}; torch {torch.__version__}", flush=True)

    with tempfile.TemporaryDirectory(prefix="tunelab-llava-qlora-") as tmp:
        tmp = Path(tmp)
        model_dir = args.model_dir or tmp / "model"
        start = time.perf_counter()
        if not (model_dir / "config.json").exists():
            build_model(model_dir, vision, text, "cuda" if cuda else "cpu")
            free_memory()
            print(f"built and saved the random model in {time.perf_counter() - start:.0f} s", flush=True)
        data = write_data(tmp / "generate", args.images)
        results = {}
        for run, quantization in (("qlora", "4bit"), ("bf16_lora", "none")):
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the stage's summary, the trainer's log lines
                results[run] = run_stage(model_dir, data, tmp / run, quantization, args, meter(args.warmup))
            free_memory()
            r = results[run]
            peak = (f"{r['peak_gpu_bytes'] / GiB:.1f} GiB ({r['gpu_bytes_at_start'] / GiB:.1f} GiB at the start)"
                    if r["peak_gpu_bytes"] is not None else "n/a (no GPU)")
            print(f"{run:>9}: peak {peak}, {r['seconds_per_step']:.2f} s/step, {r['tokens_per_s']:,.0f} tokens/s "
                  f"({r['timed_tokens'] / r['timed_steps']:,.0f} tokens/step), attention {r['attn_implementation']}; "
                  f"{time.perf_counter() - start:.0f} s with loading", flush=True)

    qlora, bf16 = results["qlora"], results["bf16_lora"]
    results["ratio_tokens_per_s"] = qlora["tokens_per_s"] / bf16["tokens_per_s"]
    print()
    if (ratio := peak_memory_ratio(results, "qlora", "bf16_lora")) is not None:
        print(f"peak GPU memory QLoRA / bf16 LoRA: {ratio:.2f}x")
    print(f"tokens/s QLoRA / bf16 LoRA: {results['ratio_tokens_per_s']:.2f}x")
    return save_results(args, results, device=name, images=args.images)


def main(argv: list[str] | None = None) -> int:
    return gpu_script_main("gpu_llava_qlora.py", NEEDS, build_parser, invalid, measure, argv)


def suite_entry(args: argparse.Namespace, results: dict) -> dict:
    """What bench/suite.py records of a measured run."""
    qlora, bf16 = results["qlora"], results["bf16_lora"]
    if "ratio_peak_memory" in results:
        figure = {"label": "QLoRA peak memory", "value": qlora["peak_gpu_bytes"] / GiB, "unit": "GiB"}
        baseline = {"label": "bf16 LoRA peak memory", "value": bf16["peak_gpu_bytes"] / GiB, "unit": "GiB"}
        ratio = {"value": results["ratio_peak_memory"], "label": "QLoRA / bf16 LoRA"}
    else:  # no GPU memory to read (--smoke on a CPU): speed instead
        figure = {"label": "QLoRA", "value": qlora["tokens_per_s"], "unit": "tokens/s"}
        baseline = {"label": "bf16 LoRA", "value": bf16["tokens_per_s"], "unit": "tokens/s"}
        ratio = {"value": results["ratio_tokens_per_s"], "label": "QLoRA / bf16 LoRA"}
    return {
        "measures": f"LLaVA QLoRA training, random {'tiny smoke' if args.smoke else 'LLaVA-1.5-7B'} model, "
                    f"{results['device']}; s/step QLoRA {qlora['seconds_per_step']:.2f}, bf16 LoRA "
                    f"{bf16['seconds_per_step']:.2f}",
        "figure": figure, "baseline": baseline, "ratio": ratio,
        "target": None, "met": None, "missed": [],
        "sizes": {"steps": args.steps, "warmup": args.warmup, "images": args.images, "smoke": args.smoke},
        "details": results,
    }


def run(quick: bool = True, **sizes) -> dict:
    """bench/suite.py's entry: QUICK sizes (or the command line's defaults), `sizes` overriding."""
    return gpu_suite_run(build_parser, invalid, measure, suite_entry, NEEDS, {**(QUICK if quick else {}), **sizes})


if __name__ == "__main__":
    sys.exit(main())

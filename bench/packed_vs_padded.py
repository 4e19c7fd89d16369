"""Packing against padding in the finetune stage: real (non-padding) tokens per second of SFT steps.

    .venv/bin/python bench/packed_vs_padded.py [--model smollm2] [--rounds 2] [--steps 10] [--batch-size 8]

Both sides are `tunelab.stages.finetune.finetune([...])` in process with the same settings as
bench/sft_step_time.py (LoRA r 8 on every linear layer, max_length 256, the stage's default precision),
on data/alpaca_sample.json: one with packing (TRL's bfd, whole examples in padding-free rows of
max_length), one with padded batches of examples. They run in lockstep (one optimizer step each in
turn, rounds swapping which starts), so load from elsewhere hits both alike. Figures: real tokens per
second over the timed steps, from the Trainer's own count (include_num_input_tokens_seen: non_padding
for the padded side; every token of the packed rows, which hold no padding), and the median step time.
The model is SmolLM2-135M-Instruct by default (random: the random Llama of sft_step_time). Target: packed
at least 1.5x the padded real tokens per second. Exits 1 if missed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import threading
from pathlib import Path

from _sizes import script_main  # bench/ is on sys.path when a script in it runs
from sft_step_time import ROOT, Lockstep, run_ours, settings

TARGET = 1.5
QUICK = {"rounds": 2, "steps": 6}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("random", "smollm2"), default="smollm2")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each side (alternating which starts)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="steps left out at the start of every run")
    parser.add_argument("--batch-size", type=int, default=8, help="rows (packed) or examples (padded) per step")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--bf16", choices=("auto", "true", "false"), default="auto")
    parser.add_argument("--hidden", type=int, default=256, help="--model random only")
    parser.add_argument("--layers", type=int, default=4, help="--model random only")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser


def measure(args: argparse.Namespace) -> tuple[dict, list[str]]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.chdir(ROOT)
    import torch

    from tunelab.stages.common import quiet_libraries

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    quiet_libraries()
    args.packing = False  # settings() reads it; each side sets its own
    rates: dict[str, list[float]] = {"packed": [], "padded": []}
    steps: dict[str, list[float]] = {"packed": [], "padded": []}
    with tempfile.TemporaryDirectory(prefix="tunelab-bench-") as tmp:
        tmp = Path(tmp)
        if args.model == "smollm2":
            from tunelab.models import resolve_model

            model_dir = Path(resolve_model("tunelab:smollm2"))
        else:
            from tunelab.tiny import build_tiny_llama

            model_dir = build_tiny_llama(tmp / "model", hidden_size=args.hidden, layers=args.layers)
        for r in range(args.rounds):
            order = ("packed", "padded") if r % 2 == 0 else ("padded", "packed")
            lockstep = Lockstep(order)
            errors: list[BaseException] = []

            def work(side: str, out: Path, lockstep=lockstep, errors=errors) -> None:
                torch.set_num_threads(threads)
                try:
                    run_ours(model_dir, out, args, lockstep.callback(side), packing=side == "packed")
                except BaseException as e:  # noqa: BLE001 (re-raised below, in the main thread)
                    errors.append(e)
                finally:
                    lockstep.release(side)

            workers = [threading.Thread(target=work, args=(side, tmp / f"{side}-{r}")) for side in order]
            with contextlib.redirect_stdout(io.StringIO()):
                lockstep.start(workers)
                for worker in workers:
                    worker.join()
            if errors:
                raise errors[0]
            for side in order:
                timed = lockstep.steps[side][args.warmup:]
                tokens = lockstep.tokens[side]
                rates[side].append((tokens[-1] - tokens[args.warmup - 1 if args.warmup else 0]) / sum(timed)
                                   if args.warmup else tokens[-1] / sum(timed))
                steps[side] += timed
            print(f"round {r + 1}: packed {rates['packed'][-1]:,.0f} real tokens/s, padded "
                  f"{rates['padded'][-1]:,.0f}", flush=True)
    packed, padded = statistics.median(rates["packed"]), statistics.median(rates["padded"])
    ratio = packed / padded
    results = {"model": args.model, "bf16": settings(args)["bf16"], "batch_size": args.batch_size,
               "max_length": args.max_length, "rounds": args.rounds, "steps": args.steps, "threads": threads,
               "packed_real_tokens_per_s": packed, "padded_real_tokens_per_s": padded, "ratio": ratio,
               "median_step_s": {side: statistics.median(v) for side, v in steps.items()}, "target": TARGET}
    print(f"packed {packed:,.0f} real tokens/s, padded {padded:,.0f}: {ratio:.2f}x (target >= {TARGET})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    missed = [] if ratio >= TARGET else [f"packing gives {ratio:.2f}x the padded real tokens/s (< {TARGET})"]
    return results, missed


def main(argv: list[str] | None = None) -> int:
    return script_main(build_parser, measure, argv)


def describe(args, results: dict, missed: list[str]) -> dict:
    return {
        "measures": f"real tokens/s of SFT steps (LoRA, {args.model}, batch {args.batch_size}, max_length "
                    f"{args.max_length}, bf16 {results['bf16']}), the finetune stage packed vs padded, in lockstep",
        "figure": {"label": "packed (bfd, padding-free)", "value": results["packed_real_tokens_per_s"],
                   "unit": "real tokens/s"},
        "baseline": {"label": "padded batches", "value": results["padded_real_tokens_per_s"], "unit": "real tokens/s"},
        "ratio": {"value": results["ratio"], "label": "packed / padded"},
        "target": f">= {TARGET}x", 
        "sizes": {"model": args.model, "rounds": args.rounds, "steps": args.steps, "batch_size": args.batch_size},
    }


if __name__ == "__main__":
    sys.exit(main())

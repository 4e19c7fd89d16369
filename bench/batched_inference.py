"""Batched greedy inference vs one example at a time: same answers, how much faster.

    .venv/bin/python bench/batched_inference.py [--prompts 64] [--batch-size 16] [--max-new-tokens 32]
        [--hidden 64 --layers 2] [--threads 1] [--rounds 3]

Both sides run `tunelab.teachers.decoding.generate_texts`, the path inference.py takes in process: the
baseline with batch_size 1, the candidate with --batch-size (left padding, length-sorted batches),
greedy, fp32, on a random Llama: the tiny tunelab:tiny-llama by default, or a larger one built
here (--hidden 256 --layers 4) so that compute, not Python overhead, dominates each step. Prompts
are Alpaca records rendered with the student template, drawn at random (seeded) from
../shared/data/alpaca/alpaca_data.json when present, else from data/alpaca_heldout.json, so their
lengths vary (printed).

Timing is interleaved: prompts are sorted by length as generate_texts sorts them, and each batch
of --batch-size prompts is timed batched and then one at a time, so a CPU shared with other jobs
slows both sides alike; --rounds repeats the whole pass and the median ratio is reported.
--threads 1 by default: on a busy machine OpenMP's spinning workers slow small matmuls by 10x
and more, which would measure the neighbours, not batching.
Targets: identical greedy outputs (every mismatch is listed) and a speedup of at least 5x.
Exits 1 if either is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _sizes import script_main  # bench/ is on sys.path when a script in it runs

ROOT = Path(__file__).resolve().parents[1]
SHARED_ALPACA = ROOT.parent / "shared" / "data" / "alpaca" / "alpaca_data.json"
TARGET_SPEEDUP = 5.0
# bench/suite.py's quick mode: 2 interleaved rounds instead of 3.
QUICK = {"rounds": 2}


def load_prompts(n: int, seed: int, tokenizer) -> tuple[list[str], str]:
    from tunelab.prompts import load_template

    source = SHARED_ALPACA if SHARED_ALPACA.exists() else ROOT / "data" / "alpaca_heldout.json"
    records = json.loads(source.read_text(encoding="utf-8"))
    random.Random(seed).shuffle(records)
    template = load_template("alpaca_student")
    prompts = []
    for r in records:  # within the tiny model's 1,024 positions, with room for the answer
        prompt = template.render(instruction=r["instruction"], input=r.get("input", ""))
        if len(tokenizer(prompt)["input_ids"]) <= 512:
            prompts.append(prompt)
            if len(prompts) == n:
                break
    if len(prompts) < n:  # the shipped 40 records: repeat them
        prompts = (prompts * (n // len(prompts) + 1))[:n]
    return prompts, str(source)


def first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64, help="64 with --layers 2 is tunelab:tiny-llama itself")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads; 0 keeps torch's default")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    return parser


def measure(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """Run the benchmark, print its figures, write --json; the results and the targets missed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from tunelab.teachers.decoding import generate_texts
    from tunelab.models import load_causal_lm, load_tokenizer, resolve_model
    from tunelab.stages.common import quiet_libraries
    from tunelab.teachers.base import SamplingParams
    from tunelab.tiny import build_tiny_llama

    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if (args.hidden, args.layers) == (64, 2):
            path = resolve_model("tunelab:tiny-llama")
        else:
            path = str(build_tiny_llama(Path(tmp) / "llama", hidden_size=args.hidden, layers=args.layers))
        tokenizer = load_tokenizer(path)
        model = load_causal_lm(path, dtype="float32").eval()
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    prompts, source = load_prompts(args.prompts, args.seed, tokenizer)
    lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i], reverse=True)  # as generate_texts sorts
    chunks = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0)

    def timed_generate(chunk, batch_size):
        start = time.perf_counter()
        out = generate_texts(model, tokenizer, [prompts[i] for i in chunk], params, batch_size=batch_size,
                             progress=False)
        return time.perf_counter() - start, out

    timed_generate(chunks[-1][:2], 2)  # warm-up: first-call allocations and kernel selection
    ratios, batched_s, single_s = [], [], []
    batched_text: dict[int, str] = {}
    single_text: dict[int, str] = {}
    tokens = 0
    for _ in range(args.rounds):
        tb = ts = 0.0
        tokens = 0
        for chunk in chunks:
            dt, out = timed_generate(chunk, args.batch_size)
            tb += dt
            batched_text.update(zip(chunk, (g.text for g in out)))
            tokens += sum(g.completion_tokens for g in out)
            dt, out = timed_generate(chunk, 1)
            ts += dt
            single_text.update(zip(chunk, (g.text for g in out)))
        batched_s.append(tb)
        single_s.append(ts)
        ratios.append(ts / tb)
    mismatches = [{"prompt": i, "prompt_tokens": lengths[i], "first_differing_char": first_difference(
        batched_text[i], single_text[i]), "batched": batched_text[i][:80], "single": single_text[i][:80]}
        for i in range(len(prompts)) if batched_text[i] != single_text[i]]
    speedup = statistics.median(ratios)
    results = {
        "model": f"random Llama, hidden {args.hidden}, {args.layers} layers, {params_m:.2f}M params, fp32",
        "prompts": len(prompts), "prompt_source": source,
        "prompt_tokens_min_median_max": [min(lengths), int(statistics.median(lengths)), max(lengths)],
        "max_new_tokens": args.max_new_tokens, "completion_tokens_per_pass": tokens, "batch_size": args.batch_size,
        "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "rounds": args.rounds,
        "one_at_a_time_s": [round(s, 2) for s in single_s], "batched_s": [round(s, 2) for s in batched_s],
        "speedup_per_round": [round(r, 2) for r in ratios], "speedup_median": round(speedup, 2),
        "target_speedup": TARGET_SPEEDUP, "identical_outputs": not mismatches, "mismatches": len(mismatches),
    }
    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    for m in mismatches[:10]:
        print(f"MISMATCH prompt {m['prompt']} ({m['prompt_tokens']} tokens) from char {m['first_differing_char']}: "
              f"batched {m['batched']!r} vs single {m['single']!r}")
    if args.json:
        Path(args.json).write_text(json.dumps(results | {"mismatch_details": mismatches}, indent=2) + "\n")
    missed = []
    if mismatches:
        missed.append(f"{len(mismatches)} of {len(prompts)} greedy outputs differ between batched and one at a time")
    if speedup < TARGET_SPEEDUP:
        missed.append(f"batched is {speedup:.2f}x one at a time, below {TARGET_SPEEDUP}x")
    return results, missed


def main(argv: list[str] | None = None) -> int:
    return script_main(build_parser, measure, argv)


def describe(args, results: dict, missed: list[str]) -> dict:
    return {
        "measures": f"greedy generation of {results['prompts']} prompts x {args.max_new_tokens} new tokens, "
                    f"{results['model']}, {results['threads']} thread(s)",
        "figure": {"label": f"batched ({args.batch_size})", "value": statistics.median(results["batched_s"]),
                   "unit": "s/pass"},
        "baseline": {"label": "one at a time", "value": statistics.median(results["one_at_a_time_s"]),
                     "unit": "s/pass"},
        # the median of the rounds' ratios, each round's two sides timed batch by batch side by side
        "ratio": {"value": results["speedup_median"], "label": "one at a time / batched"},
        "target": f">= {TARGET_SPEEDUP:.0f}x, identical outputs", 
        "sizes": {"prompts": results["prompts"], "rounds": args.rounds, "batch_size": args.batch_size,
                  "max_new_tokens": args.max_new_tokens},
    }


if __name__ == "__main__":
    sys.exit(main())

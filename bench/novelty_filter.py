"""Benchmark the exact ROUGE-L novelty filter against Alpaca's naive loop on Alpaca's 52,002 instructions.

Measures, in one process, seeded with the 175 seed instructions of data/seed_tasks.jsonl:
  * the fast `NoveltyFilter` over all 52,002 instructions (measured; target <= 60 s);
  * the naive loop and the fast filter on the first N instructions (measured), which must decide identically;
  * the naive loop over all 52,002 (estimated): it makes one `_score_lcs` call per candidate per seed or
    kept instruction, a count the fast run's decisions give exactly, times the per-call cost measured on
    the sample (target: naive estimate / fast measured >= 100).
Exits 1 if the decisions differ or a target is missed.

Run:  .venv/bin/python bench/novelty_filter.py [--alpaca PATH] [--sample 2000] [--limit N] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from tunelab.generation.novelty import NaiveNoveltyFilter, NoveltyFilter

from _sizes import script_main  # bench/ is on sys.path when a script in it runs
from _table import print_table

ROOT = Path(__file__).resolve().parents[1]
MAX_FAST_SECONDS = 60.0
MIN_RATIO = 100.0
# bench/suite.py's quick mode: every instruction still goes through the fast filter (~10 s), so the
# estimate covers all of them; the naive loop's per-call cost is measured on a smaller sample.
QUICK = {"sample": 500}


def time_filter(filter_cls: type, threshold: float, seeds: list[str],
                texts: list[str]) -> tuple[list[tuple[bool, float]], float]:
    """Every keep() result and the seconds taken, building the seeded filter included."""
    start = time.perf_counter()
    novelty = filter_cls(threshold, seeds)
    results = [novelty.keep(text) for text in texts]
    return results, time.perf_counter() - start


def naive_calls(seeds: int, results: list[tuple[bool, float]]) -> int:
    """`_score_lcs` calls the naive loop makes: one per candidate per seed or instruction kept before it."""
    calls, size = 0, seeds
    for kept, _ in results:
        calls += size
        size += kept
    return calls


def differences(fast: list[tuple[bool, float]], naive: list[tuple[bool, float]]) -> int:
    """Candidates decided differently, or dropped with a different score."""
    return sum(f[0] != n[0] or (not n[0] and f[1] != n[1]) for f, n in zip(fast, naive, strict=True))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alpaca", type=Path, default=ROOT.parent / "shared/data/alpaca/alpaca_data.json")
    parser.add_argument("--seeds", type=Path, default=ROOT / "data/seed_tasks.jsonl")
    parser.add_argument("--sample", type=int, default=2000, help="instructions the naive loop is timed on")
    parser.add_argument("--limit", type=int, help="use only the first N instructions (the speedup estimate then "
                        "covers those N only)")
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser


def measure(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """Run the benchmark, print its table, write --json; the results and the targets missed."""
    seeds = [json.loads(line)["instruction"] for line in args.seeds.open() if line.strip()]
    texts = [row["instruction"] for row in json.loads(args.alpaca.read_text())][: args.limit]
    sample = texts[: args.sample]
    print(f"{len(texts):,} instructions, {len(seeds)} seeds, threshold {args.threshold}, "
          f"naive sample {len(sample):,}; python {platform.python_version()}, {os.cpu_count()} CPUs", flush=True)

    fast_full, fast_full_s = time_filter(NoveltyFilter, args.threshold, seeds, texts)
    kept = sum(k for k, _ in fast_full)
    print(f"fast, all: {fast_full_s:.1f} s", flush=True)
    naive_sample, naive_sample_s = time_filter(NaiveNoveltyFilter, args.threshold, seeds, sample)
    print(f"naive, sample: {naive_sample_s:.1f} s", flush=True)
    fast_sample, fast_sample_s = time_filter(NoveltyFilter, args.threshold, seeds, sample)

    differ = differences(fast_sample, naive_sample) + differences(fast_full[: len(sample)], naive_sample)
    sample_calls = naive_calls(len(seeds), naive_sample)
    per_call_s = naive_sample_s / sample_calls
    full_calls = naive_calls(len(seeds), fast_full)  # the fast run's decisions are the naive loop's
    naive_full_est_s = per_call_s * full_calls
    ratio = naive_full_est_s / fast_full_s
    results = {
        "instructions": len(texts), "seeds": len(seeds), "threshold": args.threshold, "sample": len(sample),
        "kept": kept, "dropped": len(texts) - kept,
        "fast_full_seconds": fast_full_s, "fast_sample_seconds": fast_sample_s,
        "naive_sample_seconds": naive_sample_s, "naive_sample_calls": sample_calls,
        "naive_seconds_per_call": per_call_s, "sample_speedup": naive_sample_s / fast_sample_s,
        "naive_full_calls": full_calls, "naive_full_seconds_estimated": naive_full_est_s,
        "full_speedup_estimated": ratio, "sample_decisions_differ": differ,
    }

    rows = [
        ("measured", f"fast filter, all {len(texts):,}", f"{fast_full_s:.1f} s",
         f"kept {kept:,}, dropped {len(texts) - kept:,}"),
        ("measured", f"fast filter, first {len(sample):,}", f"{fast_sample_s:.2f} s", ""),
        ("measured", f"naive loop, first {len(sample):,}", f"{naive_sample_s:.1f} s",
         f"{sample_calls:,} LCS calls, {per_call_s * 1e6:.1f} us each"),
        ("measured", "speedup on the sample", f"{naive_sample_s / fast_sample_s:,.0f}x",
         "identical decisions" if not differ else f"{differ} DIFFERENT decisions"),
        ("estimated", f"naive loop, all {len(texts):,}", f"{naive_full_est_s:,.0f} s",
         f"{full_calls:,} LCS calls x measured cost ({naive_full_est_s / 3600:.1f} h)"),
        ("estimated", "speedup on all", f"{ratio:,.0f}x", "naive estimate / fast measured"),
    ]
    print()
    print_table(rows)

    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    missed = []
    if differ:
        missed.append(f"fast and naive decisions differ on {differ} of the sample")
    if fast_full_s > MAX_FAST_SECONDS:
        missed.append(f"fast full run took {fast_full_s:.1f} s > {MAX_FAST_SECONDS:.0f} s")
    if ratio < MIN_RATIO:
        missed.append(f"estimated speedup {ratio:.0f}x < {MIN_RATIO:.0f}x")
    return results, missed


def main(argv: list[str] | None = None) -> int:
    return script_main(build_parser, measure, argv)


def describe(args, results: dict, missed: list[str]) -> dict:
    # The x100 target is for the whole file: the naive loop's cost grows with the instructions kept, so on
    # the first --limit only differing decisions or a slow fast filter are a definite miss.
    definite_miss = results["sample_decisions_differ"] or results["fast_full_seconds"] > MAX_FAST_SECONDS
    met = False if definite_miss else None if args.limit is not None else not missed
    return {
        "measures": f"ROUGE-L novelty filter over {results['instructions']:,} Alpaca instructions "
                    f"(seeded with {results['seeds']})",
        "figure": {"label": "fast filter", "value": results["fast_full_seconds"], "unit": "s"},
        "baseline": {"label": f"naive loop (estimated from {results['sample']:,} measured)",
                     "value": results["naive_full_seconds_estimated"], "unit": "s"},
        "ratio": {"value": results["full_speedup_estimated"], "label": "naive / fast"},
        "target": f"fast <= {MAX_FAST_SECONDS:.0f} s, >= {MIN_RATIO:.0f}x on the whole file, identical decisions",
        "met": met,
        "sizes": {"instructions": results["instructions"], "sample": results["sample"]},
    }


if __name__ == "__main__":
    sys.exit(main())

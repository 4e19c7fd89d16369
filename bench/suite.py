"""Run every benchmark in bench/ and print one table of the results: `make bench`, `make bench-full`.

    .venv/bin/python bench/suite.py [--full] [--only NAME ...] [--size NAME.SETTING=VALUE ...]
                                    [--out bench/results.json]

Each benchmark runs in a process of its own (torch thread settings, memory and working folder stay its
own) through its script's `run(quick, **sizes)`, and prints what it prints when run by hand. Quick sizes
(each script's QUICK) by default; --full uses the scripts' own defaults, the sizes their targets are
set for. --size overrides one setting of one benchmark (its command-line option, e.g.
`--size packing.limit=300`; the value is read as JSON, else as a string).

At the end: one table (the figure, its baseline measured in the same process, the ratio, the target
and whether it was met, the sizes, the wall time), written to --out as JSON with the date, the git
commit, the hardware and the mode, and next to it as markdown (.md). A benchmark that raises or dies
is recorded as failed and the others still run; the exit status is 1 if any failed. A missed target
is reported, not counted as a failure.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _sizes import suite_run  # bench/ is on sys.path: this script runs from it
from _table import markdown_table, print_table

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# Script name -> what it compares, in the order they run.
BENCHMARKS = {
    "novelty_filter": "dedup filter: exact ROUGE-L novelty filter vs Alpaca's naive loop",
    "http_teacher": "HTTP teacher: requests in flight vs one at a time",
    "sft_step_time": "SFT step time: tunelab's finetune stage vs plain TRL",
    "packing": "packing efficiency: TRL bfd packing vs padded batches",
    "packed_vs_padded": "SFT real tokens/s: the finetune stage packed vs padded (SmolLM2)",
    "batched_inference": "inference: batched vs one at a time",
    "smollm2_generation": "SmolLM2-135M tokens/s: batched, bf16, merged adapter, llama.cpp server vs one at a time",
    "label_probs": "label-token probabilities: the prompt's KV cache reused vs recomputed per label and place",
    "score_text": "scoring text pairs: evaluate/score.py vs the naive way",
    "gpu_qlora": "GPU QLoRA: tunelab vs plain transformers + peft (CUDA only)",
    "gpu_teacher": "GPU 34B teacher in 4-bit: batched vs one-at-a-time decoding (CUDA only)",
    "gpu_llava_qlora": "GPU LLaVA-1.5-7B QLoRA: peak memory, 4-bit vs bf16 LoRA (CUDA only)",
}
RESULT_KEYS = {"measures", "figure", "baseline", "ratio", "target", "met", "sizes"}


def parse_size(text: str) -> tuple[str, str, Any]:
    """`NAME.SETTING=VALUE` -> (NAME, SETTING, VALUE read as JSON, else the string itself)."""
    key, sep, raw = text.partition("=")
    name, dot, setting = key.partition(".")
    if not (sep and dot and setting):
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME.SETTING=VALUE")
    if name not in BENCHMARKS:
        raise argparse.ArgumentTypeError(f"{name!r} is not a benchmark: {', '.join(BENCHMARKS)}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name, setting.replace("-", "_"), value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the scripts' full sizes (slow) instead of quick ones")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), metavar="NAME",
                        help=f"run only these: {', '.join(BENCHMARKS)}")
    parser.add_argument("--size", type=parse_size, action="append", default=[], metavar="NAME.SETTING=VALUE",
                        help="override one setting of one benchmark, e.g. packing.limit=300 (repeatable)")
    parser.add_argument("--out", type=Path, default=BENCH / "results.json",
                        help="results as JSON; the markdown table goes next to it with .md")
    # Internal: run one benchmark in this process and write its result as JSON (NAME RESULT_FILE SIZES_JSON).
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    return parser


def work(name: str, quick: bool, sizes: dict, result_file: Path) -> None:
    """In the benchmark's own process: measure it at QUICK sizes (or its full ones), `sizes` overriding, and
    write the result, or the error, for the parent."""
    try:
        module = importlib.import_module(name)
        if hasattr(module, "run"):  # the GPU benchmarks, which decide themselves whether they can run here
            result = module.run(quick=quick, **sizes)
        else:
            result = suite_run(module.build_parser, module.measure, module.describe,
                               {**(module.QUICK if quick else {}), **sizes})
    except (Exception, SystemExit) as error:
        result_file.write_text(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        raise  # the traceback goes to the console with the benchmark's own output
    result_file.write_text(json.dumps({"result": result}, default=str))


def run_benchmark(name: str, quick: bool, sizes: dict) -> dict:
    """Run one benchmark in a child process; its entry for the results, whatever happened to it."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        result_file = Path(tmp) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, str(result_file), json.dumps(sizes)]
        if not quick:
            command.append("--full")
        start = time.perf_counter()
        # unbuffered, so its lines land in order with ours when the output goes to a pipe or a file
        process = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wall = time.perf_counter() - start
        reply = json.loads(result_file.read_text()) if result_file.exists() else {}
    entry: dict[str, Any] = {"name": name, "compares": BENCHMARKS[name], "overrides": sizes, "wall_s": wall}
    result = reply.get("result")
    if process.returncode != 0 or result is None:
        code = process.returncode
        died = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        return entry | {"status": "failed", "error": reply.get("error") or f"the benchmark's process {died}"}
    if "skipped" in result:
        return entry | {"status": "skipped", "reason": result["skipped"]}
    if lacking := RESULT_KEYS - set(result):
        return entry | {"status": "failed", "error": f"run() returned no {', '.join(sorted(lacking))}"}
    return entry | {"status": "ok"} | result


def hardware() -> dict:
    """What the run records also hold (tunelab.runs.hardware), plus the torch version."""
    import torch  # here, not at the top: the parent stays light while the benchmarks run

    from tunelab.runs import hardware as run_hardware

    return run_hardware() | {"torch": torch.__version__}


def number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def quantity(figure: dict, labelled: bool) -> str:
    unit = figure["unit"]
    text = f"{number(figure['value'])}{'' if unit == '%' else ' '}{unit}"
    return f"{figure['label']}: {text}" if labelled else text


def ratio_text(ratio: dict) -> str:
    value = ratio["value"]
    shown = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{shown}x {ratio['label']}"


def verdict(entry: dict) -> str:
    if entry["target"] is None:
        return "-"
    met = {True: "met", False: "MISSED", None: "not checked at these sizes"}[entry["met"]]
    return f"{met} ({entry['target']})"


def sizes_text(sizes: dict) -> str:
    return ", ".join(f"{k} {v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k} {v}"
                     for k, v in sizes.items())


def table_rows(entries: list[dict], labelled: bool) -> list[list[str]]:
    """One row per benchmark: name, figure, baseline, ratio, target, wall, sizes (or why it did not run).

    `labelled` names what the figure and the baseline are (the ratio's label says it in short).
    """
    rows = []
    for e in entries:
        wall = f"{e['wall_s']:.0f} s"
        if e["status"] == "ok":
            rows.append([e["name"], quantity(e["figure"], labelled), quantity(e["baseline"], labelled),
                         ratio_text(e["ratio"]), verdict(e), wall, sizes_text(e["sizes"])])
        else:
            why = e["error"] if e["status"] == "failed" else e["reason"]
            rows.append([e["name"], e["status"].upper(), "", "", "", wall, why])
    return rows


def hardware_line(report: dict) -> str:
    hw, load = report["hardware"], report["load_average"]
    gpus = ", ".join(hw.get("gpus") or []) or "none"
    return (f"{hw['cpu']}, {hw['cpu_count']} cores, {hw.get('memory_gib')} GiB RAM, GPU: {gpus}; "
            f"torch {hw['torch']}, Python {hw['python']}; load average {load['start'][0]:.1f} at the start, "
            f"{load['end'][0]:.1f} at the end")


def markdown(report: dict) -> str:
    git = report["git"]
    commit = "no git checkout" if not git["commit"] else \
        f"commit {git['commit'][:12]}" + (" with uncommitted changes" if git["dirty"] else "")
    header = ["Benchmark", "What is measured", "Figure", "Baseline (same run)", "Ratio", "Target", "Wall", "Sizes"]
    rows = []
    for e, row in zip(report["benchmarks"], table_rows(report["benchmarks"], labelled=True)):
        rows.append([row[0], e.get("measures", e["compares"]), *row[1:]])
    return (f"# Benchmark results\n\n{report['mode']} mode, {report['date']}, {commit}; "
            f"{report['wall_s'] / 60:.1f} minutes in all.\n\nHardware: {hardware_line(report)}.\n\n"
            + markdown_table(header, rows)
            + "".join(f"\n- {e['name']} missed: {line}" for e in report["benchmarks"] if e.get("met") is False
                      for line in e["missed"])
            + "\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        name, result_file, sizes = args.worker
        work(name, not args.full, json.loads(sizes), Path(result_file))
        return 0

    quick = not args.full
    names = [name for name in BENCHMARKS if not args.only or name in args.only]
    overrides: dict[str, dict] = {name: {} for name in names}
    for name, setting, value in args.size:
        if name in overrides:
            overrides[name][setting] = value
    load_start, start = os.getloadavg(), time.perf_counter()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    entries = []
    for name in names:
        print(f"\n=== {name} ({'quick' if quick else 'full'}): {BENCHMARKS[name]} ===", flush=True)
        entries.append(run_benchmark(name, quick, overrides[name]))
        print(f"=== {name}: {entries[-1]['status']} in {entries[-1]['wall_s']:.0f} s ===", flush=True)

    from tunelab.runs import git_state

    report = {"date": date, "mode": "quick" if quick else "full", "git": git_state(), "hardware": hardware(),
              "load_average": {"start": [round(x, 2) for x in load_start],
                               "end": [round(x, 2) for x in os.getloadavg()]},
              "wall_s": time.perf_counter() - start, "benchmarks": entries}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))

    print(f"\n{report['mode']} mode, {report['wall_s'] / 60:.1f} minutes; {hardware_line(report)}\n")
    print_table([["benchmark", "figure", "baseline (same run)", "ratio", "target", "wall", "sizes"],
                 *table_rows(entries, labelled=False)])
    print(f"\nwrote {args.out} and {args.out.with_suffix('.md')}")
    failed = [e["name"] for e in entries if e["status"] == "failed"]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

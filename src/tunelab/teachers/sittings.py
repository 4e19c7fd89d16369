"""What every sitting of a resumable teacher run spent, killed sittings included.

A run killed and rerun twenty times has twenty sittings; its cost is their sum, not the last one's.
Each sitting appends a start line to `sittings.jsonl` and, if it gets there, a finish line with the
counts only it knows (answers found in the cache, seconds). Every answer in the teacher cache carries
its sitting, arrival time and the sitting's retries so far, so a sitting that never finished is still
accounted for from its cache lines: answers received, tokens, retries, and seconds up to its last answer.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..records import append_jsonl

SITTINGS = "sittings.jsonl"


class SittingLog:
    """This process's sitting: `id` goes on every cache line it writes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        self.started = time.time()
        append_jsonl(self.path, [{"sitting": self.id, "event": "start", "at": round(self.started, 3)}])

    def finish(self, **counts: Any) -> None:
        now = time.time()
        append_jsonl(self.path, [{"sitting": self.id, "event": "finish", "at": round(now, 3),
                                  "seconds": round(now - self.started, 2), **counts}])


def _lines(path: Path):
    if not path.exists():
        return
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill
            if isinstance(row, dict):
                yield row


def summarize(log_path: str | os.PathLike, cache_path: str | os.PathLike) -> dict:
    """Each sitting in the log with what it received and spent, and the totals over all of them.

    `answers` counts answers stored (requests paid for and received); requests in flight when a sitting
    was killed are not known and not counted. `cached` (answers found already stored) and `seconds` are
    exact for finished sittings; for an interrupted one `seconds` runs to its last stored answer.
    """
    sittings: dict[str, dict] = {}
    for row in _lines(Path(log_path)):
        sid = row.get("sitting")
        if not isinstance(sid, str):
            continue
        entry = sittings.setdefault(sid, {"sitting": sid, "started": None, "finished": False, "answers": 0,
                                          "refused": 0, "prompt_tokens": 0, "completion_tokens": 0, "retried": 0,
                                          "cached": None, "seconds": None, "_last": None})
        if row.get("event") == "start":
            entry["started"] = row.get("at")
        elif row.get("event") == "finish":
            entry.update(finished=True, seconds=row.get("seconds"), cached=row.get("cached"))
            if isinstance(row.get("retried"), int):
                entry["retried"] = row["retried"]
    for row in _lines(Path(cache_path)):
        entry = sittings.get(row.get("sitting"))
        if entry is None:
            continue  # from a run before this one (the cache outlives --overwrite) or before sittings were kept
        response = row.get("response") if isinstance(row.get("response"), dict) else {}
        entry["answers"] += 1
        entry["refused"] += bool(response.get("error"))
        entry["prompt_tokens"] += int(response.get("prompt_tokens") or 0)
        entry["completion_tokens"] += int(response.get("completion_tokens") or 0)
        if not entry["finished"] and isinstance(row.get("retries_so_far"), int):
            entry["retried"] = max(entry["retried"], row["retries_so_far"])
        if isinstance(row.get("at"), (int, float)):
            entry["_last"] = max(entry["_last"] or 0, row["at"])
    listed = []
    for entry in sittings.values():
        last = entry.pop("_last")
        if not entry["finished"] and entry["started"] is not None:
            entry["seconds"] = round(max((last or entry["started"]) - entry["started"], 0.0), 2)
        if entry["started"] is not None:
            entry["started"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(entry["started"]))
        listed.append(entry)
    totals: dict[str, Any] = {"sittings": len(listed), "interrupted": sum(not e["finished"] for e in listed)}
    for key in ("answers", "refused", "prompt_tokens", "completion_tokens", "retried", "seconds"):
        totals[key] = round(sum(e[key] or 0 for e in listed), 2) if key == "seconds" else sum(e[key] or 0 for e in listed)
    totals["cached"] = sum(e["cached"] or 0 for e in listed)
    return {"each": listed, "total": totals}

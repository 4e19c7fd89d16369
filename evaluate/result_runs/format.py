"""Small formatting shared by the report's tables: intervals, deltas, minutes, machines."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tunelab.markdown import markdown_table


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def ci_text(entry: dict | None, digits: int = 3) -> str:
    if not entry or entry.get("value") is None:
        return "–"
    if entry.get("ci_low") is None:
        return f"{entry['value']:.{digits}f}"
    return f"{entry['value']:.{digits}f} [{entry['ci_low']:.{digits}f}, {entry['ci_high']:.{digits}f}]"


def delta_text(entry: dict | None, digits: int = 3) -> str:
    if not entry or entry.get("delta") is None:
        return "–"
    if entry.get("ci_low") is None:  # no resamples: the difference without an interval
        return f"{entry['delta']:+.{digits}f}"
    star = " *" if entry.get("excludes_zero") else ""
    return f"{entry['delta']:+.{digits}f} [{entry['ci_low']:+.{digits}f}, {entry['ci_high']:+.{digits}f}]{star}"


def minutes_text(provenance: dict) -> str:
    """A run's wall time, with the machine's 1-minute load average at its end where recorded (a machine
    shared with other work stretches it)."""
    seconds = provenance.get("seconds")
    if seconds is None:
        return "–"
    load = provenance.get("hardware", {}).get("load_average")
    text = f"{seconds / 60:.1f} min" + (f" (load {load[0]:.1f})" if load else "")
    summary = provenance.get("notes", {}).get("summary", {})
    if summary.get("resumed_from"):
        # a resumed training run: its command's time is only the last sitting's
        step = re.fullmatch(r"checkpoint-(\d+)", Path(summary["resumed_from"]).name)
        at = f"resumed at step {int(step.group(1)):,} of {summary.get('steps', 0):,}" if step else "resumed"
        text += " for the last sitting"
        if summary.get("train_seconds") is not None and summary.get("sittings"):
            text += f"; {summary['train_seconds'] / 60:.1f} min of training over {summary['sittings']} sittings ({at})"
        else:
            text += f" only ({at}; earlier training untimed)"
    return text


def machines_text(runs: list[tuple[str, dict]]) -> list[str]:
    """One line per machine (its CPU's name or platform, cores, GPUs) naming the runs recorded on it, so
    times are compared within a machine. A record without the CPU's name (older ones) joins the machine of
    the same platform and size when just one such machine is named."""
    groups: dict[tuple, dict[str, set[str]]] = {}  # (platform, cores, GPUs) -> CPU name ("" unknown) -> runs
    for run, provenance in runs:
        hw = provenance.get("hardware", {})
        key = (hw.get("platform", "?"), hw.get("cpu_count", "?"), tuple(hw.get("gpus") or []))
        groups.setdefault(key, {}).setdefault(hw.get("cpu") or "", set()).add(run)
    lines = []
    for (platform, count, gpus), by_cpu in groups.items():
        named = [cpu for cpu in by_cpu if cpu]
        if len(named) == 1 and "" in by_cpu:
            by_cpu[named[0]] |= by_cpu.pop("")
        lines += [f"{machine_text({'cpu': cpu, 'platform': platform, 'cpu_count': count, 'gpus': gpus})}: "
                  f"{', '.join(sorted(names))}" for cpu, names in by_cpu.items()]
    return sorted(lines)


def machine_text(hardware: dict) -> str:
    return (f"{hardware.get('cpu') or hardware.get('platform', '?')}, {hardware.get('cpu_count', '?')} cores, "
            f"{', '.join(hardware.get('gpus') or []) or 'no GPU'}")


def num_text(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return markdown_table(header, rows).splitlines()

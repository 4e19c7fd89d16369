"""A page for reading a run folder's data by hand: `<folder>/view.html`.

    tunelab view runs/generate          # kept records per dataset, rejects with reasons and prompts, stats
    tunelab view runs/inference         # predictions; a sweep's answers side by side, one column per setting
    python -m tunelab.report <folder>   # the same; an evaluation folder gets its report.html instead

A generate folder shows one table per dataset (`<stem>.alpaca.json`, `corpora/<corpus>_<split>.jsonl`),
one table of every reject (`*.rejects.jsonl`, `moderation.dropped.jsonl`, `corpora/skipped.jsonl`)
with a drop-down per source, stage and reason, `stats.json`, and where a row names its teacher
request (`provenance.request_key`) the exact prompt sent, read from `teacher_cache.jsonl` and
folded until opened. An inference folder shows `predictions.jsonl`, or for a sweep one row per input
and one column per setting (`predictions/<setting>.jsonl`, listed in `sweep.json`).

The page follows the evaluation report's rules (report/html.py): self-contained, every value
escaped, rows shipped as JSON and drawn with textContent, filtered, sorted and paged in the page.
Each table holds at most `max_rows` rows and says how many it left out. Columns with one value in
every row are listed once above their table instead of repeated in each row.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..records import atomic_write_text
from ..inference.files import PREDICTIONS, SWEEP_INDEX, id_key as _id_key, prediction_files as inference_files
from .html import (DEFAULT_MAX_EXAMPLES, REPORT_NAME, _Column, _example_columns, about_section, read_jsonl_rows,
                   read_run_files, render_page, rows_view, shared_texts_block, write_report)
from .tables import _kv_table, _records_table, _table, esc, flatten, fmt, json_blocks

VIEW_NAME = "view.html"
# Datasets in the order a generate run writes them; any other <stem>.alpaca.json follows.
DATASET_ORDER = ("self_instruct", "moderation_qa", "moderation_train", "moderation_test", "judged")
# JSONL datasets that are not instruction records: the preference pairs, and what they were made from.
JSONL_DATASETS = ("preferences.jsonl", "responses.jsonl", "judgments.jsonl")
# (file, source) of every kind of reject a generate run writes.
REJECT_FILES = (("self_instruct.rejects.jsonl", "self_instruct"), ("moderation_qa.rejects.jsonl", "moderation_qa"),
                ("moderation.dropped.jsonl", "moderation"), ("corpora/skipped.jsonl", "corpora"),
                ("responses.rejects.jsonl", "responses"), ("judged.rejects.jsonl", "judge"),
                ("preferences.rejects.jsonl", "preferences"))
TEACHER_CACHE = "teacher_cache.jsonl"
SENT = "prompt sent"  # the column of a row's request key, drawn as the prompt the teacher received
REJECT_FIRST = ("from", "stage", "reason")
GENERATE_MARKERS = ("stats.json", TEACHER_CACHE, "moderation.dropped.jsonl", "corpora/summary.json")
INFERENCE_MARKERS = (SWEEP_INDEX, PREDICTIONS)


@dataclass
class RunFolder:
    """What the page found in a run folder; `notes` are problems shown on the page."""

    path: Path
    config: dict | None = None
    config_text: str | None = None
    provenance: dict | None = None
    notes: list[str] = field(default_factory=list)


def folder_kind(folder: Path) -> str:
    """generate, inference or evaluate: the stage named in provenance.json, else told by the files;
    ConfigError (naming the folder) when it is not a folder or holds none of them."""
    folder = Path(folder)
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"{folder} {problem}: give a generate, inference or evaluation output folder")
    try:
        stage = json.loads((folder / "provenance.json").read_text(encoding="utf-8")).get("stage")
    except (OSError, ValueError, AttributeError):
        stage = None
    if stage in ("generate", "inference", "evaluate"):
        return stage
    if (folder / "scores.json").exists() or (folder / "per_example.jsonl").exists():
        return "evaluate"
    if any((folder / m).exists() for m in INFERENCE_MARKERS) or any((folder / "predictions").glob("*.jsonl")):
        return "inference"
    if (any((folder / m).exists() for m in GENERATE_MARKERS) or any(folder.glob("*.alpaca.json"))
            or any(folder.glob("*.rejects.jsonl"))):
        return "generate"
    raise ConfigError(f"{folder} holds no run outputs to view: expected a generate folder (*.alpaca.json, "
                      "*.rejects.jsonl, stats.json), an inference folder (predictions.jsonl, sweep.json) or an "
                      "evaluation folder (scores.json)")


def write_page(folder: str | Path, title: str | None = None, *, max_rows: int | None = DEFAULT_MAX_EXAMPLES) -> Path:
    """The page for any run folder, (re)written and returned: an evaluation folder's report.html,
    else view.html."""
    folder = Path(folder)
    if folder_kind(folder) == "evaluate":
        return write_report(folder, title, max_examples=max_rows)
    return write_view(folder, title, max_rows=max_rows)


def write_view(folder: str | Path, title: str | None = None, *, max_rows: int | None = DEFAULT_MAX_EXAMPLES) -> Path:
    """Write (or overwrite: it is derived from the folder) `folder/view.html` and return its path."""
    folder = Path(folder)
    return atomic_write_text(folder / VIEW_NAME, render_view(folder, title, max_rows=max_rows))


def render_view(folder: str | Path, title: str | None = None, *, max_rows: int | None = DEFAULT_MAX_EXAMPLES) -> str:
    """The data page of a generate or inference folder as one HTML string (see the module docstring)."""
    folder = Path(folder)
    kind = folder_kind(folder)
    if kind == "evaluate":
        raise ConfigError(f"{folder} is an evaluation folder: its page is {REPORT_NAME} (python -m tunelab.report)")
    run = RunFolder(folder)
    read_run_files(folder, run)
    if kind == "generate":
        nav, sections = _generate_sections(run, max_rows)
        title = title or f"Generated data: {folder.name}"
        heading, ran = "What was generated", "Generated"
    else:
        nav, sections, sweep = _inference_sections(run, max_rows)
        title = title or f"{'Inference sweep' if sweep else 'Inference'}: {folder.name}"
        heading, ran = "What answered", "Answered"
    # Notes gathered while reading the tables are shown with the run's description, at the top.
    return render_page(title, folder, [("about", heading), *nav], [about_section(run, heading, ran), *sections],
                       kind="Page")


# ---------------------------------------------------------------- tables


def _cap(max_rows: int | None) -> int | None:
    return None if max_rows is None or max_rows <= 0 else max_rows


def _anchor(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "table"


def _row(record: dict) -> dict:
    """A record as flat columns: its provenance as `provenance.*` (less what the record itself says),
    its request key as the prompt sent."""
    prov = record.get("provenance")
    row = flatten({k: v for k, v in record.items() if k != "provenance"})
    if isinstance(prov, dict):
        if prov.get("request_key"):
            row[SENT] = prov["request_key"]
        row.update(flatten({k: v for k, v in prov.items()
                            if k != "request_key" and not (k in row and row[k] == v)}, "provenance."))
    return row


def _same_everywhere(rows: list[dict], columns: list[_Column]) -> tuple[list[_Column], list[tuple[str, Any]]]:
    """Columns that vary, and (name, value) of those holding one value in every row (two rows or more)."""
    if len(rows) < 2:
        return columns, []
    keep, same = [], []
    for c in columns:
        if c.role != "id" and not c.lookup and all(c.key in r for r in rows):
            first = rows[0][c.key]
            if all(type(r[c.key]) is type(first) and r[c.key] == first for r in rows[1:]):
                same.append((c.key, first))
                continue
        keep.append(c)
    return keep, same


def _table_block(name: str, rows: list[dict], *, first: tuple[str, ...] = (), facets: tuple[str, ...] = (),
                 noun: str = "rows") -> str:
    """A rows view of `rows` with roles guessed from column names: `first` columns leading, then the
    record's own, the prompt sent (when any row names one), its provenance; constant columns are
    listed once above the table."""
    plain = [{k: v for k, v in r.items() if k != SENT} for r in rows]
    columns = _example_columns(plain)
    lead = [c for name_ in first for c in columns if c.key == name_]
    own = [c for c in columns if c.key not in first and not c.key.startswith("provenance.")]
    sent = [_Column(SENT, "sent", False, lookup=True)] if any(r.get(SENT) for r in rows) else []
    columns = lead + own + sent + [c for c in columns if c.key.startswith("provenance.")]
    columns, same = _same_everywhere(rows, columns)
    facets = tuple(f for f in facets if any(c.key == f for c in columns))
    out = []
    if same:
        names = ", ".join(k for k, _ in same[:4]) + (f" and {len(same) - 4} more" if len(same) > 4 else "")
        out.append(f'<details><summary>Same in every row: {esc(names)}</summary>{_kv_table(same, pre=True)}</details>')
    out.append(rows_view(name, rows, columns, noun=noun, facets=facets))
    return "".join(out)


def _held_note(held: int, total: int, file: str) -> str:
    if held >= total:
        return ""
    return f'<p class="note warn">Holding the first {held} of {total} rows; the rest are in {esc(file)}.</p>'


# ---------------------------------------------------------------- generate


def _read_alpaca(path: Path, max_rows: int | None, notes: list[str]) -> tuple[list[dict], int]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        notes.append(f"{path.name} could not be read: {e}")
        return [], 0
    if not isinstance(data, list):
        notes.append(f"{path.name} is not a list of records")
        return [], 0
    rows = [r if isinstance(r, dict) else {"value": r} for r in data]
    cap = _cap(max_rows)
    return (rows[:cap] if cap else rows), len(rows)


def _datasets(folder: Path) -> list[tuple[str, Path]]:
    """(name, file) of every dataset in a generate folder, in the order the run writes them."""
    alpaca = {p.name[: -len(".alpaca.json")]: p for p in folder.glob("*.alpaca.json") if p.is_file()}
    names = [n for n in DATASET_ORDER if n in alpaca] + sorted(n for n in alpaca if n not in DATASET_ORDER)
    found = [(n, alpaca[n]) for n in names]
    found += [(name.removesuffix(".jsonl"), folder / name) for name in JSONL_DATASETS if (folder / name).is_file()]
    found += [(f"corpora/{p.stem}", p) for p in sorted((folder / "corpora").glob("*.jsonl"))
              if p.name != "skipped.jsonl"]
    return found


def _prompts(folder: Path, rows: list[dict], notes: list[str]) -> dict[str, str]:
    """The prompt sent for every request key the rows name, from the folder's teacher cache."""
    from ..teachers.cache import read_cached_requests, request_text

    keys = {r[SENT] for r in rows if isinstance(r.get(SENT), str)}
    if not keys:
        return {}
    cache = folder / TEACHER_CACHE
    if not cache.exists():
        notes.append(f"rows name teacher requests, but there is no {TEACHER_CACHE} here: prompts not shown")
        return {}
    texts = {}
    for key, line in read_cached_requests(cache, keys).items():
        text = request_text(line)
        if text is not None:
            texts[key] = text
    if len(texts) < len(keys):
        notes.append(f"{len(keys) - len(texts)} of {len(keys)} requests named by rows have no prompt in "
                     f"{TEACHER_CACHE} (written before prompts were kept, or the cache was replaced)")
    return texts


def _generate_sections(run: RunFolder, max_rows: int | None) -> tuple[list[tuple[str, str]], list[str]]:
    folder, notes = run.path, run.notes
    tables: list[tuple[str, str, str, list[dict], int]] = []  # (anchor, title, file, rows, total)
    for name, path in _datasets(folder):
        if path.name.endswith(".alpaca.json"):
            records, total = _read_alpaca(path, max_rows, notes)
        else:
            records, total = read_jsonl_rows(path, _cap(max_rows), notes)
        tables.append((f"data-{_anchor(name)}", name, str(path.relative_to(folder)), [_row(r) for r in records], total))

    rejects: list[dict] = []
    reject_files: list[tuple[str, int, int]] = []  # (file, rows held, rows in the file)
    cap = _cap(max_rows)
    for file, source in REJECT_FILES:
        path = folder / file
        if not path.is_file():
            continue
        records, total = read_jsonl_rows(path, cap, notes)
        if cap is not None:  # one cap for all the rejects together
            records = records[: max(cap - len(rejects), 0)]
        rejects += [{"from": source, **_row(r)} for r in records]
        reject_files.append((file, len(records), total))

    texts = _prompts(folder, [r for t in tables for r in t[3]] + rejects, notes)

    nav: list[tuple[str, str]] = []
    sections: list[str] = []
    stats_path = folder / "stats.json"
    if stats_path.exists():
        try:
            stats = json.loads(stats_path.read_text(encoding="utf-8"))
            body = "".join(json_blocks(stats if isinstance(stats, dict) else {"stats": stats}))
        except (OSError, ValueError) as e:
            body = f'<p class="note warn">stats.json could not be read: {esc(e)}</p>'
        nav.append(("stats", "Stats"))
        sections.append(f'<section id="stats"><h2>Stats</h2><p class="note">From stats.json.</p>{body}</section>')

    overview = [[title, file, len(rows), total] for _, title, file, rows, total in tables]
    overview += [[f"rejects ({file})", file, held, total] for file, held, total in reject_files]
    if overview:
        sections.append('<section id="datasets"><h2>Datasets</h2>'
                        + _table(["dataset", "file", "rows shown", "rows"], overview, table_id="datasets-table")
                        + '<p class="note">The same records are also in &lt;dataset&gt;.chat.jsonl and '
                          "&lt;dataset&gt;.completion.jsonl. Filters match a substring of any column, the prompt "
                          "sent included (case-insensitive; Esc clears); click a column header to sort.</p></section>")
        nav.append(("datasets", "Datasets"))
    for anchor, title, file, rows, total in tables:
        nav.append((anchor, title))
        sections.append(f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>'
                        f'<p class="note">{total} records from {esc(file)}.</p>{_held_note(len(rows), total, file)}'
                        f"{_table_block(anchor, rows, noun='records')}</section>")
    if reject_files:
        held, total = len(rejects), sum(t for _, _, t in reject_files)
        files = ", ".join(f"{f} ({t})" for f, _, t in reject_files)
        nav.append(("rejects", "Rejects"))
        body = (_table_block("rejects", rejects, first=REJECT_FIRST, facets=REJECT_FIRST, noun="rejects")
                if rejects else '<p class="note">Nothing was rejected.</p>')
        sections.append(f'<section id="rejects"><h2>Rejects</h2><p class="note">{total} in all, from {esc(files)}; '
                        "each with the stage that dropped it and why, and the prompt sent where a teacher "
                        "answered it.</p>"
                        + (f'<p class="note warn">Holding the first {held} of {total} rejects.</p>'
                           if held < total else "") + body + "</section>")
    if not tables and not reject_files:
        sections.append('<section id="datasets"><h2>Datasets</h2><p class="note">No datasets or rejects in this '
                        "folder yet.</p></section>")
    sections.append(shared_texts_block(texts))
    return nav, sections


# ---------------------------------------------------------------- inference


def _prediction_files(folder: Path, notes: list[str]) -> tuple[list[tuple[str, Path]], dict]:
    """(setting, file) of every predictions file, from sweep.json when it lists them, and the index."""
    index: dict = {}
    index_path = folder / SWEEP_INDEX
    if index_path.exists():
        try:
            loaded = json.loads(index_path.read_text(encoding="utf-8"))
            index = loaded if isinstance(loaded, dict) else {}
        except (ValueError, UnicodeDecodeError) as e:
            notes.append(f"sweep.json could not be read: {e}")
    files = []
    for entry in index.get("settings") or []:
        if isinstance(entry, dict) and entry.get("file") and (folder / entry["file"]).is_file():
            files.append((str(entry.get("name") or Path(entry["file"]).stem), folder / entry["file"]))
    if not files:  # no index: the files themselves, as inference lists them
        files = [(p.stem, p) for p in inference_files(folder)]
    return files, index


def _inference_sections(run: RunFolder, max_rows: int | None) -> tuple[list[tuple[str, str]], list[str], bool]:
    folder, notes = run.path, run.notes
    files, index = _prediction_files(folder, notes)
    sections: list[str] = []
    nav: list[tuple[str, str]] = []
    settings = [e for e in index.get("settings") or [] if isinstance(e, dict)]
    if settings:
        rows = [{"setting": e.get("name"), "file": e.get("file"), "complete": e.get("complete"),
                 **{k: e.get(k) for k in ("rows", "empty_predictions", "cut_by_length", "errors", "seconds")},
                 **{f"decoding.{k}": v for k, v in (e.get("decoding") or {}).items() if k not in ("seed", "stop")}}
                for e in settings]
        columns, table_rows = _records_table(rows)
        body = _table(columns, table_rows, table_id="settings-table")
        skipped = [s for s in index.get("skipped") or [] if isinstance(s, dict)]
        if skipped:
            body += "".join(f'<p class="note">Skipped {esc(fmt(s.get("setting")))}: {esc(s.get("reason"))}</p>'
                            for s in skipped)
        nav.append(("settings", "Settings"))
        sections.append(f'<section id="settings"><h2>Settings</h2><p class="note">From sweep.json.</p>{body}</section>')
    if not files:
        sections.append('<section id="predictions"><h2>Predictions</h2><p class="note">No predictions in this '
                        "folder yet.</p></section>")
        nav.append(("predictions", "Predictions"))
        return nav, sections, False
    sweep = len(files) > 1
    if not sweep:
        name, path = files[0]
        records, total = read_jsonl_rows(path, _cap(max_rows), notes)
        rel = str(path.relative_to(folder))
        rows = [_row(r) for r in records]
        nav.append(("predictions", "Predictions"))
        sections.append(f'<section id="predictions"><h2>Predictions</h2><p class="note">{total} rows from {esc(rel)}: '
                        "the prompt (instruction, input), the reference and the prediction.</p>"
                        f"{_held_note(len(rows), total, rel)}{_table_block('predictions', rows, noun='rows')}"
                        "</section>")
        return nav, sections, False

    # A sweep: one row per input, one answer column per setting.
    by_id: dict[str, dict] = {}
    seen: set[str] = set()  # every input, held or not: the page says how many were left out
    cap = _cap(max_rows)
    for name, path in files:
        records, _ = read_jsonl_rows(path, None, notes)
        for r in records:
            key = _id_key(r.get("id"))
            seen.add(key)
            row = by_id.get(key)
            if row is None:
                if cap is not None and len(by_id) >= cap:
                    continue
                row = by_id[key] = {k: r[k] for k in ("id", "instruction", "input", "reference") if k in r}
            row[name] = r.get("prediction")
    names = [name for name, _ in files]
    rows = list(by_id.values())
    total = index.get("examples") if isinstance(index.get("examples"), int) else len(seen)
    plain = [{k: v for k, v in r.items() if k not in names} for r in rows]
    columns = _example_columns(plain) + [_Column(name, "answer", False) for name in names]
    nav.append(("predictions", "Answers side by side"))
    sections.append(f'<section id="predictions"><h2>Answers side by side</h2><p class="note">{len(names)} settings '
                    f"(one column each, from {esc(', '.join(str(p.relative_to(folder)) for _, p in files))}); "
                    "one row per input. An empty cell: that setting has not answered the input yet.</p>"
                    + _held_note(len(rows), max(total, len(rows)), "the predictions files")
                    + rows_view("predictions", rows, columns, noun="inputs") + "</section>")
    return nav, sections, True

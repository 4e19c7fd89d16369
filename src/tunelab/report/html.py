"""One self-contained HTML page per evaluation folder, for reading results by hand.

    python -m tunelab.report runs/evaluate        # writes runs/evaluate/report.html

Reads whatever of these the folder holds (each is optional): `scores.json`, `per_example.jsonl`
(or a classifier's `predictions.jsonl`), `*.png`, `config.yaml`, `provenance.json`. Only a few keys
are known by name (`runs`, `comparisons`, CI dicts `{value, ci_low, ci_high}`, example fields such
as `prediction` / `<run>.prediction`); everything else is laid out by its shape.

Nothing is fetched when the page opens: CSS and JS are inline, images are data: URLs, and a
Content-Security-Policy forbids every other source. Every value read from the folder is
HTML-escaped, and the page's own script and style carry a random nonce, so markup in an example
could not run even if it slipped through.

The examples travel as one JSON block; the page filters and sorts that array and draws one page of
rows (100 by default) with textContent. Measured in headless Chromium on 2 CPUs: 10k rows of
paragraph-long texts as plain table rows took ~10 s to open and ~5 s per filter keystroke, which is
why. `max_examples` (default 50k) caps the data for bigger sets; the page says how many were left out.

The page shell (`render_page`), the run description (`about_section`) and the paged table
(`rows_view`) are shared with the data pages of generate and inference folders (report/view.py).
"""

from __future__ import annotations

import base64
import html
import json
import math
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import __version__
from ..errors import ConfigError
from ..records import atomic_write_text
from .assets import CSS, JS

REPORT_NAME = "report.html"
# per_example.jsonl is the evaluate stage's contract; predictions.jsonl is what a classifier eval wrote before it.
EXAMPLE_FILES = ("per_example.jsonl", "predictions.jsonl")
DEFAULT_MAX_EXAMPLES = 50_000
# Rows drawn at once: the page keeps every example as data and puts one page of them in the DOM,
# because thousands of wrapped-text rows in a plain table take seconds to lay out and to filter.
PAGE_SIZE = 100
# Column roles, matched on a flattened key's last part ("base.prediction" -> answer of run "base").
# "output" is Alpaca's gold answer, hence a reference; "answer" is left alone (gold or generated, by dataset).
PROMPT_KEYS = ("system", "instruction", "prompt", "question", "context", "input", "text", "messages")
REFERENCE_KEYS = ("reference", "references", "label", "labels", "target", "gold", "expected", "output")
ANSWER_KEYS = ("prediction", "predictions", "predicted", "generated", "generation")
# A nested dict with more keys than this stays one JSON cell instead of becoming that many columns.
MAX_FLATTEN_KEYS = 16
CI_PAIRS = (("ci_low", "ci_high"), ("low", "high"), ("lower", "upper"))


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


# ---------------------------------------------------------------- values


def _ci(value: Any) -> tuple[Any, Any, Any] | None:
    """(value, low, high) when `value` is a confidence-interval dict, else None."""
    if isinstance(value, dict) and "value" in value:
        for lo, hi in CI_PAIRS:
            if lo in value and hi in value:
                return value["value"], value[lo], value[hi]
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fmt(value: Any) -> str:
    """Short text for a value: 4 decimals (or 3 significant digits when tiny), CIs as `v [low, high]`."""
    ci = _ci(value)
    if ci is not None:
        return f"{fmt(ci[0])} [{fmt(ci[1])}, {fmt(ci[2])}]"
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0 or abs(value) >= 1e-3:
            return f"{value:.4f}".rstrip("0").rstrip(".")
        return f"{value:.3g}"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        return ", ".join(fmt(v) for v in value)
    return json.dumps(value, ensure_ascii=False)


def _sort_value(value: Any) -> float | None:
    ci = _ci(value)
    if ci is not None:
        value = ci[0]
    if _is_number(value) and math.isfinite(value):
        return float(value)
    return None


def _scalar_like(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool)) or _ci(value) is not None or (
        isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value))


def flatten(obj: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys; CI dicts and large dicts are kept whole (one cell each)."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and _ci(value) is None and len(value) <= MAX_FLATTEN_KEYS:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _td(value: Any, *, missing: bool = False, extra_class: str = "") -> str:
    """One table cell; numbers carry their exact value in data-v for sorting."""
    if missing:
        return "<td></td>"
    classes = [extra_class] if extra_class else []
    sort_value = _sort_value(value)
    attrs = ""
    if sort_value is not None:
        classes.append("num")
        attrs = f' data-v="{sort_value!r}"'
        if isinstance(value, float):
            attrs += f' title="{esc(repr(value))}"'
    elif value is None:
        classes.append("na")
    cls = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{cls}{attrs}>{esc(fmt(value))}</td>"


def _th(label: str, *, numeric: bool = False, sortable: bool = True, extra_class: str = "") -> str:
    classes = [c for c in (extra_class, "num" if numeric else "") if c]
    cls = f' class="{" ".join(classes)}"' if classes else ""
    typ = ' data-type="num"' if numeric else ""
    inner = f'<button type="button" class="sort">{esc(label)}</button>' if sortable else esc(label)
    return f'<th scope="col"{cls}{typ}>{inner}</th>'


def _table(columns: list[str], rows: list[list[Any]], *, table_id: str = "", caption: str = "",
           row_classes: list[str] | None = None, cell_classes: list[list[str]] | None = None) -> str:
    """A sortable table; a column is numeric when every non-empty value in it is a number or CI."""
    numeric = [any(_sort_value(r[i]) is not None for r in rows) and
               all(r[i] is None or r[i] == "" or _sort_value(r[i]) is not None for r in rows)
               for i in range(len(columns))]
    tid = f' id="{esc(table_id)}"' if table_id else ""
    out = [f'<table class="sortable"{tid}>']
    if caption:
        out.append(f"<caption class=\"muted\">{esc(caption)}</caption>")
    out.append("<thead><tr>" + "".join(_th(c, numeric=n) for c, n in zip(columns, numeric)) + "</tr></thead><tbody>")
    for i, row in enumerate(rows):
        cls = f' class="{esc(row_classes[i])}"' if row_classes and row_classes[i] else ""
        cells = "".join(_td(v, extra_class=cell_classes[i][j] if cell_classes else "") for j, v in enumerate(row))
        out.append(f"<tr{cls}>{cells}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _kv_table(pairs: list[tuple[str, Any]], *, pre: bool = False) -> str:
    rows = []
    for key, value in pairs:
        text = esc(fmt(value))
        body = f"<pre>{text}</pre>" if pre and "\n" in str(value) else text
        rows.append(f'<tr><th scope="row">{esc(key)}</th><td>{body}</td></tr>')
    return '<table class="kv"><tbody>' + "".join(rows) + "</tbody></table>"


# ---------------------------------------------------------------- folder contents


@dataclass
class EvalFolder:
    """What the report found in an evaluation folder; `notes` are problems shown on the page."""

    path: Path
    scores: dict = field(default_factory=dict)
    examples: list[dict] = field(default_factory=list)
    examples_file: str | None = None
    examples_total: int = 0
    images: list[Path] = field(default_factory=list)
    config: dict | None = None
    config_text: str | None = None
    provenance: dict | None = None
    notes: list[str] = field(default_factory=list)


def read_eval_folder(eval_dir: Path, max_examples: int | None = DEFAULT_MAX_EXAMPLES) -> EvalFolder:
    """Read an evaluation folder leniently: a missing or unreadable file becomes a note, not an error."""
    folder = EvalFolder(eval_dir)
    scores_path = eval_dir / "scores.json"
    if scores_path.exists():
        try:
            scores = json.loads(scores_path.read_text(encoding="utf-8"))
            folder.scores = scores if isinstance(scores, dict) else {"scores": scores}
        except (ValueError, UnicodeDecodeError) as e:
            folder.notes.append(f"scores.json could not be read: {e}")
    else:
        folder.notes.append("no scores.json in this folder")

    for name in EXAMPLE_FILES:
        path = eval_dir / name
        if path.exists():
            folder.examples_file = name
            _read_examples(path, folder, max_examples)
            break

    folder.images = sorted(p for p in eval_dir.glob("*.png") if p.is_file())
    read_run_files(eval_dir, folder)
    return folder


def read_run_files(run_dir: Path, folder: Any) -> None:
    """Fill `folder.config`, `.config_text` and `.provenance` from a run folder's config.yaml and
    provenance.json (every stage writes both); a file that cannot be read becomes a note."""
    config_path = run_dir / "config.yaml"
    if config_path.exists():
        folder.config_text = config_path.read_text(encoding="utf-8", errors="replace")
        try:
            loaded = yaml.safe_load(folder.config_text)
            folder.config = loaded if isinstance(loaded, dict) else None
        except yaml.YAMLError as e:
            folder.notes.append(f"config.yaml could not be parsed: {e}")
    prov_path = run_dir / "provenance.json"
    if prov_path.exists():
        try:
            loaded = json.loads(prov_path.read_text(encoding="utf-8"))
            folder.provenance = loaded if isinstance(loaded, dict) else None
        except (ValueError, UnicodeDecodeError) as e:
            folder.notes.append(f"provenance.json could not be read: {e}")


def _read_examples(path: Path, folder: EvalFolder, max_examples: int | None) -> None:
    folder.examples, folder.examples_total = read_jsonl_rows(path, max_examples, folder.notes)


def read_jsonl_rows(path: Path, max_rows: int | None, notes: list[str]) -> tuple[list[dict], int]:
    """The first `max_rows` objects of a JSONL file (all when None or 0) and how many it holds.
    A line that is not JSON is left out with a note; a non-object is kept as {"value": ...}."""
    rows: list[dict] = []
    total = bad = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                bad += 1
                if bad <= 3:
                    notes.append(f"{path.name}:{line_no}: not JSON, left out")
                continue
            total += 1
            if max_rows is None or max_rows <= 0 or len(rows) < max_rows:
                rows.append(obj if isinstance(obj, dict) else {"value": obj})
    if bad > 3:
        notes.append(f"{path.name}: {bad} lines in all were not JSON")
    return rows, total


# ---------------------------------------------------------------- sections


def about_section(folder: Any, heading: str = "What was evaluated", ran: str = "Evaluated") -> str:
    """Where a run folder came from: models, data, command, git, versions, hardware, its config.

    `folder` has `path`, `config`, `config_text`, `provenance` and `notes` (see `read_run_files`).
    """
    prov, config = folder.provenance or {}, folder.config or {}
    pairs: list[tuple[str, Any]] = [("Folder", str(folder.path))]
    if config.get("task"):
        pairs.append(("Task", config["task"]))
    models = dict(prov.get("models") or {})
    for key in ("model", "base", "base_model", "models"):
        if config.get(key) and config[key] not in models.values():
            models[f"config {key}"] = config[key]
    if models:
        pairs.append(("Models", "\n".join(f"{k}: {fmt(v)}" for k, v in models.items())))
    inputs = prov.get("inputs") or {}
    if inputs:
        # "path sha256:<64 hex>" -> path + a 12-character hash: enough to tell versions apart by eye.
        def short(v: Any) -> str:
            text = str(v)
            head, sep, digest = text.partition(" sha256:")
            return f"{head} (sha256 {digest[:12]}…)" if sep else text
        pairs.append(("Data", "\n".join(f"{k}: {short(v)}" for k, v in inputs.items())))
    if prov.get("started"):
        took = f" ({prov['seconds']} s)" if prov.get("seconds") is not None else ""
        pairs.append((ran, f"{prov['started']}{took}"))
    if prov.get("command"):
        cmd = prov["command"]
        pairs.append(("Command", " ".join(map(str, cmd)) if isinstance(cmd, list) else cmd))
    git = prov.get("git") or {}
    if git.get("commit"):
        pairs.append(("Git", f"{git['commit'][:12]}{' (uncommitted changes)' if git.get('dirty') else ''}"))
    packages = prov.get("packages") or {}
    if packages:
        pairs.append(("Versions", ", ".join(f"{k} {v}" for k, v in packages.items() if v)))
    hw = prov.get("hardware") or {}
    if hw:
        gpus = hw.get("gpus")
        pairs.append(("Hardware", ", ".join(str(x) for x in (
            hw.get("platform"), f"Python {hw['python']}" if hw.get("python") else None,
            f"{hw['cpu_count']} CPUs" if hw.get("cpu_count") else None,
            ", ".join(gpus) if gpus else ("no CUDA" if hw.get("cuda") is False else None)) if x)))
    out = [f'<section id="about"><h2>{esc(heading)}</h2>', _kv_table(pairs, pre=True)]
    if folder.config_text is not None:
        out.append(f"<details><summary>config.yaml</summary><pre>{esc(folder.config_text)}</pre></details>")
    if folder.provenance is not None:
        out.append("<details><summary>provenance.json</summary><pre>"
                   f"{esc(json.dumps(folder.provenance, indent=2, ensure_ascii=False))}</pre></details>")
    if not prov and not config:
        out.append('<p class="note">No provenance.json or config.yaml in this folder.</p>')
    for note in folder.notes:
        out.append(f'<p class="note warn">{esc(note)}</p>')
    out.append("</section>")
    return "".join(out)


def _records_table(records: list[dict], first: tuple[str, ...] = ()) -> tuple[list[str], list[list[Any]]]:
    flat = [flatten(r) for r in records]
    columns = [c for c in first if any(c in f for f in flat)]
    for f in flat:
        columns += [k for k in f if k not in columns]
    return columns, [[f.get(c) for c in columns] for f in flat]


def _runs_table(runs: list[dict], table_id: str) -> str:
    name_key = next((k for k in ("name", "run", "model") if any(k in r for r in runs)), None)
    columns, rows = _records_table(runs, (name_key,) if name_key else ())
    return _table(columns, rows, table_id=table_id)


def _comparisons_table(comparisons: list[dict], table_id: str) -> str:
    columns = ["run", "metric", "delta", "CI", "CI excludes 0"]
    known = {"run", "metric", "delta", "ci_low", "ci_high", "excludes_zero"}
    extra: list[str] = []
    for c in comparisons:
        extra += [k for k in c if k not in known and k not in extra]
    rows, row_classes, cell_classes = [], [], []
    for c in comparisons:
        delta, low, high = c.get("delta"), c.get("ci_low"), c.get("ci_high")
        ci = _ci(delta)
        if ci is not None:  # delta given as {value, ci_low, ci_high}
            delta, low, high = ci
        excludes = c.get("excludes_zero")
        if excludes is None and _is_number(low) and _is_number(high):
            excludes = low > 0 or high < 0
        ci_text = f"[{fmt(low)}, {fmt(high)}]" if low is not None or high is not None else None
        rows.append([c.get("run"), c.get("metric"), delta, ci_text,
                     "✱ yes" if excludes else ("no" if excludes is not None else None)]
                    + [c.get(k) for k in extra])
        row_classes.append("sig" if excludes else "")
        sign = "pos" if _is_number(delta) and delta > 0 else "neg" if _is_number(delta) and delta < 0 else ""
        cell_classes.append(["", "", sign] + [""] * (2 + len(extra)))
    return (_table(columns + extra, rows, table_id=table_id, row_classes=row_classes,
                   cell_classes=cell_classes)
            + '<p class="note">Highlighted, ✱: the confidence interval of the delta excludes 0.</p>')


def _matrix_table(name: str, matrix: list[list[Any]], labels: list[str] | None, h: str = "h3") -> str:
    labels = labels if labels and len(labels) == len(matrix) else [str(i) for i in range(len(matrix))]
    cols = labels if all(len(r) == len(labels) for r in matrix) else [str(j) for j in range(max(map(len, matrix)))]
    head = "".join(f'<th scope="col">{esc(c)}</th>' for c in cols)
    body = "".join(f'<tr><th scope="row">{esc(label)}</th>' + "".join(_td(v) for v in row) + "</tr>"
                   for label, row in zip(labels, matrix))
    corner = "true \\ predicted" if "confusion" in name else ""
    return (f"<{h}>{esc(name)}</{h}><table class=\"matrix\"><thead><tr><th>{esc(corner)}</th>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _is_matrix(value: Any) -> bool:
    return (isinstance(value, list) and value and all(isinstance(r, list) and r for r in value)
            and all(_is_number(v) for r in value for v in r))


def _records_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _scores_block(scores: dict, path: str = "", depth: int = 0, label_names: list[str] | None = None) -> list[str]:
    """Tables for one level of scores.json, by shape: scalars in one table; runs, comparisons, dicts
    of dicts (per_label), flat dicts sharing keys (micro/macro), matrices and lists of records each
    in a table of their own; any other nested dict becomes a collapsible block laid out the same way."""
    top = depth == 0
    h = "h3" if top else "h4"

    def table_id(name: str) -> str:
        return f"{path}.{name}" if path else name

    summary: list[tuple[str, Any]] = []
    grouped: dict[str, dict] = {}
    parts: list[str] = []
    nested: list[str] = []
    matrices: list[tuple[str, list]] = []  # drawn last, once per_label has named the rows
    for key, value in scores.items():
        key = str(key)
        if _records_list(value):
            if key == "runs":
                parts.append(f"<{h}>Runs</{h}>" + _runs_table(value, table_id("runs-table")))
            elif key in ("comparisons", "comparison") and all("delta" in c for c in value):
                parts.append(f"<{h}>Comparisons</{h}>" + _comparisons_table(value, table_id("comparisons-table")))
            else:
                columns, rows = _records_table(value)
                parts.append(f"<{h}>{esc(key)}</{h}>" + _table(columns, rows, table_id=table_id(f"table-{key}")))
        elif _scalar_like(value):
            summary.append((key, value))
        elif _is_matrix(value):
            matrices.append((key, value))
        elif (isinstance(value, dict) and value
              and all(isinstance(v, dict) and _ci(v) is None and all(map(_scalar_like, flatten(v).values()))
                      for v in value.values())):
            # {label: {precision, recall, ...}}: one row per label
            label_names = label_names or [str(k) for k in value]
            columns, rows = _records_table(list(value.values()))
            parts.append(f"<{h}>{esc(key)}</{h}>"
                         + _table(["label" if "label" in key else "key"] + columns,
                                  [[k] + r for k, r in zip(value, rows)], table_id=table_id(f"table-{key}")))
        elif isinstance(value, dict) and all(_scalar_like(v) for v in value.values()):
            grouped[key] = value
        elif isinstance(value, dict) and depth < 4:
            inner = "".join(_scores_block(value, table_id(key), depth + 1, label_names))
            nested.append(f'<details class="group"{" open" if top else ""}><summary>{esc(key)}</summary>'
                          f"{inner}</details>")
        elif isinstance(value, dict):
            summary.extend((f"{key}.{k}", v if _scalar_like(v) else json.dumps(v, ensure_ascii=False))
                           for k, v in flatten(value).items())
        else:
            summary.append((key, json.dumps(value, ensure_ascii=False)))
    # Flat dicts sharing their keys (micro, macro: precision, recall, f1) make one table; a lone one joins the scalars.
    by_keys: dict[tuple, list[str]] = {}
    for key, value in grouped.items():
        by_keys.setdefault(tuple(sorted(map(str, value))), []).append(key)
    tables = []
    for names in by_keys.values():
        if len(names) == 1:
            summary.extend((f"{names[0]}.{k}", v) for k, v in grouped[names[0]].items())
            continue
        columns, rows = _records_table([grouped[k] for k in names])
        tables.append(f"<{h}>{esc(', '.join(names))}</{h}>" + _table(
            ["group"] + columns, [[k] + r for k, r in zip(names, rows)],
            table_id=table_id("groups-table" + (f"-{len(tables)}" if tables else ""))))
    out = []
    if summary:
        out.append(_table(["metric", "value"], [[k, v] for k, v in summary], table_id=table_id("summary-table")))
    out += tables + parts
    for key, value in matrices:  # rows named by "<key>_labels" when the scores give them, else by per_label
        names = scores.get(f"{key}_labels")
        out.append(_matrix_table(key, value, [str(n) for n in names] if isinstance(names, list) else label_names, h))
    return out + nested


def _scores_section(scores: dict) -> str:
    body = "".join(_scores_block(scores)) if scores else '<p class="note">No scores to show.</p>'
    return f'<section id="scores"><h2>Scores</h2>{body}</section>'


def _images_section(images: list[Path], scores: dict) -> str:
    if not images:
        return ""
    # scores.json may name its plots ({"plots": {name: file}}); else the caption comes from the file name.
    named = scores.get("plots") if isinstance(scores.get("plots"), dict) else {}
    names = {str(file): str(name) for name, file in named.items() if isinstance(file, str)}
    out = ['<section id="plots"><h2>Plots</h2>']
    for path in images:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        caption = names.get(path.name) or path.stem
        caption = caption.replace("_", " ").replace("-", " ").strip()
        caption = caption[:1].upper() + caption[1:]
        out.append(f'<figure><img src="data:image/png;base64,{data}" alt="{esc(caption)}">'
                   f"<figcaption>{esc(caption)} <span class=\"muted\">({esc(path.name)})</span></figcaption></figure>")
    out.append("</section>")
    return "".join(out)


@dataclass
class _Column:
    key: str
    role: str  # id, prompt, reference, answer, score, other, sent (a request as sent, folded)
    numeric: bool
    # The cell holds a key into the view's `texts`; the page draws that text folded (<details>).
    lookup: bool = False


def _example_columns(rows: list[dict]) -> list[_Column]:
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    keys = list(seen)

    def role(key: str) -> str:
        last = key.rsplit(".", 1)[-1].lower()
        if key.lower() == "id":
            return "id"
        if last in ANSWER_KEYS:
            return "answer"
        if last in REFERENCE_KEYS:
            return "reference"
        if last in PROMPT_KEYS:
            return "prompt"
        values = [r[key] for r in rows if r.get(key) is not None]
        if values and all(_sort_value(v) is not None for v in values):
            return "score"
        return "other"

    roles = {k: role(k) for k in keys}
    prompt_rank = {k: i for i, k in enumerate(PROMPT_KEYS)}
    ordered = ([k for k in keys if roles[k] == "id"]
               + sorted((k for k in keys if roles[k] == "prompt"),
                        key=lambda k: prompt_rank[k.rsplit(".", 1)[-1].lower()])
               + [k for k in keys if roles[k] == "reference"]
               + [k for k in keys if roles[k] == "answer"]
               + [k for k in keys if roles[k] == "other"]
               + [k for k in keys if roles[k] == "score"])
    columns = []
    for k in ordered:
        values = [r.get(k) for r in rows if r.get(k) is not None]
        numeric = bool(values) and all(_sort_value(v) is not None for v in values)
        columns.append(_Column(k, roles[k], numeric))
    return columns


def _json_block_text(data: Any) -> str:
    """JSON for a <script type="application/json"> block: `<`, `>` and `&` are \\u-escaped so
    nothing inside can end the block that carries it."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def shared_texts_block(texts: dict[str, str]) -> str:
    """Long texts shared by many rows (the prompt several rejects came from), once each for the whole
    page: a `lookup` column's cells hold their keys, and the page draws the text folded."""
    return f'<script type="application/json" id="texts-data">{_json_block_text(texts)}</script>'


def _cell_text(row: dict, column: _Column) -> str:
    """What a row's cell shows (and what a filter or a facet matches)."""
    if column.key not in row or column.lookup and row[column.key] is None:
        return ""
    return fmt(row[column.key])


def examples_json(rows: list[dict], columns: list[_Column]) -> str:
    """The examples as JSON for the page's script: columns, and per row the shown text and sort numbers.

    Text is formatted here (one formatter for tables and examples); the page puts it into cells with
    textContent, never as markup (see `_json_block_text` for why nothing inside can end its block).
    """
    data: dict[str, Any] = {
        "columns": [{"name": c.key, "role": c.role, "num": c.numeric,
                     "wrap": not c.numeric and c.role != "id", **({"lookup": True} if c.lookup else {})}
                    for c in columns],
        "rows": [{"t": [_cell_text(row, c) for c in columns],
                  "v": [_sort_value(row.get(c.key)) if c.numeric else None for c in columns]} for row in rows],
    }
    return _json_block_text(data)


def rows_view(name: str, rows: list[dict], columns: list[_Column], *, id_prefix: str | None = None,
              noun: str = "rows", facets: tuple[str, ...] = ()) -> str:
    """A filterable, sortable, paged table of `rows` (flat dicts), drawn by the page's script.

    The rows travel as one JSON block (`examples_json`); the page keeps them as data and puts one
    page of them in the DOM. `facets` are columns offered as a drop-down of their values (with
    counts); a row is shown when it has every chosen value and contains the filter text. The table
    is `<name>-table`, its data `<name>-data`, and the controls' ids start with `id_prefix`
    (default `<name>-`); the script finds each part inside its view, so a page may hold several.
    """
    pid = esc(f"{name}-" if id_prefix is None else id_prefix)
    total = len(rows)
    sizes = "".join(f'<option value="{n}"{" selected" if n == PAGE_SIZE else ""}>{n}</option>'
                    for n in (50, 100, 250, 1000)) + '<option value="0">all</option>'
    controls = [f'<input id="{pid}filter" data-role="filter" type="search" placeholder="Filter {esc(noun)}…" '
                f'aria-label="Filter {esc(noun)}" autocomplete="off">']
    for facet in facets:
        index = next((i for i, c in enumerate(columns) if c.key == facet), None)
        if index is None:
            continue
        counts: dict[str, int] = {}
        for row in rows:
            value = _cell_text(row, columns[index])
            counts[value] = counts.get(value, 0) + 1
        options = "".join(f'<option value="{esc(v)}">{esc(v or "(none)")} ({n})</option>'
                          for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        controls.append(f'<label>{esc(facet)} <select id="{pid}facet-{esc(facet)}" data-facet="{index}">'
                        f'<option value="">all ({total})</option>{options}</select></label>')
    controls.append(f'<span id="{pid}shown" data-role="shown">{total} of {total} match</span>'
                    f'<span class="pager"><button type="button" id="{pid}prev" data-role="prev">‹ prev</button> '
                    f'<span id="{pid}page" data-role="page"></span> '
                    f'<button type="button" id="{pid}next" data-role="next">next ›</button></span>'
                    f'<label>rows per page <select id="{pid}page-size" data-role="page-size">{sizes}</select>'
                    "</label>")
    head = "".join(_th(c.key, numeric=c.numeric, sortable=not c.lookup, extra_class=f"role-{c.role}")
                   for c in columns)
    return "".join([
        f'<div class="rows-view"><div class="controls">{"".join(controls)}</div>',
        f"<noscript><p class=\"note warn\">This table is drawn by the page's script: allow JavaScript to see it."
        "</p></noscript>",
        f'<div class="scroll"><table id="{esc(name)}-table"><thead><tr>{head}</tr></thead>'
        "<tbody></tbody></table></div>",
        f'<script type="application/json" id="{esc(name)}-data">'
        f"{examples_json(rows, columns)}</script></div>",
    ])


def _examples_section(folder: EvalFolder) -> str:
    if folder.examples_file is None:
        return ('<section id="examples"><h2>Examples</h2><p class="note">No per_example.jsonl in this folder.'
                "</p></section>")
    rows = [flatten(r) for r in folder.examples]
    columns = _example_columns(rows)
    total, kept = folder.examples_total, len(folder.examples)
    out = ['<section id="examples"><h2>Examples</h2>',
           f'<p class="note">From {esc(folder.examples_file)}. The filter matches a substring of any column '
           "(case-insensitive; Esc clears). Click a column header to sort; again to reverse.</p>"]
    if kept < total:
        out.append(f'<p class="note warn">Holding the first {kept} of {total} examples; '
                   f"the rest are in {esc(folder.examples_file)}.</p>")
    out.append('<p class="legend muted">Columns: <span class="role-prompt">input</span>'
               '<span class="role-reference">reference</span><span class="role-answer">answers</span>'
               '<span class="role-score">per-example scores</span></p>')
    out.append(rows_view("examples", rows, columns, id_prefix="", noun="examples") + "</section>")
    return "".join(out)


# ---------------------------------------------------------------- page


def render_report(eval_dir: str | Path, title: str | None = None, *,
                  max_examples: int | None = DEFAULT_MAX_EXAMPLES) -> str:
    """The report page for `eval_dir` as one HTML string (see the module docstring)."""
    eval_dir = Path(eval_dir)
    if not eval_dir.is_dir():
        problem = "is not a folder" if eval_dir.exists() else "does not exist"
        raise ConfigError(f"{eval_dir} {problem}: give an evaluation output folder (holding scores.json)")
    folder = read_eval_folder(eval_dir, max_examples)
    task = (folder.config or {}).get("task")
    title = title or f"{str(task).capitalize() + ' evaluation' if task else 'Evaluation'}: {eval_dir.name}"
    nav = [("about", "What was evaluated"), ("scores", "Scores"),
           *((("plots", "Plots"),) if folder.images else ()), ("examples", "Examples")]
    return render_page(title, eval_dir, nav, [
        about_section(folder),
        _scores_section(folder.scores),
        _images_section(folder.images, folder.scores),
        _examples_section(folder),
    ])


def render_page(title: str, source: Path, nav: list[tuple[str, str]], sections: list[str], *,
                kind: str = "Report") -> str:
    """One self-contained page: inline CSS and JS under a nonce, a CSP that allows nothing else,
    a header naming `source`, links to the `nav` (anchor, label) pairs, then `sections` (HTML)."""
    nonce = secrets.token_urlsafe(16)
    # No default source at all: the page may only use its own nonce'd script/style and data: images.
    csp = (f"default-src 'none'; img-src data:; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
           "base-uri 'none'; form-action 'none'")
    written = time.strftime("%Y-%m-%d %H:%M:%S %z")
    links = "".join(f'<a href="#{esc(anchor)}">{esc(label)}</a>' for anchor, label in nav)
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',  # else the browser asks for /favicon.ico
        f"<title>{esc(title)}</title><style nonce=\"{nonce}\">{CSS}</style></head><body>",
        f"<header><h1>{esc(title)}</h1>",
        f'<p class="muted">{esc(kind)} written {esc(written)} by tunelab {esc(__version__)} from {esc(source)}.</p>',
        f"<nav>{links}</nav></header>",
        *sections,
        f'<script nonce="{nonce}">{JS}</script></body></html>\n',
    ])


def write_report(eval_dir: Path, title: str | None = None, *, max_examples: int | None = DEFAULT_MAX_EXAMPLES) -> Path:
    """Write (or overwrite: it is derived from the folder) `eval_dir/report.html` and return its path."""
    eval_dir = Path(eval_dir)
    return atomic_write_text(eval_dir / REPORT_NAME, render_report(eval_dir, title, max_examples=max_examples))

"""One self-contained HTML page per evaluation folder, for reading results by hand.

    python -m tunelab.report runs/evaluate        # writes runs/evaluate/report.html

Reads whatever of these the folder holds (each is optional): `scores.json`, `per_example.jsonl`
(or a classifier's `predictions.jsonl`), `*.png`, `config.yaml`, `provenance.json`. The scores are
laid out by what was scored (report/scores.py); example fields are known by name (`prediction`,
`<run>.prediction`, `reference`, ...); everything else is laid out by its shape (report/tables.py).

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

import json
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
from .scores import images_section, scores_section
from .tables import _kv_table, _sort_value, _th, esc, flatten, fmt

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
        "<noscript><p class=\"note warn\">This table is drawn by the page's script: allow JavaScript to see it."
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
        scores_section(folder.scores),
        images_section(folder.images, folder.scores),
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

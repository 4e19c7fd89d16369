"""HTML tables for the report pages: values as short text, sortable tables, and `json_blocks`, which
lays out any JSON object (a build's stats, the parts of scores.json its type does not name) by shape."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from typing import Any

# A nested dict with more keys than this stays one JSON cell instead of becoming that many columns.
MAX_FLATTEN_KEYS = 16
CI_PAIRS = (("ci_low", "ci_high"), ("low", "high"), ("lower", "upper"))
# A table drawn for one key: (its value, the table's id) -> HTML.
KeyTable = Callable[[Any, str], str]


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


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


def _records_table(records: list[dict], first: tuple[str, ...] = ()) -> tuple[list[str], list[list[Any]]]:
    flat = [flatten(r) for r in records]
    columns = [c for c in first if any(c in f for f in flat)]
    for f in flat:
        columns += [k for k in f if k not in columns]
    return columns, [[f.get(c) for c in columns] for f in flat]


def runs_table(runs: list[dict], table_id: str) -> str:
    name_key = next((k for k in ("name", "run", "model") if any(k in r for r in runs)), None)
    columns, rows = _records_table(runs, (name_key,) if name_key else ())
    return _table(columns, rows, table_id=table_id)


def comparisons_table(comparisons: list[dict], table_id: str) -> str:
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


def json_blocks(scores: dict, path: str = "", depth: int = 0, label_names: list[str] | None = None,
                known: dict[str, tuple[str, KeyTable]] | None = None) -> list[str]:
    """Tables for one level of a JSON object, by shape: scalars in one table; dicts of dicts (per_label),
    flat dicts sharing keys (micro/macro), matrices and lists of records each in a table of their own; any
    other nested dict becomes a collapsible block laid out the same way. `known` names the keys whose
    table the caller draws ({key: (heading, draw)}), at this level; `label_names` name a matrix's rows."""
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
        if known and key in known and _records_list(value):
            heading, draw = known[key]
            parts.append(f"<{h}>{esc(heading)}</{h}>" + draw(value, table_id(f"{key}-table")))
        elif _records_list(value):
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
            inner = "".join(json_blocks(value, table_id(key), depth + 1, label_names))
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



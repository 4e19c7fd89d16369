"""Record types and their files.

Every reader validates as it goes and raises `RecordError` naming the file, the line and the
problem on the first bad record. Every writer writes to a temporary file and renames it into
place, so a failed run never leaves a half-written or clobbered output.

Schemas (also in data/README.md):
- alpaca:     {"instruction": str (non-empty), "input": str (may be empty), "output": str (non-empty)}
- chat:       {"messages": [{"role": "system"|"user"|"assistant", "content": str | [content parts]}, ...]}
- completion: {"prompt": str (non-empty), "completion": str (non-empty)}
- moderation: {"text": str (non-empty), "labels": [str, ...] (each in the declared taxonomy; [] = none)}
Any record may carry extra keys (id, provenance, ...); they are kept.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError, RecordError

RECORD_KINDS = ("alpaca", "chat", "completion", "moderation")
CHAT_ROLES = ("system", "user", "assistant")


@dataclass
class Record:
    """One validated record: `kind` names its schema, `data` holds every field (extras included)."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def text_problem(value: Any, what: str, *, allow_empty: bool = False) -> str | None:
    """Why `value` is not usable text ("field 'output' must be a string, got int"), or None."""
    if not isinstance(value, str):
        shown = f" ({value!r})" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
        return f"{what} must be a string, got {type(value).__name__}{shown}"
    if not allow_empty and not value.strip():
        return f"{what} is empty"
    return None


def _require_text(obj: dict, key: str, *, allow_empty: bool = False) -> str | None:
    """Return a problem description, or None when obj[key] is a usable string."""
    if key not in obj:
        return f"missing field '{key}'"
    return text_problem(obj[key], f"field '{key}'", allow_empty=allow_empty)


def validate(obj: Any, kind: str, taxonomy: Iterable[str] | None = None) -> str | None:
    """Return why `obj` is not a valid `kind` record, or None when it is."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    if kind == "alpaca":
        for key, allow_empty in (("instruction", False), ("output", False)):
            if problem := _require_text(obj, key, allow_empty=allow_empty):
                return problem
        if "input" in obj and not isinstance(obj["input"], str):
            return f"field 'input' must be a string, got {type(obj['input']).__name__}"
        return None
    if kind == "completion":
        return _require_text(obj, "prompt") or _require_text(obj, "completion")
    if kind == "chat":
        messages = obj.get("messages")
        if not isinstance(messages, list) or not messages:
            return "field 'messages' must be a non-empty list"
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES:
                return f"message {i} needs a 'role' in {CHAT_ROLES}"
            content = message.get("content")
            if isinstance(content, str):
                if not content.strip():
                    return f"message {i} ({message['role']}) has empty content"
            elif not isinstance(content, list) or not content:
                return f"message {i} content must be a string or a list of content parts"
        if not any(m["role"] == "user" for m in messages):
            return "messages hold no 'user' turn"
        return None
    if kind == "moderation":
        if problem := _require_text(obj, "text"):
            return problem
        labels = obj.get("labels")
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            return "field 'labels' must be a list of label names ([] for none)"
        if taxonomy is not None:
            allowed = set(taxonomy)
            unknown = [x for x in labels if x not in allowed]
            if unknown:
                return f"labels {unknown} are not in the taxonomy {sorted(allowed)}"
        return None
    raise ValueError(f"unknown record kind {kind!r}; expected one of {RECORD_KINDS}")


def _open_text(path: Path, newline: str | None = None):
    """A text stream of `path` in UTF-8, decompressed on the fly when the name ends in .gz."""
    if path.suffix.lower() == ".gz":
        import gzip

        return gzip.open(path, "rt", encoding="utf-8", newline=newline)
    return path.open(encoding="utf-8", newline=newline)


def _iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (line number, element) of a JSON array file, so errors can name the element's line."""
    with _open_text(path) as f:
        text = f.read()
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if not text[pos:pos + 1] == "[":
        raise RecordError(path, 1, "expected a JSON array of records ('[' ... ']')")
    pos += 1
    line, counted_to = 1, 0  # newlines are counted incrementally: linear in the file, not quadratic
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        line += text.count("\n", counted_to, pos)
        counted_to = pos
        if pos >= len(text):
            raise RecordError(path, line, "truncated JSON: the array is never closed")
        if text[pos] == "]":
            return
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise RecordError(path, e.lineno, f"invalid JSON: {e.msg}") from None
        yield line, obj
        pos = end


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with _open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(path, line_no, f"invalid JSON: {e.msg}") from None


def iter_json_objects(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """(line, object) pairs from a `.json` array or a `.jsonl` file."""
    path = Path(path)
    if not path.exists():
        raise RecordError(path, None, "file not found")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".jsonl"):
        raise RecordError(path, None, f"unsupported extension '{suffix}': use .json (array) or .jsonl")
    try:
        yield from _iter_json_array(path) if suffix == ".json" else _iter_jsonl(path)
    except UnicodeDecodeError as e:
        raise RecordError(path, None, f"not UTF-8 text (byte {e.start}): save the file as UTF-8") from None


TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")


def table_kind(path: str | os.PathLike) -> str:
    """`csv`, `tsv`, `json` or `jsonl` from a table file's name; a trailing `.gz` is looked through."""
    path = Path(path)
    name = path.name.lower()
    base = name[:-3] if name.endswith(".gz") else name
    suffix = Path(base).suffix
    if suffix not in TABLE_SUFFIXES:
        raise RecordError(path, None, f"unsupported extension '{suffix or name}': use one of "
                          f"{', '.join(TABLE_SUFFIXES)} (optionally gzipped, e.g. .csv.gz)")
    return suffix[1:]


def read_table_rows(path: str | os.PathLike, required: Iterable[str], *, column_names: Sequence[str] | None = None,
                    on_bad: Callable[[int, str], None] | None = None) -> list[tuple[int, dict]]:
    """(line, row) pairs of a table holding the `required` columns.

    Tables: CSV or TSV with a header line (or, for header-less files, `column_names` in order), or
    JSON arrays / JSONL of objects; any of them gzipped (`.csv.gz`). A required column missing from
    the header, or from every JSON object, raises `RecordError` naming the file and the column. A bad
    row (a wrong number of fields, a JSON value that is not an object, an object without a required
    field) raises `RecordError` naming file:line, or, when `on_bad(line, reason)` is given, goes to it
    and is left out.
    """
    import csv

    path = Path(path)
    required = list(required)
    if not path.exists():
        raise RecordError(path, None, "file not found")
    kind = table_kind(path)
    rows: list[tuple[int, dict]] = []

    def bad(line: int, reason: str) -> None:
        if on_bad is None:
            raise RecordError(path, line, reason)
        on_bad(line, reason)

    try:
        if kind in ("json", "jsonl"):
            seen = 0
            absent_in = dict.fromkeys(required, 0)
            first_keys: list | None = None
            for line, obj in (_iter_json_array(path) if kind == "json" else _iter_jsonl(path)):
                if not isinstance(obj, dict):
                    bad(line, "expected a JSON object")
                    continue
                seen += 1
                first_keys = list(obj) if first_keys is None else first_keys
                absent = [c for c in required if c not in obj]
                for c in absent:
                    absent_in[c] += 1
                if absent:
                    bad(line, f"missing field(s) {absent}")
                    continue
                rows.append((line, obj))
            # A column absent from every row is the file's problem (a wrong column name), not its rows'.
            never = [c for c, n in absent_in.items() if seen and n == seen]
            if never:
                raise RecordError(path, None, f"missing column(s) {never}: no row has them; the first row's keys are "
                                  f"{first_keys}")
            return rows
        csv.field_size_limit(1 << 30)  # long posts are data, not an attack on the parser
        line = 0
        with _open_text(path, newline="") as f:
            reader = csv.DictReader(f, fieldnames=list(column_names) if column_names else None,
                                    delimiter="\t" if kind == "tsv" else ",")
            header = reader.fieldnames or []
            absent = [c for c in required if c not in header]
            if absent:
                if column_names:
                    raise RecordError(path, None, f"missing column(s) {absent}; column_names are {header}")
                raise RecordError(path, 1, f"missing column(s) {absent}; the header has {header}")
            line = reader.line_num
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    # DictReader puts extra fields under None and fills missing ones with None
                    fields = (len(header) + len(row.get(None) or [])
                              - sum(v is None for k, v in row.items() if k is not None))
                    bad(line + 1, f"row has {fields} fields, {'column_names' if column_names else 'the header'} "
                                  f"{len(header)}")
                else:
                    rows.append((line + 1, row))
                line = reader.line_num
    except UnicodeDecodeError as e:
        raise RecordError(path, None, f"not UTF-8 text (byte {e.start}): save the file as UTF-8") from None
    except csv.Error as e:
        raise RecordError(path, line + 1, f"unreadable CSV: {e}") from None
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError; a cut-off .gz ends in EOFError
        raise RecordError(path, None, f"unreadable file: {e}") from None
    return rows


def read_records(path: str | os.PathLike, kind: str, taxonomy: Iterable[str] | None = None) -> list[Record]:
    """Read and validate every record of `path`; stop at the first bad one with a `RecordError`.

    An empty array (a generation round that kept nothing) reads as no records; callers that need
    some say so.
    """
    taxonomy = list(taxonomy) if taxonomy is not None else None
    records = []
    for line, obj in iter_json_objects(path):
        if problem := validate(obj, kind, taxonomy):
            raise RecordError(path, line, f"bad {kind} record: {problem}")
        obj = dict(obj)
        if kind == "alpaca":
            obj.setdefault("input", "")
        records.append(Record(kind, obj))
    return records


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (os.umask can only set it)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: set and restore at once
    os.umask(mask)
    return mask


def honour_umask(path: str | os.PathLike, *, directory: bool = False) -> None:
    """Give a file made by `tempfile` (always 0600, folders 0700) the mode a plain open() would have:
    teammates, and a server running as another user, can read the outputs as the user's umask allows."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def honour_umask_tree(root: str | os.PathLike) -> None:
    """`honour_umask` over a folder a run wrote: libraries that write through temporary files
    (safetensors' weights among them) leave 0600 files behind."""
    root = Path(root)
    if not root.is_dir():
        return
    mask = current_umask()
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(Path(folder) / name, 0o777 & ~mask)
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                os.chmod(path, 0o666 & ~mask)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        honour_umask(tmp)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _as_dicts(records: Iterable[Record | dict]) -> list[dict]:
    return [r.data if isinstance(r, Record) else r for r in records]


def write_jsonl(path: str | os.PathLike, records: Iterable[Record | dict]) -> Path:
    """Write records as JSON Lines, atomically."""
    return atomic_write_text(path, "".join(_dumps(r) + "\n" for r in _as_dicts(records)))


def write_json(path: str | os.PathLike, records: Iterable[Record | dict] | dict) -> Path:
    """Write a JSON array of records (Alpaca's own format) or any JSON object, atomically."""
    payload = records if isinstance(records, dict) else _as_dicts(records)
    return atomic_write_text(path, json.dumps(payload, ensure_ascii=False, indent=2) + "\n")



def append_jsonl(path: str | os.PathLike, objs: Iterable[dict]) -> None:
    """Append lines and fsync once: what is appended survives a kill at any later moment."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write("".join(_dumps(obj) + "\n" for obj in objs))
        f.flush()
        os.fsync(f.fileno())


def drop_partial_last_line(path: str | os.PathLike) -> bool:
    """Cut a last line left unfinished by a kill mid-append, so the next append starts a fresh line."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return False
        f.seek(0)
        f.truncate(f.read().rfind(b"\n") + 1)
        f.flush()
        os.fsync(f.fileno())
    return True


# Conversions between the instruction formats. The student template renders Alpaca records;
# chat and completion files are the same examples for tools that want those shapes.

def read_json_dataclass(cls, path: str | os.PathLike, what: str):
    """The dataclass `cls` from the JSON object in `path` (keys it does not know are left aside), or a
    ConfigError naming the file when it is not valid JSON or not `what`."""
    try:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{path}: not {what} (a JSON {type(saved).__name__}, not an object)")
    known = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in saved.items() if k in known})
    except TypeError as e:
        raise ConfigError(f"{path}: not {what} ({e})") from None


def alpaca_to_chat(record: Record | dict, system: str | None = None) -> dict:
    r = record.data if isinstance(record, Record) else record
    user = r["instruction"] if not r.get("input") else f"{r['instruction']}\n\n{r['input']}"
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user},
        {"role": "assistant", "content": r["output"]},
    ]
    extras = {k: v for k, v in r.items() if k not in ("instruction", "input", "output")}
    return {"messages": messages, **extras}


# ---- texts in one file, labels in another (Kaggle's test.csv + test_labels.csv) -------------------------

def split_joined_path(spec: str | os.PathLike) -> tuple[Path, Path] | None:
    """(texts file, labels file) of a `texts.csv+labels.csv` entry, else None.

    An entry is a pair only when it names no file itself and at least one side names one (each side
    resolved as `resolve_input` does); a missing file that just has a '+' in its name is not a pair.
    """
    from .paths import resolve_input

    text = str(spec)
    if "+" not in text or Path(text).exists():
        return None
    left, right = (resolve_input(part.strip()) for part in text.split("+", 1))
    return (left, right) if left.exists() or right.exists() else None


# What `read_joined_rows` reports besides unreadable rows: (kind, the file it is in).
DUPLICATE_ID, NO_LABELS_ROW, NO_TEXT_ROW = "duplicate id", "no row in the labels file", "no row in the text file"


def read_joined_rows(text_path: Path, labels_path: Path, text_columns: Sequence[str], label_columns: Sequence[str], *,
                     id_column: str = "id", on_bad: Callable[[Path, int, str], None],
                     on_unmatched: Callable[[Path, int, str, str, str], None]) -> Iterator[tuple[int, dict, int]]:
    """Rows of `text_path` with the `label_columns` of `labels_path` joined by `id_column`:
    (text file line, joined row, labels file line).

    `on_bad(path, line, why)` gets rows that cannot be read. `on_unmatched(path, line, kind, detail, id)` gets
    a second label row of an id (DUPLICATE_ID, the first is kept), a text row whose id has no label row
    (NO_LABELS_ROW) and, after the text rows, a label row whose id has no text (NO_TEXT_ROW). A missing
    column stops with a `RecordError` naming the file.
    """
    labels: dict[str, tuple[int, dict]] = {}
    for line, row in read_table_rows(labels_path, [id_column, *label_columns],
                                     on_bad=lambda line, why: on_bad(labels_path, line, why)):
        rid = str(row[id_column]).strip()
        if rid in labels:
            on_unmatched(labels_path, line, DUPLICATE_ID, f"id also on line {labels[rid][0]}", rid)
        else:
            labels[rid] = (line, row)
    used = set()
    for line, row in read_table_rows(text_path, [id_column, *text_columns],
                                     on_bad=lambda line, why: on_bad(text_path, line, why)):
        rid = str(row[id_column]).strip()
        if rid not in labels:
            on_unmatched(text_path, line, NO_LABELS_ROW, f"id {rid!r} is not in {labels_path.name}", rid)
            continue
        used.add(rid)
        label_line, label_row = labels[rid]
        yield line, {**label_row, **row}, label_line
    for rid, (line, _) in labels.items():
        if rid not in used:
            on_unmatched(labels_path, line, NO_TEXT_ROW, f"id {rid!r} is not in {text_path.name}", rid)

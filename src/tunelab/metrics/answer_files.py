"""Reading an LLM's answers (inference.py's predictions.jsonl) and their references (moderation, alpaca
or predictions rows) for scoring; a bad row is a RecordError naming the file, the line and the record."""

from __future__ import annotations

from dataclasses import dataclass

from .llm_answers import label_parser


@dataclass
class AnswerRow:
    """One answered example: where it came from, the model's text, its reference labels and scores."""

    id: str
    line: int
    instruction: str
    text: str
    answer: str
    reference: tuple[str, ...] | None
    label_probs: dict | None
    reference_at: tuple[str, int] | None = None  # (file, line) the reference was read from


def _reference_value(obj: dict):
    """The labels of a reference record: moderation `labels`, alpaca `output`, or a predictions row's `reference`."""
    for key in ("labels", "output", "reference"):
        if key in obj:
            return key, obj[key]
    return None, None


def read_answer_rows(path, labels, none_label: str, *, allow_empty: bool, with_references: bool,
                     missing_reference: str = "give the references with --data") -> list[AnswerRow]:
    """Rows of inference.py's predictions.jsonl: `prediction` (the answer), `reference` (label text or list;
    read and required when `with_references`, else left for a reference file), optional `label_probs`
    ({label: probability}, every label, in every row or in none). A bad row raises RecordError naming the file, the line and the record id."""
    from ..errors import RecordError
    from ..records import iter_json_objects

    parser = label_parser(tuple(labels), none_label)
    rows: list[AnswerRow] = []
    seen: dict[str, int] = {}
    for line, obj in iter_json_objects(path):
        if not isinstance(obj, dict):
            raise RecordError(path, line, f"expected a JSON object, got {type(obj).__name__}")
        rid = str(obj["id"]) if obj.get("id") is not None else str(len(rows))
        where = f"record {rid}"
        if rid in seen:
            raise RecordError(path, line, f"{where}: id given twice (first on line {seen[rid]})")
        seen[rid] = line
        answer = obj.get("prediction")
        if not isinstance(answer, str):
            raise RecordError(path, line, f"{where}: row needs a string 'prediction' (the model's answer)")
        if not answer.strip() and not allow_empty:
            raise RecordError(path, line, f"{where}: empty prediction (pass --allow_empty_predictions to count "
                                          "it as unparseable)")
        reference = None
        if with_references:
            if "reference" not in obj:
                raise RecordError(path, line, f"{where}: no 'reference' ({missing_reference})")
            reference = parser.read_reference(obj["reference"])
            if isinstance(reference, str):
                raise RecordError(path, line, f"{where}: reference {reference}")
        probs = obj.get("label_probs")
        if probs is not None:
            if not isinstance(probs, dict):
                raise RecordError(path, line, f"{where}: label_probs must be an object {{label: probability}}")
            unknown = [k for k in probs if k not in parser.order]
            missing = [k for k in labels if k not in probs]
            bad = [k for k, v in probs.items() if isinstance(v, bool) or not isinstance(v, (int, float))
                   or not 0.0 <= v <= 1.0]
            if unknown:
                raise RecordError(path, line, f"{where}: label_probs names {unknown}, outside the taxonomy "
                                              f"{list(labels)}")
            if missing or bad:
                raise RecordError(path, line, f"{where}: label_probs needs a probability in [0, 1] for every label "
                                              f"({'missing ' + str(missing) if missing else 'bad ' + str(bad)})")
        if rows and (probs is None) != (rows[0].label_probs is None):
            raise RecordError(path, line, f"{where}: label_probs must be in every row or in none "
                                          f"(line {rows[0].line} {'has' if rows[0].label_probs else 'lacks'} them)")
        rows.append(AnswerRow(rid, line, str(obj.get("instruction", "")), str(obj.get("input", obj.get("text", ""))),
                              answer, reference, probs, (str(path), line) if with_references else None))
    if not rows:
        raise RecordError(path, None, "holds no predictions")
    return rows


def read_reference_file(path, labels, none_label: str) -> list[tuple[str, tuple[str, ...], int, bool]]:
    """(id, labels, line, id given) per record of a reference file: moderation records ({"text", "labels"}),
    alpaca records (`output` is the label text) or predictions rows (`reference`)."""
    from ..errors import RecordError
    from ..records import iter_json_objects

    parser = label_parser(tuple(labels), none_label)
    out, seen = [], {}
    for line, obj in iter_json_objects(path):
        key, value = _reference_value(obj) if isinstance(obj, dict) else (None, None)
        if key is None:
            raise RecordError(path, line, "a reference record needs 'labels' (moderation), 'output' (alpaca) "
                                          "or 'reference'")
        has_id = obj.get("id") is not None
        rid = str(obj["id"]) if has_id else str(len(out))
        if has_id and rid in seen:
            raise RecordError(path, line, f"record {rid}: id given twice (first on line {seen[rid]})")
        seen[rid] = line
        reference = parser.read_reference(value)
        if isinstance(reference, str):
            raise RecordError(path, line, f"record {rid}: {key} {reference}")
        out.append((rid, reference, line, has_id))
    if not out:
        raise RecordError(path, None, "holds no references")
    return out


def attach_references(rows: list[AnswerRow], pred_path, refs, ref_path) -> None:
    """Give each answer row its reference from `refs` (read_reference_file): by id when every reference
    has one, else by position. Counts or ids that do not line up raise RecordError naming file and record."""
    from ..errors import RecordError

    count = f"{len(rows)} predictions in {pred_path} but {len(refs)} references in {ref_path}"
    if all(has_id for *_, has_id in refs):
        by_id = {rid: (labels, line) for rid, labels, line, _ in refs}
        for row in rows:
            if row.id not in by_id:
                raise RecordError(pred_path, row.line, f"record {row.id}: no reference with this id in {ref_path}"
                                  + (f" ({count})" if len(rows) != len(refs) else ""))
        answered = {row.id for row in rows}
        for rid, _, line, _ in refs:
            if rid not in answered:
                raise RecordError(ref_path, line, f"record {rid}: no prediction with this id in {pred_path}"
                                  + (f" ({count})" if len(rows) != len(refs) else ""))
        for row in rows:
            row.reference, row.reference_at = by_id[row.id][0], (str(ref_path), by_id[row.id][1])
        return
    if len(rows) != len(refs):
        first = min(len(rows), len(refs))
        where = (pred_path, rows[first].line, f"record {rows[first].id}") if len(rows) > len(refs) else \
                (ref_path, refs[first][2], f"record {refs[first][0]}")
        raise RecordError(where[0], where[1], f"{where[2]} has no counterpart: {count} (references without ids "
                                              "are matched by position)")
    for row, (_, labels, line, _) in zip(rows, refs):
        row.reference, row.reference_at = labels, (str(ref_path), line)

"""Which rows each split of a classifier run holds, and keeping held-out rows out of training.

`split_rows` cuts the data into train / eval / test (stratified, seeded); `data_splits.json` records
each split's rows by file and position with the files' hashes, so the evaluate stage scores exactly
the held-out rows (`--split test`) and fits baselines on exactly the training rows.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ...errors import ConfigError
from ...generation.dedup import normalize
from ...paths import resolve_input
from ...splits import stratified_split
from .config import ClassifierConfig
from .data import LabeledTexts, data_file_hash, is_dataset_ref, joined_parts, load_labeled_texts

DATA_SPLITS = "data_splits.json"  # which rows of which files each split holds


def split_rows(rows: LabeledTexts, eval_fraction: float, test_fraction: float,
               seed: int) -> tuple[LabeledTexts, LabeledTexts | None, LabeledTexts | None]:
    """(train, eval, test): the fractions held out, stratified so rare classes land in every part."""
    fractions = [f for f in (eval_fraction, test_fraction) if f]
    if not fractions:
        return rows, None, None
    parts = stratified_split(rows.strata(), fractions, seed)
    if not parts[0] or not all(parts[1:]):
        raise ConfigError(f"eval_split {eval_fraction} / test_split {test_fraction} of {len(rows)} rows "
                          "leave a split empty")
    named = dict(zip(["train", *(["eval"] if eval_fraction else []), *(["test"] if test_fraction else [])], parts))
    return (rows.subset(named["train"]), rows.subset(named["eval"]) if "eval" in named else None,
            rows.subset(named["test"]) if "test" in named else None)


def subset_rows(rows: LabeledTexts, size: int | None, seed: int) -> tuple[LabeledTexts, LabeledTexts | None]:
    """(kept, unused): a stratified random `size` of the rows for a CPU budget, or all of them."""
    if size is None or size >= len(rows):
        return rows, None
    rest, kept = stratified_split(rows.strata(), [size / len(rows)], seed)
    return rows.subset(kept), rows.subset(rest)


def held_out_key(text: str) -> str:
    """A text as compared with held-out rows: lower-cased ASCII letters and digits alone (one copy of
    DBpedia keeps "Łososina ( 3 mi )", another "ososina (3 mi)"); a text with none of them (another
    script) by its normalised words, so such texts do not all meet as one empty key."""
    return re.sub(r"[^a-z0-9]", "", text.lower()) or normalize(text)


def drop_held_out_copies(rows: LabeledTexts,
                         held_out: dict[str, LabeledTexts | None]) -> tuple[LabeledTexts, list[dict]]:
    """rows without those whose text is a held-out row's (held_out_key), and a skipped-record entry for each."""
    seen = {}
    for split, part in held_out.items():
        if part is not None:
            for text, rid in zip(part.texts, part.ids):
                seen.setdefault(held_out_key(text), (split, rid))
    keep, copies = [], []
    for i, text in enumerate(rows.texts):
        match = seen.get(held_out_key(text))
        if match is None:
            keep.append(i)
        else:
            path, _ = rows.origins[i] if rows.origins else (None, None)
            copies.append({"file": path, "line": rows.lines[i] if rows.lines else None, "id": rows.ids[i],
                           "reason": f"extra_train_data row repeats {match[0]} row {match[1]}"})
    return rows.subset(keep), copies


def write_data_splits(out: Path, seed: int, splits: dict[str, LabeledTexts | None], files: dict[str, list]) -> None:
    """data_splits.json: which rows of which files each split holds (each row's position among the rows its
    file yields), the files' hashes and a digest of each split's texts and labels, so the evaluate stage can
    score exactly the held-out rows (`--split test`) and fit baselines on exactly the training rows."""
    hashes = {str(p): data_file_hash(p) for group in files.values() for p in group}
    entry = {}
    for name, rows in splits.items():
        if rows is None:
            continue
        by_file: dict[str, list[int]] = {}
        for path, position in rows.origins:
            by_file.setdefault(path, []).append(position)
        entry[name] = {"rows": len(rows), "positions": by_file, "digest": rows_digest(rows)}
    (Path(out) / DATA_SPLITS).write_text(json.dumps(
        {"seed": seed, "stratified_by": "class (single_label) or a row's rarest label (multi_label)",
         "files": hashes, "splits": entry}), encoding="utf-8")


def rows_digest(rows: LabeledTexts) -> str:
    """SHA-256 of a split's texts and labels, in order: catches any change of the rows, hub datasets included."""
    h = hashlib.sha256()
    for text, target in zip(rows.texts, rows.targets):
        h.update(json.dumps([text, sorted(target)]).encode("utf-8"))
    return h.hexdigest()


def load_split_rows(model_dir: Path, split: str, layout: ClassifierConfig, labels: tuple[str, ...],
                    problem_type: str) -> tuple[LabeledTexts, list[Path]]:
    """The rows of one split of a classifier run (train, eval, test, unused) as it trained, and their files.

    The files are read again with the run's layout and checked against the hashes recorded at training
    time: a changed file would silently give other rows.
    """
    path = Path(model_dir) / DATA_SPLITS
    if not path.exists():
        raise ConfigError(f"{model_dir} has no {DATA_SPLITS} (trained before splits were recorded); give --data")
    info = json.loads(path.read_text(encoding="utf-8"))
    if split not in info["splits"]:
        raise ConfigError(f"{model_dir} has no {split!r} split; it has {sorted(info['splits'])} "
                          "(a test split needs test_split at training)")
    entry = info["splits"][split]
    by_line = "lines" in entry  # folders written before positions were recorded
    wanted = entry["lines"] if by_line else entry["positions"]
    files = [resolve_input(p) for p in wanted]
    for p in files:
        if not p.exists() and not joined_parts(p) and not is_dataset_ref(p):
            raise ConfigError(f"{p}, a file {model_dir} trained from, is missing")
        if data_file_hash(p) != info["files"][str(p)]:
            raise ConfigError(f"{p} changed since {model_dir} was trained (its hash differs): the {split} rows "
                              "cannot be recovered")
    # Rows are picked by position, so a split column needs no filtering (IMDB's train and test share a file).
    rows = load_labeled_texts(files, layout, labels=labels, problem_type=problem_type)
    if by_line:
        rows.origins = [(path, line) for (path, _), line in zip(rows.origins, rows.lines)]
    names = {str(f): key for f, key in zip(files, wanted)}  # as resolved here -> as recorded
    keep = {(p, i) for p, indices in wanted.items() for i in indices}
    chosen = rows.subset(i for i, (path, at) in enumerate(rows.origins) if (names.get(path, path), at) in keep)
    if len(chosen) != entry["rows"] or ("digest" in entry and rows_digest(chosen) != entry["digest"]):
        raise ConfigError(f"{model_dir}: the {split} rows read again ({len(chosen)}) are not the {entry['rows']} "
                          f"recorded at training (the data changed since, e.g. a hub dataset's new revision)")
    return chosen, files

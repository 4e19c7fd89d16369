"""Moderation corpora read into one declared taxonomy, de-duplicated, capped and split.

Each corpus has its own layout and labels: Jigsaw's six 0/1 columns (the shared sample, or
Kaggle's train.csv, or test.csv joined to test_labels.csv), Davidson's `class` (0 hate speech,
1 offensive language, 2 neither), HateXplain's annotator votes (the official JSONL, or the
disagreement-subset CSV with label_1..label_3). A reader here turns a layout into rows carrying the
corpus's own labels; the taxonomy's `sources` section (data/taxonomies/moderation.yaml) says what
those labels mean in the taxonomy. Out come moderation records

    {"id": "<corpus>:<own id>", "text", "labels": [taxonomy names], "corpus", "source_label"}

per corpus and split, which the encoder-classifier trainer reads as they are (`taxonomy: moderation`).
Every row read and not kept is listed with file, line and reason; a missing column or an unreadable
file raises `RecordError` naming the file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, RecordError
from ..paths import resolve_input
from ..records import (DUPLICATE_ID, NO_LABELS_ROW, NO_TEXT_ROW, read_joined_rows,  # noqa: F401 (reasons)
                      read_table_rows, table_kind)
from ..splits import stratified_split, stratum_keys
from ..taxonomy import SourceMapping, Taxonomy
from .dedup import normalize

SPLITS = ("train", "dev", "test")
JIGSAW_LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
DAVIDSON_CLASSES = {"0": "hate_speech", "1": "offensive_language", "2": "neither"}
HATEXPLAIN_LABELS = ("hatespeech", "offensive", "normal")
UNDECIDED = "undecided"  # HateXplain's name for a post without a majority label
NO_SOURCE_LABEL = "none"  # source_label of a Jigsaw row with all six columns 0

# Reasons rows are left out (skipped.jsonl `reason`, counted in summary.json); `detail` says more.
EMPTY_TEXT = "empty text"
UNKNOWN_LABEL = "unknown label"
UNSCORED = "unscored (-1)"
BAD_ROW = "bad row"
DUPLICATE_TEXT = "duplicate text"


@dataclass(frozen=True)
class CorpusFile:
    """One input of a corpus: a table, and for Kaggle's test.csv the test_labels.csv joined to it by id."""

    path: Path
    labels_path: Path | None = None

    def __str__(self) -> str:
        return f"{self.path}+{self.labels_path}" if self.labels_path else str(self.path)


@dataclass
class SourceRow:
    """A row as its corpus labels it: its own id (None when the file has none) and source labels."""

    id: str | None
    text: object
    source_labels: tuple[str, ...]
    path: Path
    line: int
    note: str = ""  # shown when the row is left out (HateXplain: the annotators' votes)


Skip = Callable[..., None]  # skip(path, line, reason, detail="", id=None)


# ---- readers: one per corpus layout ---------------------------------------------------------------

def _jigsaw_flags(row: dict, path: Path, line: int, skip: Skip, rid: str | None) -> tuple[str, ...] | None:
    values = {c: str(row[c]).strip() for c in JIGSAW_LABELS}
    if "-1" in values.values():  # Kaggle's test_labels.csv: the row was not scored
        skip(path, line, UNSCORED, "labels are -1 (not used for scoring)", rid)
        return None
    odd = {c: v for c, v in values.items() if v not in ("0", "1")}
    if odd:
        skip(path, line, BAD_ROW, f"label columns must hold 0 or 1, got {odd}", rid)
        return None
    return tuple(c for c in JIGSAW_LABELS if values[c] == "1")


def read_jigsaw(file: CorpusFile, skip: Skip) -> Iterator[SourceRow]:
    """Jigsaw: comment_text + the six 0/1 columns (id optional), or test.csv + test_labels.csv by id."""
    on_bad = lambda p: lambda line, why: skip(p, line, BAD_ROW, why)  # noqa: E731
    if file.labels_path is None:
        try:
            rows = read_table_rows(file.path, ["comment_text", *JIGSAW_LABELS], on_bad=on_bad(file.path))
        except RecordError as e:
            missing = e.problem.split(";")[0].split(":")[0]  # the message goes on to list the header
            if "missing column" in missing and "'toxic'" in missing:
                raise RecordError(e.path, e.line, e.problem + "; Kaggle's test.csv has no labels: give it as "
                                  "test.csv+test_labels.csv") from None
            raise
        for line, row in rows:
            rid = str(row["id"]).strip() if row.get("id") not in (None, "") else None
            if (flags := _jigsaw_flags(row, file.path, line, skip, rid)) is not None:
                yield SourceRow(rid, row["comment_text"], flags, file.path, line)
        return
    def unmatched(path, line, kind, detail, rid):
        skip(path, line, kind, detail, rid)

    for line, row, label_line in read_joined_rows(file.path, file.labels_path, ["comment_text"], JIGSAW_LABELS,
                                                  on_bad=lambda p, line, why: skip(p, line, BAD_ROW, why),
                                                  on_unmatched=unmatched):
        rid = str(row["id"]).strip()
        if (flags := _jigsaw_flags(row, file.labels_path, label_line, skip, rid)) is not None:
            yield SourceRow(rid, row["comment_text"], flags, file.path, line)


def read_davidson(file: CorpusFile, skip: Skip) -> Iterator[SourceRow]:
    """Davidson labeled_data.csv: `class` (the CrowdFlower majority) and `tweet`; the unnamed first column is the id."""
    for line, row in read_table_rows(file.path, ["class", "tweet"],
                                     on_bad=lambda line, why: skip(file.path, line, BAD_ROW, why)):
        own_id = row.get("") if row.get("") not in (None, "") else row.get("id")
        rid = str(own_id).strip() if own_id not in (None, "") else None
        label = DAVIDSON_CLASSES.get(str(row["class"]).strip())
        if label is None:
            skip(file.path, line, UNKNOWN_LABEL, f"class {row['class']!r} is not 0, 1 or 2", rid)
            continue
        yield SourceRow(rid, row["tweet"], (label,), file.path, line)


def majority_label(votes: Sequence[str]) -> str:
    """The label more than half the annotators chose, or `undecided` (three annotators, three labels)."""
    label, n = Counter(votes).most_common(1)[0]
    return label if n * 2 > len(votes) else UNDECIDED


def read_hatexplain(file: CorpusFile, skip: Skip) -> Iterator[SourceRow]:
    """HateXplain: the official JSONL (annotators' labels, post_tokens) or the disagreement-subset CSV.

    The label is always the annotators' majority, recounted here: the subset CSV's own majority_label
    column holds the first annotator's label where all three differ.
    """
    path = file.path
    on_bad = lambda line, why: skip(path, line, BAD_ROW, why)  # noqa: E731
    if table_kind(path) in ("json", "jsonl"):
        rows = read_table_rows(path, ["post_id", "annotators", "post_tokens"], on_bad=on_bad)
    else:
        rows = read_table_rows(path, ["post_id", "text", "label_1", "label_2", "label_3"], on_bad=on_bad)
    for line, row in rows:
        rid = str(row["post_id"]).strip() or None
        if "annotators" in row:
            annotators, tokens = row["annotators"], row["post_tokens"]
            if (not isinstance(annotators, list) or not annotators
                    or not all(isinstance(a, dict) and isinstance(a.get("label"), str) for a in annotators)):
                skip(path, line, BAD_ROW, "'annotators' must be a non-empty list of objects with a 'label'", rid)
                continue
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                skip(path, line, BAD_ROW, "'post_tokens' must be a list of strings", rid)
                continue
            votes, text = [a["label"].strip() for a in annotators], " ".join(tokens)
        else:
            vote_columns = sorted((c for c in row if c.startswith("label_") and c[6:].isdigit()), key=lambda c: int(c[6:]))
            votes, text = [str(row[c] or "").strip() for c in vote_columns], row["text"]
        unknown = sorted({v for v in votes if v not in HATEXPLAIN_LABELS})
        if unknown:
            skip(path, line, UNKNOWN_LABEL, f"annotator label(s) {unknown} are not {list(HATEXPLAIN_LABELS)}", rid)
            continue
        yield SourceRow(rid, text, (majority_label(votes),), path, line, f"annotators chose {votes}")


@dataclass(frozen=True)
class Reader:
    read: Callable[[CorpusFile, Skip], Iterator[SourceRow]]
    source_labels: tuple[str, ...]  # every label the reader can give a row: the taxonomy must map or skip each
    takes_labels_file: bool = False


READERS = {
    "jigsaw": Reader(read_jigsaw, JIGSAW_LABELS, takes_labels_file=True),
    "davidson": Reader(read_davidson, tuple(DAVIDSON_CLASSES.values())),
    "hatexplain": Reader(read_hatexplain, (*HATEXPLAIN_LABELS, UNDECIDED)),
}


# ---- config: which corpora, from which files --------------------------------------------------------

def corpus_sources(taxonomy: Taxonomy) -> dict[str, SourceMapping]:
    """The taxonomy's declared sources, each checked against its reader: every label it can meet is mapped."""
    if not taxonomy.sources:
        raise ConfigError(f"taxonomy {taxonomy.name!r} ({taxonomy.path}) declares no sources: it does not say how any "
                          "corpus maps onto its labels (see data/taxonomies/moderation.yaml)")
    for name, source in taxonomy.sources.items():
        reader = READERS.get(source.reader)
        if reader is None:
            raise ConfigError(f"{taxonomy.path}: source {name!r} names reader {source.reader!r}; readers: "
                              f"{', '.join(READERS)}")
        declared = set(source.map) | set(source.skip)
        unmapped = [s for s in reader.source_labels if s not in declared]
        if unmapped:
            raise ConfigError(f"{taxonomy.path}: source {name!r} does not map its label(s) {unmapped}; "
                              f"the {source.reader} reader gives rows the labels {list(reader.source_labels)}")
        never = sorted(declared - set(reader.source_labels))
        if never:
            raise ConfigError(f"{taxonomy.path}: source {name!r} maps {never}, which the {source.reader} reader never "
                              f"gives (its labels: {list(reader.source_labels)})")
    return taxonomy.sources


def parse_corpus_entries(entries: Sequence[str], taxonomy: Taxonomy) -> dict[str, list[CorpusFile]]:
    """`name=path` entries (a name may repeat; `name=test.csv+test_labels.csv` joins labels by id) by corpus."""
    sources = corpus_sources(taxonomy)
    if not entries:
        raise ConfigError(f"no corpora given: list name=path entries, names of {sorted(sources)}")
    corpora: dict[str, list[CorpusFile]] = {}
    for entry in entries:
        name, sep, spec = entry.partition("=")
        name, spec = name.strip(), spec.strip()
        if not sep or not name or not spec:
            raise ConfigError(f"corpora entry {entry!r} must be name=path (names: {', '.join(sorted(sources))})")
        if name not in sources:
            raise ConfigError(f"corpora entry {entry!r}: corpus {name!r} is not a source that taxonomy "
                              f"{taxonomy.name!r} maps ({taxonomy.path}); its sources: {', '.join(sorted(sources))}")
        text_part, plus, labels_part = spec.partition("+")
        if plus and not READERS[sources[name].reader].takes_labels_file:
            raise ConfigError(f"corpora entry {entry!r}: the {sources[name].reader} reader takes no labels file "
                              "(path+labels_path is for Kaggle's test.csv+test_labels.csv)")
        paths = [resolve_input(p.strip()) for p in ((text_part, labels_part) if plus else (text_part,))]
        for p in paths:
            if not p.is_file():
                raise RecordError(p, None, f"file not found (corpora entry {entry!r})")
        file = CorpusFile(paths[0], paths[1] if plus else None)
        if file in corpora.get(name, []):
            raise ConfigError(f"corpora entry {entry!r} is given twice")
        corpora.setdefault(name, []).append(file)
    return corpora


# ---- reading, mapping, de-duplication, cap, split --------------------------------------------------------

@dataclass
class Corpus:
    """One corpus read into the taxonomy: records (file order) with where each came from, and what was left out."""

    name: str
    files: list[CorpusFile]
    records: list[dict] = field(default_factory=list)
    where: list[tuple[str, int]] = field(default_factory=list)  # (file, line) of each record
    skipped: list[dict] = field(default_factory=list)


def read_corpus(name: str, files: Sequence[CorpusFile], taxonomy: Taxonomy) -> Corpus:
    """Read every file of a corpus with its reader and map its labels; rows are de-duplicated by the corpus's ids."""
    sources = corpus_sources(taxonomy)  # every label the reader gives is mapped or skipped
    if name not in sources:
        raise ConfigError(f"corpus {name!r} is not a source that taxonomy {taxonomy.name!r} maps; its sources: "
                          f"{', '.join(sorted(sources))}")
    source = sources[name]
    reader = READERS[source.reader]
    corpus = Corpus(name, list(files))

    def skip(path, line, reason, detail="", rid=None, **extra):
        corpus.skipped.append({"corpus": name, "file": str(path), "line": line,
                               "id": f"{name}:{rid}" if rid is not None else None, "reason": reason,
                               **({"detail": detail} if detail else {}), **extra})

    first_seen: dict[str, str] = {}  # own id -> file:line, across the corpus's files (HateXplain val + subset)
    for file in files:
        for row in reader.read(file, skip):
            if row.id is not None:
                if row.id in first_seen:
                    skip(row.path, row.line, DUPLICATE_ID, f"same post as {first_seen[row.id]}", row.id)
                    continue
                first_seen[row.id] = f"{row.path}:{row.line}"
            if not isinstance(row.text, str) or not row.text.strip():
                skip(row.path, row.line, EMPTY_TEXT, "", row.id)
                continue
            left_out = [s for s in row.source_labels if s in source.skip]
            if left_out:
                skip(row.path, row.line, source.skip[left_out[0]],
                     f"source label {left_out[0]!r}" + (f": {row.note}" if row.note else ""), row.id)
                continue
            implied = {label for s in row.source_labels for label in source.map[s]}
            record_id = row.id if row.id is not None else f"{row.path.name}:{row.line}"
            corpus.records.append({"id": f"{name}:{record_id}", "text": row.text,
                                   "labels": [label for label in taxonomy.labels if label in implied],
                                   "corpus": name, "source_label": ",".join(row.source_labels) or NO_SOURCE_LABEL})
            corpus.where.append((str(row.path), row.line))
    return corpus


def drop_duplicate_texts(corpus: Corpus) -> int:
    """Keep the first of texts equal after normalising case, spacing and edge punctuation (dedup.normalize):
    a retweet or re-post in train and test would leak the answer. Returns how many were dropped."""
    first: dict[str, int] = {}
    keep = []
    for i, record in enumerate(corpus.records):
        key = normalize(record["text"])
        if key in first:
            kept = corpus.records[first[key]]
            file, line = corpus.where[i]
            corpus.skipped.append({"corpus": corpus.name, "file": file, "line": line, "id": record["id"],
                                   "reason": DUPLICATE_TEXT, "duplicate_of": kept["id"],
                                   **({"detail": f"labels differ: {record['labels']} here, {kept['labels']} kept"}
                                      if record["labels"] != kept["labels"] else {})})
        else:
            first[key] = i
            keep.append(i)
    dropped = len(corpus.records) - len(keep)
    corpus.records = [corpus.records[i] for i in keep]
    corpus.where = [corpus.where[i] for i in keep]
    return dropped


def label_strata(records: Sequence[dict], taxonomy: Taxonomy) -> list:
    """`splits.stratum_keys` over the mapped labels: each row's rarest label, () for none."""
    return stratum_keys([[taxonomy.labels.index(label) for label in r["labels"]] for r in records])


def cap_rows(records: list[dict], max_rows: int, taxonomy: Taxonomy, seed: int) -> list[dict]:
    """A seeded sample of `max_rows` records keeping each label stratum's share (all of them when fewer)."""
    if not max_rows or len(records) <= max_rows:
        return records
    _, sample = stratified_split(label_strata(records, taxonomy), [max_rows / len(records)], seed)
    return [records[i] for i in sample[:max_rows]]


def split_records(records: list[dict], fractions: Sequence[float], taxonomy: Taxonomy,
                  seed: int) -> dict[str, list[dict]]:
    """Seeded train/dev/test by label stratum; `fractions` are train, dev, test (train takes the remainder)."""
    parts = stratified_split(label_strata(records, taxonomy), list(fractions[1:]), seed)
    return {split: [records[i] for i in part] for split, part in zip(SPLITS, parts, strict=True)}


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(f"corpora_split_fractions must be three positive fractions (train, dev, test) summing "
                          f"to 1, got {list(fractions)}")
    return tuple(float(f) for f in fractions)


def label_counts(records: Sequence[dict], taxonomy: Taxonomy) -> dict[str, int]:
    counts = Counter(label for r in records for label in r["labels"])
    return {**{label: counts[label] for label in taxonomy.labels},
            taxonomy.none_label: sum(not r["labels"] for r in records)}


@dataclass
class PreparedCorpus:
    name: str
    files: list[CorpusFile]
    splits: dict[str, list[dict]]
    skipped: list[dict]
    kept: int  # rows left after skipping and de-duplication, before the cap
    capped_out: int

    def summary(self, taxonomy: Taxonomy) -> dict:
        return {
            "files": [str(f) for f in self.files],
            "skipped": dict(Counter(s["reason"] for s in self.skipped).most_common()),
            "rows_kept": self.kept,
            "left_out_by_cap": self.capped_out,
            "rows": {split: len(rows) for split, rows in self.splits.items()},
            "labels": {split: label_counts(rows, taxonomy) for split, rows in self.splits.items()},
            "source_labels": {split: dict(sorted(Counter(r["source_label"] for r in rows).items()))
                              for split, rows in self.splits.items()},
        }


def prepare_corpus(name: str, files: Sequence[CorpusFile], taxonomy: Taxonomy, *, fractions: Sequence[float],
                   max_rows: int, seed: int) -> PreparedCorpus:
    """Read, map, drop duplicate texts, cap (stratified, seeded), split (stratified, seeded)."""
    corpus = read_corpus(name, files, taxonomy)
    if not corpus.records:
        first = corpus.skipped[0] if corpus.skipped else None
        raise RecordError(", ".join(map(str, files)), None, f"corpus {name!r} has no usable rows"
                          + (f" ({len(corpus.skipped)} skipped, the first {first['file']}:{first['line']}: "
                             f"{first['reason']})" if first else ""))
    drop_duplicate_texts(corpus)
    capped = cap_rows(corpus.records, max_rows, taxonomy, seed)
    splits = split_records(capped, fractions, taxonomy, seed)
    return PreparedCorpus(name, list(files), splits, corpus.skipped, len(corpus.records),
                          len(corpus.records) - len(capped))


def cross_corpus_duplicates(corpora: Sequence[PreparedCorpus], limit: int = 20) -> dict:
    """Texts kept in more than one corpus (they are not dropped): a held-out corpus's test shares them with training."""
    seen: dict[str, list[str]] = {}
    for corpus in corpora:
        for split, rows in corpus.splits.items():
            for r in rows:
                seen.setdefault(normalize(r["text"]), []).append(f"{r['id']} ({split})")
    shared = [ids for ids in seen.values() if len({i.split(":", 1)[0] for i in ids}) > 1]
    return {"count": len(shared), "examples": shared[:limit]}

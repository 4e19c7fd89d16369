"""Exact and near-duplicate removal, and decontamination against evaluation sets.

Why: a generator asked for many tasks repeats itself, and near-copies inflate a dataset (the
student sees one task many times, the count overstates its variety); a generated record that
copies an evaluation item leaks the test into training and inflates the scores measured on it.

Columns in: records as dicts, e.g. Alpaca `{instruction, input, output, id?, provenance?, ...}`
or moderation `{text, labels, ...}`. A `key` callable picks the text a record is compared by:
`alpaca_text` (instruction + input, the default for duplicates: two tasks that ask the same thing
are duplicates whatever their answers) or `alpaca_full_text` (instruction + input + output, the
default for decontamination: copying either the question or the answer is a leak);
`lambda r: r["text"]` for moderation records.

Columns out: every filter returns `(kept, dropped)`. `kept` holds the input records themselves,
in input order. Each `dropped` item is a report dict:
- `{"reason": "exact duplicate", "duplicate_of", "text", "record"}`
- `{"reason": "near duplicate", "jaccard", "duplicate_of", "text", "record"}`
- `{"reason": "overlaps evaluation set", "eval_set", "ngram", "text", "record"}`
`duplicate_of` is the kept record's "id" when it has one, else its index in the input;
`text` is the compared text. `report_counts(dropped)` summarises reports for a stats file.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from datasketch import MinHash, MinHashLSH

from ..errors import RecordError
from ..records import iter_json_objects

Key = Callable[[Any], str]

EXACT_DUPLICATE = "exact duplicate"
NEAR_DUPLICATE = "near duplicate"
EVAL_OVERLAP = "overlaps evaluation set"


def alpaca_text(record: Mapping[str, Any]) -> str:
    """Instruction and input: what a task asks, the text duplicates are compared by."""
    return f"{record.get('instruction') or ''}\n{record.get('input') or ''}"


def alpaca_full_text(record: Mapping[str, Any]) -> str:
    """Instruction, input and output: the whole record, the text checked against eval sets."""
    return f"{record.get('instruction') or ''}\n{record.get('input') or ''}\n{record.get('output') or ''}"


@lru_cache(maxsize=4096)
def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


def _strip_punct(token: str) -> str:
    start, end = 0, len(token)
    while start < end and _is_punct(token[start]):
        start += 1
    while end > start and _is_punct(token[end - 1]):
        end -= 1
    return token[start:end]


def _words(text: str) -> list[str]:
    # NFKC first so full-width and compatibility forms lower-case and strip like their plain forms.
    words = (_strip_punct(t) for t in unicodedata.normalize("NFKC", text).lower().split())
    return [w for w in words if w]  # a token of punctuation alone ("-", "...") is dropped


def normalize(text: str) -> str:
    """Lower-case, NFKC, whitespace collapsed, punctuation stripped at token edges.

    Inner punctuation stays ("don't", "3.5", "e-mail"), so only trivially different copies meet.
    """
    return " ".join(_words(text))


def _ident(record: Any, index: int) -> Any:
    rid = record.get("id") if hasattr(record, "get") else None
    return rid if rid is not None else index


def drop_exact_duplicates(records: Sequence[Any], key: Key = alpaca_text) -> tuple[list, list[dict]]:
    """Drop records whose normalized key text equals an earlier one's; the first occurrence wins."""
    first: dict[str, Any] = {}
    kept, dropped = [], []
    for i, record in enumerate(records):
        text = key(record)
        norm = normalize(text)
        if norm in first:
            dropped.append({"reason": EXACT_DUPLICATE, "duplicate_of": first[norm], "text": text, "record": record})
        else:
            first[norm] = _ident(record, i)
            kept.append(record)
    return kept, dropped


def _shingles(text: str, n: int) -> list[bytes]:
    words = _words(text)
    if len(words) < n:  # too short for one n-gram: compare by the words themselves
        grams = set(words)
    else:
        grams = {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}
    return [g.encode("utf-8") for g in grams]


def drop_near_duplicates(
    records: Sequence[Any],
    key: Key = alpaca_text,
    threshold: float = 0.8,
    num_perm: int = 128,
    shingle: int = 3,
    seed: int = 1,
) -> tuple[list, list[dict]]:
    """Drop records whose MinHash-estimated Jaccard with an earlier kept record is >= threshold.

    Shingles are word `shingle`-grams of the normalized text (its word set when shorter). Records
    are processed in order; LSH proposes candidates among the kept ones and each is confirmed by
    its estimated Jaccard, since LSH also returns false positives. Deterministic for a given seed.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if shingle < 1:
        raise ValueError(f"shingle must be >= 1, got {shingle}")
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    signatures: dict[int, MinHash] = {}  # kept index -> its MinHash
    kept, dropped = [], []
    texts = [key(r) for r in records]
    # MinHash.generator reuses one set of permutations for all records instead of building 52k.
    hashes = MinHash.generator((_shingles(t, shingle) for t in texts), num_perm=num_perm, seed=seed)
    for i, (record, text, mh) in enumerate(zip(records, texts, hashes)):
        best: tuple[float, int] | None = None
        for j in lsh.query(mh):
            score = mh.jaccard(signatures[j])
            if score >= threshold and (best is None or (-score, j) < (-best[0], best[1])):
                best = (score, j)  # the most similar kept record; ties go to the earliest
        if best is not None:
            dropped.append({
                "reason": NEAR_DUPLICATE,
                "jaccard": round(best[0], 4),
                "duplicate_of": _ident(records[best[1]], best[1]),
                "text": text,
                "record": record,
            })
        else:
            lsh.insert(i, mh, check_duplication=False)
            signatures[i] = mh
            kept.append(record)
    return kept, dropped


class NearDuplicateIndex:
    """The incremental form of `drop_near_duplicates`, for builds that keep records one at a time.

    `query(text)` names the most similar kept record at or above the threshold (estimated Jaccard)
    or returns None; `add(id, text)` keeps a record. All signatures share one set of permutations.
    """

    def __init__(self, threshold: float = 0.8, *, num_perm: int = 128, shingle: int = 3, seed: int = 1):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold, self.num_perm, self.shingle, self.seed = threshold, num_perm, shingle, seed
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        template = MinHash(num_perm=num_perm, seed=seed)
        self._permutations, self._scheme = template.permutations, template.scheme
        self._signatures: dict[Any, tuple[int, MinHash]] = {}  # id -> (insertion order, signature)
        self._last: tuple[str, MinHash] | None = None  # add() right after query() reuses the signature

    def _signature(self, text: str) -> MinHash:
        if self._last is not None and self._last[0] == text:
            return self._last[1]
        mh = MinHash(num_perm=self.num_perm, seed=self.seed, permutations=self._permutations, scheme=self._scheme)
        mh.update_batch(_shingles(text, self.shingle))
        self._last = (text, mh)
        return mh

    def query(self, text: str) -> tuple[Any, float] | None:
        mh = self._signature(text)
        best: tuple[float, int, Any] | None = None
        for ident in self._lsh.query(mh):  # a set: ties go to the earliest kept, whatever the hash order
            order, other = self._signatures[ident]
            score = mh.jaccard(other)
            if score >= self.threshold and (best is None or (-score, order) < (-best[0], best[1])):
                best = (score, order, ident)
        return None if best is None else (best[2], best[0])

    def add(self, ident: Any, text: str) -> None:
        mh = self._signature(text)
        self._lsh.insert(ident, mh, check_duplication=False)
        self._signatures[ident] = (len(self._signatures), mh)

    def __len__(self) -> int:
        return len(self._signatures)


class Decontaminator:
    """Word n-grams of named evaluation sets; `check` finds the first one a text contains.

    Built from `{"set name": [text, ...]}`; words are normalized as in `normalize`. An eval text
    shorter than `n` words has no n-gram, so it is kept whole and matches a text that equals it,
    or a whole line or run of whole lines of it (records compared by `alpaca_full_text` put each
    field on its own line, so a record whose instruction + input or output equals a short eval
    item is caught). Short items of fewer than `short_min_words` words match the whole text only:
    one-word answers ("True", "Negative") recur across unrelated tasks and are no leak alone.
    """

    def __init__(self, eval_sets: Mapping[str, Iterable[str]], n: int = 8, short_min_words: int = 2):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n, self.short_min_words = n, short_min_words
        self.ngrams: dict[str, str] = {}  # n-gram of a long eval text -> first set holding it
        self.short: dict[str, str] = {}  # whole short eval text -> first set holding it
        self.sizes: dict[str, int] = {}  # set name -> number of texts
        for name, texts in eval_sets.items():
            count = 0
            for text in texts:
                count += 1
                words = _words(text)
                if len(words) < n:
                    if words:
                        self.short.setdefault(" ".join(words), name)
                else:
                    for gram in self._ngrams(words):
                        self.ngrams.setdefault(gram, name)
            self.sizes[name] = count

    def _ngrams(self, words: list[str]) -> Iterable[str]:
        n = self.n
        return (" ".join(words[i:i + n]) for i in range(len(words) - n + 1))

    def _line_runs(self, text: str) -> Iterable[str]:
        """Runs of consecutive non-empty lines of `text` with fewer than n words in all."""
        lines = [w for w in (_words(line) for line in text.splitlines()) if w]
        for i in range(len(lines)):
            run: list[str] = []
            for line in lines[i:]:
                run = run + line
                if len(run) >= self.n:
                    break
                if len(run) >= self.short_min_words:
                    yield " ".join(run)

    def check(self, text: str) -> tuple[str, str] | None:
        """(eval set name, matched n-gram or short eval text) of the first overlap, or None."""
        words = _words(text)
        if self.ngrams:
            for gram in self._ngrams(words):
                if (name := self.ngrams.get(gram)) is not None:
                    return name, gram
        if self.short:
            whole = " ".join(words)
            if (name := self.short.get(whole)) is not None:
                return name, whole
            for run in self._line_runs(text):
                if (name := self.short.get(run)) is not None:
                    return name, run
        return None


def _text_field(path: str | os.PathLike, line: int, obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name, "")
    if not isinstance(value, str):
        raise RecordError(path, line, f"field '{name}' must be a string, got {type(value).__name__}")
    return value


def load_eval_texts(path: str | os.PathLike) -> list[str]:
    """Texts of an evaluation set file (.json array or .jsonl), one or more per record.

    Alpaca records give instruction + " " + input and output as two texts (copying either one is
    a leak); chat records give every message's content; prompt/completion records give both;
    records with a `text` field (moderation) give it.
    """
    texts: list[str] = []
    for line, obj in iter_json_objects(path):
        if not isinstance(obj, dict):
            raise RecordError(path, line, f"expected a JSON object, got {type(obj).__name__}")
        if "messages" in obj:
            messages = obj["messages"]
            if not isinstance(messages, list):
                raise RecordError(path, line, "field 'messages' must be a list of {role, content} objects")
            for i, message in enumerate(messages):
                content = message.get("content") if isinstance(message, dict) else None
                if isinstance(content, str):
                    texts.append(content)
                elif isinstance(content, list):  # content parts: keep the text ones
                    texts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
                else:
                    raise RecordError(path, line, f"message {i} needs a 'content' string or list of content parts")
        elif "instruction" in obj:
            question = f"{_text_field(path, line, obj, 'instruction')} {_text_field(path, line, obj, 'input')}"
            texts.extend([question, _text_field(path, line, obj, "output")])
        elif "prompt" in obj and "completion" in obj:
            texts.extend([_text_field(path, line, obj, "prompt"), _text_field(path, line, obj, "completion")])
        elif "text" in obj:
            texts.append(_text_field(path, line, obj, "text"))
        else:
            raise RecordError(
                path, line,
                "expected an Alpaca record (instruction/input/output), a chat record (messages), "
                f"a prompt/completion record or a record with a 'text' field; got keys {sorted(obj)}",
            )
    return [t for t in texts if t.strip()]

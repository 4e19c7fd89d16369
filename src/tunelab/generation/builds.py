"""One shape for every generate build (distilabel's Task shape): declared settings, `requests()` (empty
for corpus builds), `run(ctx) -> stats`, failures as rows with their reason; and what the builds share:
the checks every teacher-written record passes, the three formats every dataset is written in.

A build's life: constructed from its settings (every setting and small input checked), `prepare()` once
the output folder is known to be usable (corpus builds read and split their corpora here: a bad file
leaves an earlier run's outputs as they were), then `run(ctx)`, which writes its outputs and says what
it kept and rejected.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..paths import resolve_input
from ..prompts import Template, load_template
from ..records import write_json, write_jsonl
from ..runs import RunRecord
from . import dedup
from .settings import GenerateConfig


class Build(Protocol):
    name: str  # the task: one of settings.TASKS
    template: Template | None  # the teacher prompt; None for builds without a teacher

    def prepare(self) -> None:
        """Read and check the inputs before anything is written."""

    def requests(self) -> list:
        """Every teacher request the build could send (dry runs count them); [] without a teacher."""

    def dry_run_note(self) -> dict:
        """What a dry run adds about this build beyond its requests."""

    def run(self, ctx: BuildContext) -> dict:
        """Write the build's outputs into ctx.out; returns its stats."""


@dataclass
class BuildContext:
    out: Path
    record: RunRecord
    teacher: object | None = None  # builds with a teacher
    cache: object | None = None  # the RequestCache every teacher answer goes through
    gates: DataGates | None = None


def reject_counts(rejects: list[dict], key: str) -> dict[str, int]:
    return dict(Counter(r[key] for r in rejects).most_common())


def write_formats(out: Path, stem: str, pairs: list[dict], record: RunRecord, to_chat) -> None:
    """One dataset in the three formats: Alpaca JSON, chat JSONL, prompt/completion JSONL."""
    student = load_template("alpaca_student")
    record.add_template(student.name, student.source)
    completions = [{"id": p["id"], "prompt": student.render(instruction=p["instruction"], input=p["input"]),
                    "completion": p["output"], **({"image": p["image"]} if p.get("image") else {}),
                    **({"judge": p["judge"]} if "judge" in p else {}),
                    "provenance": p["provenance"]} for p in pairs]
    write_json(out / f"{stem}.alpaca.json", pairs)
    write_jsonl(out / f"{stem}.chat.jsonl", [to_chat(p) | {"provenance": p["provenance"]} for p in pairs])
    write_jsonl(out / f"{stem}.completion.jsonl", completions)
    for suffix in (".alpaca.json", ".chat.jsonl", ".completion.jsonl"):
        record.add_output(stem + suffix, out / f"{stem}{suffix}")


class DataGates:
    """The checks every teacher-written record passes after parsing: decontamination, then near duplicates.

    Applied record by record, in order, so a build can stop at its target with every kept record clean.
    """

    def __init__(self, gen: GenerateConfig):
        eval_sets = {}
        self.eval_paths = {}
        for ref in gen.decontaminate_against:
            path = resolve_input(ref)
            eval_sets[ref] = dedup.load_eval_texts(path)
            self.eval_paths[ref] = path
        self.decontaminator = dedup.Decontaminator(eval_sets, n=gen.decontamination_ngram) if eval_sets else None
        self.near = (dedup.NearDuplicateIndex(gen.near_duplicate_threshold, seed=gen.seed)
                     if gen.near_duplicate_threshold > 0 else None)
        self.exact: dict[str, str] = {}  # normalized text -> id of the kept record

    def register(self, record: RunRecord) -> None:
        for ref, path in self.eval_paths.items():
            record.add_input(f"eval_set:{ref}", path)

    def check(self, record_id: str, text: str, full_text: str) -> dict | None:
        """None keeps the record (and remembers it); otherwise the reason it is dropped.

        `text` is what duplicates are judged by, `full_text` what must not overlap an evaluation set.
        """
        if self.decontaminator is not None and (hit := self.decontaminator.check(full_text)):
            return {"stage": "decontamination", "reason": f"overlaps evaluation set {hit[0]}", "ngram": hit[1]}
        normalized = dedup.normalize(text)
        if normalized in self.exact:
            return {"stage": "exact_duplicate", "reason": "exact duplicate of a kept record",
                    "duplicate_of": self.exact[normalized]}
        if self.near is not None and (dup := self.near.query(text)):
            return {"stage": "near_duplicate", "reason": "near duplicate of a kept record",
                    "duplicate_of": dup[0], "jaccard": round(dup[1], 4)}
        self.exact[normalized] = record_id
        if self.near is not None:
            self.near.add(record_id, text)
        return None

"""The builds without a teacher: a balanced moderation set from one labelled corpus, and several corpora
mapped onto one declared taxonomy. Both read, de-duplicate and split in `prepare`, before the output
folder is touched, and only write in `run`."""

from __future__ import annotations

import time

from . import corpora
from ..errors import ConfigError
from ..paths import resolve_input
from ..prompts import load_template
from ..records import alpaca_to_chat, write_json, write_jsonl
from ..taxonomy import load_taxonomy
from . import dedup
from . import moderation as mod
from .builds import BuildContext, reject_counts, write_formats
from .settings import CorporaConfig, ModerationConfig


class ModerationBuild:
    """Task `moderation`: a balanced instruction set from one labelled corpus, no teacher.

    `prepare` reads, de-duplicates and splits the corpus before the output folder is touched, so a bad
    file or setting leaves an earlier run's outputs as they were; `run` only writes.
    """

    name = "moderation"
    template = None  # no teacher (its instruction template is written into every record)

    def __init__(self, cfg: ModerationConfig, seed: int, near_duplicate_threshold: float):
        self.cfg, self.seed, self.near_duplicate_threshold = cfg, seed, near_duplicate_threshold
        self.taxonomy = load_taxonomy(cfg.taxonomy)
        self.mapping = {label: label for label in self.taxonomy.labels}
        for pair in cfg.label_columns:
            label, sep, column = pair.partition("=")
            if not sep or label not in self.mapping:
                raise ConfigError(f"label_columns entry {pair!r} must be label=column with a label of "
                                  f"{self.taxonomy.labels}")
            self.mapping[label] = column
        self.corpus = resolve_input(cfg.corpus)
        self.instruction_template = load_template(cfg.moderation_template)

    def requests(self) -> list:
        return []

    def dry_run_note(self) -> dict:
        return {}

    def prepare(self) -> None:
        cfg, seed = self.cfg, self.seed
        records, self.skipped = mod.load_labeled_corpus(self.corpus, self.taxonomy, cfg.text_column, self.mapping)
        self.corpus_rows = len(records)
        records, self.exact_dropped = dedup.drop_exact_duplicates(records, key=lambda r: r["text"])
        self.near_dropped = []
        if self.near_duplicate_threshold > 0:  # near-copies (spam, quoted replies) would leak between train and test
            records, self.near_dropped = dedup.drop_near_duplicates(records, key=lambda r: r["text"],
                                                                    threshold=self.near_duplicate_threshold, seed=seed)
        self.train, self.test = mod.balanced_split(
            records, self.taxonomy, test_per_label=cfg.test_per_label, test_none=cfg.test_none,
            train_max_per_label=cfg.train_max_per_label, train_none=cfg.train_none, seed=seed)

    def run(self, ctx: BuildContext) -> dict:
        out, record = ctx.out, ctx.record
        taxonomy, template = self.taxonomy, self.instruction_template
        record.add_input("moderation_corpus", self.corpus)
        record.add_input("taxonomy", taxonomy.path)
        record.add_template(template.name, template.source)
        write_jsonl(out / "moderation.dropped.jsonl", [{k: v for k, v in d.items() if k != "record"}
                                                       | {"id": d["record"]["id"]}
                                                       for d in self.exact_dropped + self.near_dropped])
        record.add_output("moderation_dropped", out / "moderation.dropped.jsonl")
        instruction = template.render(labels=list(taxonomy.labels), none_label=taxonomy.none_label).strip()
        provenance = {"source": str(self.corpus), "taxonomy": taxonomy.name,
                      "template": f"{template.name}@{template.version}"}
        for split, rows in (("train", self.train), ("test", self.test)):
            write_jsonl(out / f"moderation_{split}.jsonl", [r | {"provenance": provenance} for r in rows])
            record.add_output(f"moderation_{split}.jsonl", out / f"moderation_{split}.jsonl")
            pairs = [mod.to_alpaca(r, taxonomy, instruction) | {"provenance": provenance} for r in rows]
            write_formats(out, f"moderation_{split}", pairs, record, alpaca_to_chat)
        return {"corpus_rows": self.corpus_rows, "duplicates_dropped": len(self.exact_dropped),
                "near_duplicates_dropped": len(self.near_dropped), "skipped": self.skipped,
                "train": len(self.train), "test": len(self.test),
                "train_labels": mod.label_counts(self.train, taxonomy),
                "test_labels": mod.label_counts(self.test, taxonomy)}


class CorporaBuild:
    """Task `corpora`: moderation corpora mapped onto one declared taxonomy, split per corpus.

    Settings are checked on construction and every corpus is read by `prepare`, both before the
    output folder exists, so a bad entry or a file with a missing column leaves nothing behind.
    """

    name = "corpora"
    template = None  # no teacher

    def __init__(self, cfg: CorporaConfig, seed: int):
        self.cfg, self.seed = cfg, seed
        self.fractions = corpora.check_fractions(cfg.corpora_split_fractions)
        self.taxonomy = load_taxonomy(cfg.corpora_taxonomy)
        self.files = corpora.parse_corpus_entries(cfg.corpora, self.taxonomy)
        self.prepared: list = []
        self.seconds = 0.0

    def requests(self) -> list:
        return []

    def dry_run_note(self) -> dict:
        """No teacher: nothing to send; the entries and files were checked."""
        return {"requests": 0, "files": {name: [str(f) for f in files] for name, files in self.files.items()}}

    def prepare(self) -> None:
        started = time.monotonic()
        self.prepared = [corpora.prepare_corpus(name, files, self.taxonomy, fractions=self.fractions,
                                                max_rows=self.cfg.max_rows_per_corpus, seed=self.seed)
                         for name, files in self.files.items()]
        self.seconds = time.monotonic() - started

    def run(self, ctx: BuildContext) -> dict:
        out, record = ctx.out, ctx.record
        folder = out / "corpora"
        record.add_input("corpora_taxonomy", self.taxonomy.path)
        written = {folder / "skipped.jsonl", folder / "summary.json"}
        per_corpus = {}
        for corpus in self.prepared:
            for i, file in enumerate(corpus.files):
                record.add_input(f"corpus:{corpus.name}[{i}]", file.path)
                if file.labels_path:
                    record.add_input(f"corpus:{corpus.name}[{i}]:labels", file.labels_path)
            outputs = {}
            for split, rows in corpus.splits.items():
                path = folder / f"{corpus.name}_{split}.jsonl"
                write_jsonl(path, rows)
                record.add_output(f"corpora/{path.name}", path)
                written.add(path)
                outputs[split] = f"corpora/{path.name}"
            per_corpus[corpus.name] = corpus.summary(self.taxonomy) | {"outputs": outputs}
        # An --overwrite run with fewer corpora must not leave an earlier run's splits for a recipe to pick up.
        for stale in folder.glob("*.jsonl"):
            if stale not in written and stale.stem.rsplit("_", 1)[-1] in corpora.SPLITS:
                stale.unlink()
        skipped = [s for corpus in self.prepared for s in corpus.skipped]
        write_jsonl(folder / "skipped.jsonl", skipped)
        record.add_output("corpora/skipped.jsonl", folder / "skipped.jsonl")
        every_row = {split: [r for c in self.prepared for r in c.splits[split]] for split in corpora.SPLITS}
        summary = {
            "taxonomy": {"name": self.taxonomy.name, "path": str(self.taxonomy.path),
                         "labels": list(self.taxonomy.labels), "none_label": self.taxonomy.none_label},
            "mapping": {c.name: self.taxonomy.sources[c.name].as_dict() for c in self.prepared},
            "seed": self.seed,
            "split_fractions": dict(zip(corpora.SPLITS, self.fractions, strict=True)),
            "max_rows_per_corpus": self.cfg.max_rows_per_corpus or None,
            "corpora": per_corpus,
            "all_corpora": {"rows": {split: len(rows) for split, rows in every_row.items()},
                            "labels": {split: corpora.label_counts(rows, self.taxonomy)
                                       for split, rows in every_row.items()},
                            "skipped": reject_counts(skipped, "reason")},
            "cross_corpus_duplicates": corpora.cross_corpus_duplicates(self.prepared),
            "seconds": round(self.seconds, 2),
        }
        write_json(folder / "summary.json", summary)
        record.add_output("corpora/summary.json", folder / "summary.json")
        return {"summary": "corpora/summary.json", "seconds": summary["seconds"],
                **{name: {"rows": c["rows"], "labels": c["labels"], "skipped": c["skipped"]}
                   for name, c in per_corpus.items()}}

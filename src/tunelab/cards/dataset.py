"""Dataset cards: the README.md of a generate run folder.

The YAML front matter comes from huggingface_hub's `DatasetCardData`; the body says which tasks ran,
the teacher and its sampling, the prompt templates' versions, the source files with their licenses,
the counts (kept, rejected and why), every file written, the filters, and the limitations.

    write_dataset_card(out, stats, record)      # generate
"""

from __future__ import annotations

import time
from pathlib import Path

from .facts import (BUILTIN_MODELS, CARD, DATASET_CARD_MARKER, SAMPLE_LIMITS, count_records, display_path, fmt,
                    front_matter, is_random_base, parse_inputs, shipped_sample, shipped_samples, table, write_card)

TASK_DESCRIPTIONS = {
    "moderation": "balanced train/test moderation sets from a labelled corpus (no teacher)",
    "corpora": "several moderation corpora mapped onto one taxonomy, split per corpus (no teacher)",
    "self_instruct": "Alpaca-style instruction/input/output tasks written by the teacher from seed tasks",
    "moderation_qa": "question/answer pairs and per-category verdicts about posts, written by the teacher",
    "responses": "several answers per instruction from the teacher, beside the dataset's own answer",
    "judge": "records rated by the teacher as a judge on a rubric; those reaching the threshold kept with their scores",
    "preferences": "preference pairs (prompt, chosen, rejected): every answer judged, the best paired with a lower one",
}


def file_format(name: str) -> str:
    """What a generate output file holds, from its name."""
    if name.endswith(".alpaca.json"):
        return "alpaca: JSON array of instruction, input, output (+ id, provenance)"
    if name.endswith(".chat.jsonl"):
        return "chat: JSONL of messages (user / assistant turns)"
    if name.endswith(".completion.jsonl"):
        return "completion: JSONL of prompt (student template) and completion"
    if name.endswith(".rejects.jsonl"):
        return "rejected records: stage, reason, raw text (JSONL)"
    if name.endswith(".dropped.jsonl"):
        return "duplicates dropped before splitting (JSONL)"
    if name == "skipped.jsonl":
        return "rows read and not written, with reasons (JSONL)"
    if name == "teacher_cache.jsonl":
        return "every teacher request and answer, keyed by hash (JSONL)"
    if name == "moderation_qa.jsonl":
        return "one record per post: text, image, qa, verdicts, labels (JSONL)"
    if name == "responses.jsonl":
        return "one record per instruction: its reference answer and the teacher's answers (JSONL)"
    if name == "preferences.jsonl":
        return "TRL preference format: prompt (student template), chosen, rejected, their sources and scores (JSONL)"
    if name == "preferences.chat.jsonl":
        return "TRL conversational preference format: prompt, chosen and rejected as turns (JSONL)"
    if name == "judgments.jsonl":
        return "every judge verdict per instruction: scores or comparisons, with rationales (JSONL)"
    if name.endswith(".jsonl"):
        return "moderation: JSONL of text and labels"
    if name.endswith(".json"):
        return "counts (JSON)"
    return "file"


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def _task_counts(name: str, s: dict) -> list[str]:
    """Markdown lines with one task's counts (kept, rejected and why)."""
    lines = [f"### {name}", ""]
    if name == "moderation":
        lines.append(f"{fmt(s.get('corpus_rows'))} corpus rows read; {fmt(s.get('duplicates_dropped', 0))} exact and "
                     f"{fmt(s.get('near_duplicates_dropped', 0))} near duplicates dropped before splitting; "
                     f"skipped: {fmt(s.get('skipped') or 0)}. "
                     f"Kept: train {fmt(s.get('train'))}, test {fmt(s.get('test'))}.")
        for split in ("train", "test"):
            if s.get(f"{split}_labels"):
                lines += ["", f"Labels in {split}: {fmt(s[f'{split}_labels'])}."]
    elif name == "corpora":
        rows = [(corpus, c.get("rows"), c.get("skipped")) for corpus, c in s.items() if isinstance(c, dict)]
        lines.append(table(("corpus", "rows per split", "skipped (by reason)"), rows))
        lines += ["", "Per-split label counts and the label mapping: `corpora/summary.json`."]
    elif name in ("responses", "judge", "preferences"):
        lines.append(_judged_counts(name, s))
    else:
        kept = s.get("kept") if name == "self_instruct" else s.get("pairs")
        what = "tasks kept" if name == "self_instruct" else (
            f"instruction pairs from {fmt(s.get('kept_posts'))} of {fmt(s.get('posts'))} posts")
        requests = "; ".join(f"{k} {fmt(s[k])}" for k in ("requests", "sent", "cached") if k in s)
        lines.append(f"{fmt(kept)} {what}; {fmt(s.get('rejected', 0))} rejected. "
                     f"Teacher requests: {requests or 'n/a'}.")
        if s.get("rejected_by_stage"):
            lines += ["", "Rejected by stage: " + fmt(s["rejected_by_stage"]) + "."]
        if s.get("reject_reasons"):
            lines += ["", table(("reject reason", "count"), list(s["reject_reasons"].items()))]
    lines.append("")
    return lines


def _judged_counts(name: str, s: dict) -> str:
    requests = "; ".join(f"{k} {fmt(s[k])}" for k in ("requests", "sent", "cached") if k in s)
    if name == "responses":
        said = f"{fmt(s.get('answers'))} answers to {fmt(s.get('instructions'))} instructions"
    elif name == "judge":
        said = (f"{fmt(s.get('kept'))} of {fmt(s.get('records'))} records kept (mean score "
                f"{fmt(s.get('mean_score'))}; scores {fmt(s.get('score_counts'))})")
    else:
        said = (f"{fmt(s.get('pairs'))} pairs from {fmt(s.get('instructions'))} instructions; dropped: "
                f"{fmt(s.get('drop_reasons') or 0)}")
    reasons = s.get("reject_reasons") or {}
    return (f"{said}; {fmt(s.get('rejected', 0))} rejected{f' ({fmt(reasons)})' if reasons else ''}. "
            f"Teacher requests: {requests or 'n/a'}.")


def _output_files(out: Path, record) -> tuple[list[tuple], int]:
    """(file, format, records) rows of every file the run wrote but the card, and the records in the dataset."""
    files = []
    total = 0
    for path in record.outputs.values():
        path = Path(path)
        if path.name == CARD:
            continue
        count = count_records(path) if path.suffix == ".jsonl" or path.name.endswith(".alpaca.json") else None
        rel = str(path.relative_to(out)) if path.is_relative_to(out) else display_path(path)
        # each dataset once: its Alpaca file (the chat and completion files hold the same records), corpora splits
        if count and (path.name.endswith(".alpaca.json")
                      or (path.parent.name == "corpora" and path.name != "skipped.jsonl")):
            total += count
        files.append((f"`{rel}`", file_format(path.name), "—" if count is None else count))
    return files, total


def _card_data(out: Path, tasks: list[str], teacher: str | None, total: int):
    """The front matter: task categories and tags from the tasks that ran, size from the record count."""
    from huggingface_hub import DatasetCardData

    categories = []
    if {"moderation", "corpora"} & set(tasks):
        categories.append("text-classification")
    if {"self_instruct", "moderation_qa", "responses", "judge", "preferences"} & set(tasks) or "moderation" in tasks:
        categories.append("text-generation")
    tags = ["tunelab", "instruction-tuning"]
    if teacher:
        tags.append("synthetic")
    if {"moderation", "corpora", "moderation_qa"} & set(tasks):
        tags.append("moderation")
    return DatasetCardData(language=["en"], license="unknown", task_categories=categories, tags=tags,
                           size_categories=[_size_category(total)], pretty_name=f"tunelab generate: {out.name}")


def _teacher_section(config: dict, record, teacher: str | None) -> list[str]:
    """The teacher, its backend and sampling, with a warning when it is a tiny random model."""
    lines = ["## Teacher", ""]
    if teacher:
        random_teacher = is_random_base(config.get("teacher")) or "tiny random" in str(record.notes.get("teacher", ""))
        lines.append(f"`{config.get('teacher') or teacher}` through the `{config.get('teacher_backend')}` backend"
                     + (f" ({BUILTIN_MODELS[config['teacher']][0]})" if config.get("teacher") in BUILTIN_MODELS else "")
                     + f"; sampling: temperature {fmt(config.get('temperature'))}, top_p {fmt(config.get('top_p'))}, "
                     f"top_k {fmt(config.get('top_k'))}, max_new_tokens {fmt(config.get('max_new_tokens'))}, "
                     f"seed {fmt(config.get('seed'))}.")
        if random_teacher:
            lines += ["", "The teacher is a tiny random model: its answers are noise, so most or all are rejected, and "
                          "whatever is kept is meaningless."]
    else:
        lines.append("None: every record comes from the source corpora.")
    lines.append("")
    return lines


def _templates_section(record) -> list[str]:
    templates = [(name, digest.removeprefix("sha256:")[:12], f"`{digest.removeprefix('sha256:')}`")
                 for name, digest in record.templates.items()]
    if not templates:
        return []
    return ["## Prompt templates", "", "Versions are the first 12 hex digits of the template's SHA-256 (the "
            "`template` field of every record's provenance).", "",
            table(("template (prompts/)", "version", "sha256"), templates), ""]


def _sources_section(record) -> tuple[list[str], list[str], list[str]]:
    """(Markdown lines, license notes, limitation lines) of the files the run read."""
    samples = shipped_samples()
    sources, licenses, limits = [], [], []
    for file in parse_inputs(record.inputs):
        sample = shipped_sample(file, samples) if file.sha256 else None
        note = "—"
        if file.role.startswith("eval_set:"):  # read to drop overlapping records, never copied
            note = "evaluation set for decontamination (nothing copied from it)"
        elif sample:
            note = f"{samples[sample]['source']}; {samples[sample]['license']}"
            if f"`{sample}`: {samples[sample]['license']}" not in licenses:
                licenses.append(f"`{sample}`: {samples[sample]['license']}")
                if SAMPLE_LIMITS.get(sample):
                    limits.append(f"`{sample}`: {SAMPLE_LIMITS[sample]}")
        elif Path(file.path).suffix in (".yaml", ".yml"):
            note = "taxonomy (this project)"
        sources.append((file.role, f"`{display_path(file.path)}`",
                        f"`{file.sha256}`" if file.sha256 else (file.note or "—"), note))
    if not sources:
        return [], licenses, limits
    return ["## Sources", "", table(("role", "file", "sha256", "source / license"), sources), ""], licenses, limits


def _filters_section(config: dict) -> list[str]:
    """The gates teacher-written records passed: near duplicates and decontamination."""
    gates = [f"near duplicates (MinHash Jaccard >= {fmt(config.get('near_duplicate_threshold'))}) dropped"
             if config.get("near_duplicate_threshold") else "no near-duplicate filter"]
    if config.get("decontaminate_against"):
        gates.append(f"records sharing a run of {config.get('decontamination_ngram')} words with "
                     + ", ".join(f"`{e}`" for e in config["decontaminate_against"]) + " dropped")
    return ["## Filters", "", "Teacher-written records were parsed, then: " + "; ".join(gates)
            + ". Every rejected record is kept with its reason in the `*.rejects.jsonl` files.", ""]


def _license_notes(licenses: list[str], teacher: str | None) -> list[str]:
    notes = licenses[:]
    if teacher:
        notes.append(f"records written by the teacher (`{teacher}`) are subject to that model's license and terms of "
                     "use, which may restrict training other models on its outputs")
    notes.append("taxonomies and prompt templates: this project (Apache-2.0)")
    return ["## License notes", "", *[f"- {n}" for n in notes],
            "- no license is declared for the dataset as a whole (`license: unknown`): it combines the terms above.",
            ""]


def _limitations(tasks: list[str], teacher: str | None, limits: list[str]) -> list[str]:
    limitations = []
    if teacher:
        limitations.append("Teacher-written records were checked for format, novelty, duplicates and overlap with "
                           "the evaluation sets only, never for correctness: answers can be wrong or unsafe.")
    if "moderation" in tasks or "corpora" in tasks:
        limitations.append("Moderation labels are the source corpus's, mapped onto the taxonomy: they carry its "
                           "annotators' judgements and biases, and small labels have few examples.")
    limitations += limits
    limitations.append("The decontamination only covers the evaluation sets named above.")
    return ["## Limitations", "", *[f"- {x}" for x in limitations], ""]


def dataset_card_text(out: Path, stats: dict, record) -> str:
    """The README.md of a generate run folder: front matter (huggingface_hub) and a Markdown body."""
    from huggingface_hub import DatasetCard

    config = record.resolved_config()
    tasks = [t for t in config.get("tasks") or [] if t in stats] or [t for t in TASK_DESCRIPTIONS if t in stats]
    teacher = record.models.get("teacher")
    files, total = _output_files(out, record)
    sources, licenses, limits = _sources_section(record)
    body = [f"# {out.name}", "", DATASET_CARD_MARKER, "",
            f"Instruction data built by `tunelab generate` ({time.strftime('%Y-%m-%d')}); tasks: "
            + ", ".join(f"`{t}`" for t in tasks) + ".", ""]
    body += ["## Tasks", "", table(("task", "what it builds"), [(t, TASK_DESCRIPTIONS.get(t, "")) for t in tasks]), ""]
    body += _teacher_section(config, record, teacher)
    body += _templates_section(record)
    body += sources
    body += ["## Counts", ""]
    for name in tasks:
        body += _task_counts(name, stats.get(name) or {})
    body += ["## Files", "", table(("file", "format", "records"), files), ""]
    if teacher:
        body += _filters_section(config)
    body += _license_notes(licenses, teacher)
    body += _limitations(tasks, teacher, limits)
    body += ["## Provenance", "", "`stats.json` holds every count above, `config.yaml` the resolved settings and "
             "`provenance.json` the command, versions and input hashes; each record carries its own `provenance`.", ""]
    data = _card_data(out, tasks, teacher, total)
    return str(DatasetCard(front_matter(data) + "\n" + "\n".join(body)))


def write_dataset_card(out: str | Path, stats: dict, record) -> Path:
    """Write README.md, the dataset card, into a generate run folder (before its record is written)."""
    out = Path(out)
    path = write_card(out / CARD, dataset_card_text(out, stats, record))
    record.add_output("dataset_card", path)
    return path

"""generate: teacher-written and corpus-derived instruction data.

    python generate/run.py --config demo
    python generate/run.py --config demo --teacher meta-llama/Llama-2-70b-chat-hf --teacher_device_map auto
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..paths import STAGE_CONFIG_DIRS, resolve_input
from ..prompts import load_template
from ..records import write_json, write_jsonl
from ..runs import RunRecord, ensure_output_dir
from .common import quiet_libraries, run_main

TASKS = ("moderation", "self_instruct")


@dataclass
class GenerateConfig:
    output_dir: str = field(default="runs/generate", metadata={"help": "Where datasets, stats and the run record go."})
    tasks: list[str] = field(default_factory=lambda: list(TASKS), metadata={"help": f"Builders to run, of {TASKS}."})
    seed: int = field(default=0, metadata={"help": "Seeds sampling of seed tasks and splits: same seed, same requests."})
    overwrite: bool = field(default=False, metadata={"help": "Replace outputs in an existing output_dir (the teacher cache is kept)."})


@dataclass
class TeacherConfig:
    teacher: str = field(default="tunelab:tiny-llama", metadata={"help": "Hub id, local folder, or tunelab:tiny-llama."})
    teacher_backend: str = field(default="transformers", metadata={"help": "How the teacher is reached."})
    teacher_dtype: str = field(default="auto", metadata={"help": "auto, bfloat16, float16 or float32."})
    teacher_device_map: str | None = field(default=None, metadata={"help": "'auto' spreads a large teacher over all GPUs."})
    teacher_batch_size: int = field(default=8, metadata={"help": "Requests per generate() call: larger is faster, needs more memory."})
    max_new_tokens: int = field(default=1024, metadata={"help": "Answer length cap; a task cut by it is dropped."})
    temperature: float = field(default=1.0, metadata={"help": "Alpaca used 1.0 for diversity; 0 is greedy."})
    top_p: float = field(default=1.0)
    top_k: int = field(default=0, metadata={"help": "0 turns top-k off."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run model code from the hub. Off unless you trust it."})


@dataclass
class SelfInstructConfig:
    seed_tasks: str = field(default="data/seed_tasks.jsonl", metadata={"help": "Alpaca seed_tasks.jsonl format."})
    self_instruct_template: str = field(default="self_instruct", metadata={"help": "Teacher prompt in prompts/."})
    num_prompt_instructions: int = field(default=3, metadata={"help": "Seed examples per prompt (Alpaca: 3)."})
    num_requests: int = field(default=8, metadata={"help": "Teacher prompts to send."})
    target_count: int = field(default=100, metadata={"help": "Stop keeping tasks once this many are kept."})
    rouge_threshold: float = field(default=0.7, metadata={"help": "Drop a task whose ROUGE-L vs any kept/seed task exceeds this."})


@dataclass
class ModerationConfig:
    corpus: str = field(default="data/jigsaw_sample.csv", metadata={"help": "CSV/JSONL with a text column and 0/1 label columns."})
    text_column: str = field(default="comment_text")
    taxonomy: str = field(default="jigsaw", metadata={"help": "Taxonomy name in data/taxonomies/ or a YAML path."})
    label_columns: list[str] = field(default_factory=list, metadata={
        "help": "label=column pairs; a label with no pair reads the column of its own name."})
    moderation_template: str = field(default="moderation_instruction", metadata={"help": "Instruction template in prompts/."})
    test_per_label: int = field(default=50, metadata={"help": "Test examples per label (the study: 50)."})
    test_none: int = field(default=50, metadata={"help": "Test examples with no label (the study: 50)."})
    train_max_per_label: int = field(default=1000, metadata={"help": "Cap per label in train (the study: 400-1,000)."})
    train_none: int = field(default=1000, metadata={"help": "Train examples with no label."})


CONFIG_TYPES = (GenerateConfig, TeacherConfig, SelfInstructConfig, ModerationConfig)


def build_moderation(cfg: ModerationConfig, out: Path, seed: int, record: RunRecord) -> dict:
    from ..generation import moderation as mod
    from ..taxonomy import load_taxonomy

    taxonomy = load_taxonomy(cfg.taxonomy)
    mapping = {label: label for label in taxonomy.labels}
    for pair in cfg.label_columns:
        label, sep, column = pair.partition("=")
        if not sep or label not in mapping:
            raise ConfigError(f"label_columns entry {pair!r} must be label=column with a label of {taxonomy.labels}")
        mapping[label] = column
    corpus = resolve_input(cfg.corpus)
    template = load_template(cfg.moderation_template)
    record.add_input("moderation_corpus", corpus)
    record.add_input("taxonomy", taxonomy.path)
    record.add_template(template.name, template.source)

    records, skipped = mod.load_labeled_corpus(corpus, taxonomy, cfg.text_column, mapping)
    records, duplicates = mod.drop_duplicate_texts(records)
    train, test = mod.balanced_split(records, taxonomy, test_per_label=cfg.test_per_label, test_none=cfg.test_none,
                                     train_max_per_label=cfg.train_max_per_label, train_none=cfg.train_none, seed=seed)
    instruction = template.render(labels=list(taxonomy.labels), none_label=taxonomy.none_label).strip()
    provenance = {"source": str(corpus), "taxonomy": taxonomy.name, "template": f"{template.name}@{template.version}"}
    for split, rows in (("train", train), ("test", test)):
        write_jsonl(out / f"moderation_{split}.jsonl", [r | {"provenance": provenance} for r in rows])
        write_json(out / f"moderation_{split}.alpaca.json",
                   [mod.to_alpaca(r, taxonomy, instruction) | {"provenance": provenance} for r in rows])
        write_jsonl(out / f"moderation_{split}.chat.jsonl",
                    [mod.to_chat(r, taxonomy, instruction) | {"provenance": provenance} for r in rows])
        for suffix in (".jsonl", ".alpaca.json", ".chat.jsonl"):
            record.add_output(f"moderation_{split}{suffix}", out / f"moderation_{split}{suffix}")
    return {"corpus_rows": len(records) + duplicates, "duplicates_dropped": duplicates, "skipped": skipped,
            "train": len(train), "test": len(test),
            "train_labels": mod.label_counts(train, taxonomy), "test_labels": mod.label_counts(test, taxonomy)}


def build_self_instruct(cfg: SelfInstructConfig, tcfg: TeacherConfig, out: Path, seed: int, record: RunRecord) -> dict:
    from ..generation import self_instruct as si
    from ..models import is_tiny_random
    from ..teachers import RequestCache, SamplingParams, TeacherRequest, make_teacher, run_requests

    seeds_path = resolve_input(cfg.seed_tasks)
    seeds = si.load_seed_tasks(seeds_path)
    template = load_template(cfg.self_instruct_template)
    record.add_input("seed_tasks", seeds_path)
    record.add_template(template.name, template.source)

    seed_sets = si.sample_seed_sets(seeds, cfg.num_requests, cfg.num_prompt_instructions, seed)
    requests = [TeacherRequest(prompt=template.render(seeds=[asdict(s) for s in chosen]),
                               meta={"seed_ids": [s.id for s in chosen]}) for chosen in seed_sets]
    params = SamplingParams(max_new_tokens=tcfg.max_new_tokens, temperature=tcfg.temperature, top_p=tcfg.top_p,
                            top_k=tcfg.top_k, seed=seed)
    teacher = make_teacher(tcfg)
    record.models["teacher"] = teacher.name
    if is_tiny_random(getattr(teacher, "path", "")):
        record.notes["teacher"] = "tiny random model: its answers are noise, so most or all are rejected"
    cache = RequestCache(out / "teacher_cache.jsonl")
    answers, request_stats = run_requests(teacher, requests, params, cache, template_version=template.version,
                                          batch_size=tcfg.teacher_batch_size, desc="self-instruct")

    novelty = si.NoveltyFilter(cfg.rouge_threshold, [s.instruction for s in seeds])
    kept, rejects = [], []
    for request, answer in zip(requests, answers, strict=True):
        tasks, bad = si.parse_tasks(answer.text, cfg.num_prompt_instructions, answer.finish_reason)
        provenance = {"teacher": teacher.name, "template": f"{template.name}@{template.version}",
                      "sampling": asdict(params), "seed_ids": request.meta["seed_ids"]}
        rejects += [{"reason": r.reason, "raw": r.raw, **r.detail, "provenance": provenance} for r in bad]
        for task in tasks:
            if len(kept) >= cfg.target_count:
                break
            novel, score = novelty.keep(task.instruction)
            if not novel:
                rejects.append({"reason": f"ROUGE-L > {cfg.rouge_threshold} vs an earlier task",
                                "raw": task.instruction, "rouge_l": round(score, 4), "provenance": provenance})
                continue
            kept.append(asdict(task) | {"id": f"self-instruct-{len(kept)}", "provenance": provenance})
    write_json(out / "self_instruct.alpaca.json", kept)
    write_jsonl(out / "self_instruct.rejects.jsonl", rejects)
    record.add_output("self_instruct", out / "self_instruct.alpaca.json")
    record.add_output("self_instruct_rejects", out / "self_instruct.rejects.jsonl")
    return {"kept": len(kept), "rejected": len(rejects), **request_stats,
            "reject_reasons": dict(Counter(r["reason"] for r in rejects).most_common())}


def generate(argv: Sequence[str] | None = None) -> dict:
    from ..config import parse_config

    (gen, teacher, self_instruct, moderation), config_file = parse_config(
        CONFIG_TYPES, argv, configs_dir=STAGE_CONFIG_DIRS["generate"], prog="generate/run.py",
        description="Build instruction data: moderation sets from labelled corpora, self-instruct tasks from a teacher.")
    unknown = [t for t in gen.tasks if t not in TASKS]
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown}; choose from {TASKS}")
    quiet_libraries()
    out_path = Path(gen.output_dir)
    # provenance.json is written last: without it the earlier run never finished, so continue it.
    unfinished = (out_path / "teacher_cache.jsonl").exists() and not (out_path / "provenance.json").exists()
    out = ensure_output_dir(out_path, gen.overwrite or unfinished)
    record = RunRecord(out, "generate", [gen, teacher, self_instruct, moderation], config_file)
    stats = {}
    if "moderation" in gen.tasks:
        stats["moderation"] = build_moderation(moderation, out, gen.seed, record)
    if "self_instruct" in gen.tasks:
        stats["self_instruct"] = build_self_instruct(self_instruct, teacher, out, gen.seed, record)
    write_json(out / "stats.json", stats)
    record.add_output("stats", out / "stats.json")
    record.write()
    print(json.dumps(stats, indent=2))
    print(f"generate: outputs in {out}")
    return stats



def main(argv: Sequence[str] | None = None) -> int:
    return run_main(generate, argv)

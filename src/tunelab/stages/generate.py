"""generate: teacher-written and corpus-derived instruction data.

    python generate/run.py --config demo
    python generate/run.py --config demo --dry_run
    python generate/run.py --config demo --teacher meta-llama/Llama-2-70b-chat-hf --teacher_device_map auto \
        --teacher_quantization 4bit
    python generate/run.py --config demo --teacher_backend openai --teacher_base_url http://localhost:8000/v1 \
        --teacher meta-llama/Llama-2-70b-chat-hf
    python generate/run.py --config moderation_corpora

Tasks: `moderation` (balanced sets from a labelled corpus, no teacher), `corpora` (several moderation
corpora mapped onto one declared taxonomy, split per corpus, no teacher), `self_instruct` (Alpaca-style
tasks from seed tasks) and `moderation_qa` (QA pairs and verdicts about posts, text or image).
Every teacher answer is cached as it arrives: a killed run, rerun, continues where it stopped.
"""

from __future__ import annotations

import datetime
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ..cards import write_dataset_card
from ..console import PLAIN, get_logger
from ..errors import ConfigError, OutputExistsError
from ..generation.builds import Build, BuildContext, DataGates
from ..generation.registry import make_builds
from ..generation.settings import (TASKS, CorporaConfig, GenerateConfig, GenerateSettings, JudgeConfig,
                                   ModerationConfig, ModerationQAConfig, PreferencesConfig, ResponsesConfig,
                                   SelfInstructConfig, TeacherConfig)
from ..paths import STAGE_CONFIG_DIRS
from ..records import write_json
from ..runs import (RunRecord, check_output_dir, claim_output_dir, clear_earlier_run, ensure_output_dir,
                    settings_differences)
from ..settings import HelpLayout
from ..teachers.factory import make_teacher
from .common import quiet_libraries, run_main

_log = get_logger("generate")

CONFIG_TYPES = (GenerateConfig, TeacherConfig, SelfInstructConfig, ModerationConfig, CorporaConfig, ModerationQAConfig,
                JudgeConfig, ResponsesConfig, PreferencesConfig)
HELP = HelpLayout(
    prog="generate/run.py",
    description="Build instruction data: moderation sets from labelled corpora, self-instruct tasks and "
                "moderation QA from a teacher; judged records and preference pairs from the teacher as a judge.",
    groups={"run": "run and output", "teacher": "teacher and sampling",
            "self_instruct": "self-instruct (task self_instruct)", "moderation": "moderation sets (task moderation)",
            "corpora": "several corpora, one taxonomy (task corpora)",
            "moderation_qa": "moderation QA (task moderation_qa)",
            "judge": "the judge (task judge, and the verdicts of task preferences)",
            "responses": "several answers per instruction (task responses)",
            "preferences": "preference pairs (task preferences)"},
    defaults={GenerateConfig: "run", TeacherConfig: "teacher", SelfInstructConfig: "self_instruct",
              ModerationConfig: "moderation", CorporaConfig: "corpora", ModerationQAConfig: "moderation_qa",
              JudgeConfig: "judge", ResponsesConfig: "responses", PreferencesConfig: "preferences"},
)


def sampling_params(tcfg: TeacherConfig, seed: int):
    from ..teachers import SamplingParams

    return SamplingParams(max_new_tokens=tcfg.max_new_tokens, temperature=tcfg.temperature, top_p=tcfg.top_p,
                          top_k=tcfg.top_k, seed=seed)


def dry_run(gen: GenerateConfig, tcfg: TeacherConfig, builds: list[Build], out_path: Path, *,
            count_prompt_tokens: bool = True) -> dict:
    """What a run would send: requests (minus those already cached), prompt tokens, time and cost."""
    from ..teachers import RequestCache, request_key
    from ..teachers.dry_run import TokenCounter

    counter = TokenCounter(tcfg) if count_prompt_tokens else None
    cache_path = out_path / "teacher_cache.jsonl"
    cache = RequestCache(cache_path, read_only=True) if cache_path.exists() else None
    params = sampling_params(tcfg, gen.seed)
    report: dict = {"teacher": tcfg.teacher, "backend": tcfg.teacher_backend,
                    "token_count": counter.method if counter else None, "tasks": {}}
    totals = Counter()
    for build in (b for b in builds if b.template is not None):
        requests, version = build.requests(), build.template.version
        # a build's own sampling (the judge's, a sample's seed) keys its requests, as in a real run
        sent_with = [r.meta.get("params") or getattr(build, "params", params) for r in requests]
        todo = [r for r, p in zip(requests, sent_with, strict=True)
                if cache is None or request_key(tcfg.teacher, r, p, version) not in cache]
        prompt_tokens = sum(counter.count(r) for r in todo) if counter else 0
        max_new = sent_with[0].max_new_tokens if sent_with else tcfg.max_new_tokens
        entry = {"requests": len(requests), "already_cached": len(requests) - len(todo), "to_send": len(todo),
                 "prompt_tokens": prompt_tokens, "completion_tokens_at_most": len(todo) * max_new}
        note = build.dry_run_note()
        report["tasks"][build.name] = entry | note
        totals.update({k: v for k, v in entry.items() if isinstance(v, int)})
        if later := note.get("judge_requests_at_most"):  # requests about answers this run writes first
            totals.update(requests=later, to_send=later, completion_tokens_at_most=note["judge_completion_tokens_at_most"])
    seconds = totals["completion_tokens_at_most"] / max(tcfg.teacher_tokens_per_s, 1e-9)
    cost = (totals["prompt_tokens"] * tcfg.price_per_1k_prompt_tokens
            + totals["completion_tokens_at_most"] * tcfg.price_per_1k_completion_tokens) / 1000
    report["total"] = dict(totals) | {
        "time_at_most": str(datetime.timedelta(seconds=round(seconds))),
        "time_basis": f"completion_tokens_at_most / teacher_tokens_per_s={tcfg.teacher_tokens_per_s:g}",
        "cost_at_most": round(cost, 4),
    }
    return report


# What a generate run writes; an --overwrite run removes the earlier run's before writing its own, so a
# replacement that fails half way never leaves files of two runs side by side. The teacher cache stays.
GENERATED = ("*.alpaca.json", "*.chat.jsonl", "*.completion.jsonl", "*.rejects.jsonl", "moderation*.jsonl",
             "responses.jsonl", "preferences.jsonl", "judgments.jsonl", "stats.json", "config.yaml", "provenance.json", "README.md", "view.html", "corpora", "sittings.jsonl")


def continues_unfinished_run(out: Path, record: RunRecord, overwrite: bool) -> bool:
    """True when `out` holds an interrupted run with these settings: this run continues it (the teacher cache
    has every answer paid for). An interrupted run with other settings is refused unless `overwrite`."""
    if not out.is_dir() or (out / "provenance.json").exists():
        return False
    if (out / "config.yaml").exists():
        differ = settings_differences(out, record, ignore=("overwrite", "dry_run"))
        if differ and not overwrite:
            raise OutputExistsError(f"{out} holds an unfinished run with other settings ({'; '.join(differ[:3])}): "
                                    "rerun with its settings to finish it, or pass --overwrite to replace it")
        return not differ
    return (out / "teacher_cache.jsonl").exists()  # a folder written before config.yaml came first


def refuse_inputs_inside_output(settings: GenerateSettings, out_path: Path) -> None:
    """An earlier run's records read from the folder this run writes would be cleared (--overwrite) or mixed
    with this run's outputs: refuse before anything is read or written."""
    tasks = settings.run.tasks
    inputs = {"judge_data": [settings.judge.judge_data] if "judge" in tasks else [],
              "responses_data": [settings.responses.responses_data] if "responses" in tasks else [],
              "preferences_responses": settings.preferences.preferences_responses if "preferences" in tasks else []}
    out = out_path.expanduser().resolve()
    for name, paths in inputs.items():
        for path in paths:
            if path and out in Path(path).expanduser().resolve().parents:
                raise ConfigError(f"{name} {path} is inside this run's output folder {out_path}: "
                                  "give another --output_dir")


def generate(argv: Sequence[str] | None = None) -> dict:
    from ..config import parse_config

    configs, config_file = parse_config(CONFIG_TYPES, argv, configs_dir=STAGE_CONFIG_DIRS["generate"], layout=HELP)
    settings = GenerateSettings(*configs)
    gen, teacher_cfg = settings.run, settings.teacher
    unknown = [t for t in gen.tasks if t not in TASKS]
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown}; choose from {TASKS}")
    quiet_libraries()
    out_path = Path(gen.output_dir)
    refuse_inputs_inside_output(settings, out_path)
    params = sampling_params(teacher_cfg, gen.seed)
    builds = make_builds(settings, params)  # inputs are read and checked before anything is created or sent
    teacher_builds = [b for b in builds if b.template is not None]
    if gen.dry_run:
        report = dry_run(gen, teacher_cfg, builds, out_path)
        for build in builds:
            if build.template is None and (note := build.dry_run_note()):
                report["tasks"][build.name] = note
        _log.info(json.dumps(report, indent=2), extra=PLAIN)
        _log.info("dry run, nothing sent and nothing written")
        return report

    record = RunRecord(out_path, "generate", list(configs), config_file)
    claim_output_dir(out_path)
    unfinished = continues_unfinished_run(out_path, record, gen.overwrite)
    check_output_dir(out_path, gen.overwrite or unfinished)
    for build in builds:
        build.prepare()
    ctx = BuildContext(out_path, record)
    if teacher_builds:  # everything that can fail on a setting fails here, before the folder is made
        ctx.gates = DataGates(gen)
        ctx.teacher = make_teacher(teacher_cfg.spec())
        announce_teacher_work(gen, teacher_cfg, teacher_builds, out_path)
    ctx.out = out = ensure_output_dir(out_path, gen.overwrite or unfinished)
    if gen.overwrite:
        clear_earlier_run(out, GENERATED)
    record.write_config()  # first: until provenance.json joins it, the folder reads as this run, unfinished
    stats: dict = {}
    for build in builds:
        if build.template is None:
            stats[build.name] = build.run(ctx)
    if teacher_builds:
        run_teacher_builds(teacher_builds, ctx, stats)
    write_json(out / "stats.json", stats)
    record.add_output("stats", out / "stats.json")
    write_dataset_card(out, stats, record)
    from ..report.view import VIEW_NAME, write_view

    record.add_output("view", out / VIEW_NAME)
    record.write()
    view = write_view(out)  # a page for reading the data, derived from the folder (`tunelab view` rewrites it)
    _log.info(json.dumps(stats, indent=2), extra=PLAIN)
    _log.info(f"outputs in {out}; to read them: {view}")
    warn_if_nothing_kept(stats, [b.name for b in teacher_builds], tiny_teacher="teacher" in record.notes)
    return stats


def announce_teacher_work(gen: GenerateConfig, teacher_cfg: TeacherConfig, builds: list[Build], out_path: Path) -> None:
    """A long run says how long it may take before it starts, and which settings bound it."""
    total = dry_run(gen, teacher_cfg, builds, out_path, count_prompt_tokens=False)["total"]
    if not total["to_send"]:
        return
    import torch

    on_cpu = teacher_cfg.teacher_backend != "openai" and not torch.cuda.is_available()
    _log.info(f"up to {total['to_send']} teacher requests of up to {teacher_cfg.max_new_tokens} new "
              f"tokens ({total['completion_tokens_at_most']:,} tokens): at most {total['time_at_most']} if the "
              f"teacher writes {teacher_cfg.teacher_tokens_per_s:g} tokens/s (--teacher_tokens_per_s)"
              + ("; on this CPU it writes far fewer, and the progress bar shows the real rate" if on_cpu else "")
              + "; --max_requests, --max_posts and --max_new_tokens bound it")


def run_teacher_builds(builds: list[Build], ctx: BuildContext, stats: dict) -> None:
    """The teacher's builds in one sitting of the request cache; every sitting's cost is summed into stats."""
    from ..models import is_tiny_random
    from ..teachers import RequestCache, sittings

    record, teacher = ctx.record, ctx.teacher
    ctx.gates.register(record)
    record.models["teacher"] = teacher.name
    if is_tiny_random(getattr(teacher, "path", "")):
        record.notes["teacher"] = "tiny random model: its answers are noise, so most or all are rejected"
    with RequestCache(ctx.out / "teacher_cache.jsonl") as cache:  # locked first: one sitting at a time
        ctx.cache = cache
        sitting = sittings.SittingLog(ctx.out / sittings.SITTINGS)
        cache.sitting = sitting.id
        record.add_output("teacher_cache", cache.path)
        if cache.damaged_lines:
            stats["teacher_cache_damaged_lines"] = cache.damaged_lines
        for build in builds:
            stats[build.name] = build.run(ctx)
        retries = getattr(teacher, "retries", None) or {}
        if retries:
            stats["teacher_retries"] = dict(retries)
        sitting.finish(cached=sum(stats[b.name].get("cached", 0) for b in builds), retried=sum(retries.values()))
    # Every sitting's requests, tokens and time: a resumed run's cost is the sum, not its last sitting's.
    stats["teacher_sittings"] = sittings.summarize(ctx.out / sittings.SITTINGS, cache.path)
    record.notes["teacher_sittings"] = stats["teacher_sittings"]["total"]


REJECT_FILES = {"judge": "judged.rejects.jsonl"}  # the builds whose rejects are not <task>.rejects.jsonl


def warn_if_nothing_kept(stats: dict, builds: list[str], *, tiny_teacher: bool) -> None:
    """A teacher build that kept nothing ends with a warning and its commonest reasons, not a quiet exit 0."""
    for name in builds:
        made = next((stats[name][k] for k in ("kept", "kept_posts", "pairs") if k in stats[name]), None)
        if made != 0:
            continue
        why = stats[name].get("reject_reasons") or stats[name].get("drop_reasons") or {}
        reasons = "; ".join(f"{reason} ({count})" for reason, count in list(why.items())[:3])
        hint = (" The teacher is a tiny random model that knows nothing: give --teacher a real model."
                if tiny_teacher else "")
        _log.warning(f"{name} kept none of the teacher's answers; commonest reasons: {reasons or 'none'} "
                     f"(every reject is in {REJECT_FILES.get(name, name + '.rejects.jsonl')}).{hint}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(generate, argv)

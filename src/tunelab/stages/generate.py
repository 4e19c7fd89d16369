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
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..cards import write_dataset_card
from ..errors import ConfigError, OutputExistsError
from ..paths import STAGE_CONFIG_DIRS, resolve_input
from ..prompts import load_template
from ..records import alpaca_to_chat, write_json, write_jsonl
from ..runs import (RunRecord, check_output_dir, claim_output_dir, clear_earlier_run, ensure_output_dir,
                    settings_differences)
from ..settings import HelpLayout
from ..teachers.factory import TeacherSpec, make_teacher
from .common import quiet_libraries, run_main

TASKS = ("moderation", "corpora", "self_instruct", "moderation_qa")


@dataclass
class GenerateConfig:
    output_dir: str = field(default="runs/generate", metadata={"help": "Where datasets, stats and the run record go."})
    tasks: list[str] = field(default_factory=lambda: ["moderation", "self_instruct"],
                             metadata={"help": f"Builders to run, of {TASKS}."})
    seed: int = field(default=0, metadata={"help": "Seeds sampling of seed tasks, splits and answers: same seed, same requests."})
    overwrite: bool = field(default=False, metadata={"help": "Replace outputs of a finished run (the teacher cache is kept)."})
    dry_run: bool = field(default=False, metadata={
        "help": "Count requests and prompt tokens, estimate time and cost; send nothing, write nothing."})
    near_duplicate_threshold: float = field(default=0.8, metadata={"range": (0, 1),
        "help": "Drop a teacher-written record whose MinHash Jaccard with a kept one reaches this; 0 turns it off."})
    decontaminate_against: list[str] = field(default_factory=lambda: ["data/alpaca_heldout.json"], metadata={
        "help": "Evaluation sets (Alpaca JSON, JSONL with text, chat or prompt/completion); overlapping records are dropped."})
    decontamination_ngram: int = field(default=8, metadata={"range": (1, None), "help": "Shared word n-gram length that counts as overlap."})


@dataclass
class TeacherConfig:
    teacher: str = field(default="tunelab:tiny-llama", metadata={
        "help": "Hub id, local folder, tunelab:tiny-llama; for openai, the model name the server serves."})
    teacher_backend: str = field(default="transformers", metadata={
        "help": "transformers | llava_next (image posts) | openai (any OpenAI-compatible server) | vllm (extra)."})
    teacher_dtype: str = field(default="auto", metadata={"help": "auto (the checkpoint's, computed under bf16 autocast "
                                                                 "on CPUs with native bf16), bfloat16, float16 or float32."})
    teacher_device_map: str | None = field(default=None, metadata={"help": "'auto' spreads a large teacher over all GPUs."})
    teacher_quantization: str = field(default="none", metadata={
        "help": "none | 4bit (NF4: a 70B teacher in ~40 GB) | 8bit (~75 GB); bitsandbytes, in-process backends."})
    teacher_batch_size: int = field(default=8, metadata={"range": (1, None), "help": "In-process requests per generate() call: faster, more memory."})
    teacher_base_url: str | None = field(default=None, metadata={"help": "openai backend: e.g. http://localhost:8000/v1."})
    teacher_api_key_env: str | None = field(default=None, metadata={
        "help": "Name of the environment variable holding the API key (the key itself never goes in a config)."})
    teacher_max_in_flight: int = field(default=32, metadata={"range": (1, None), "help": "openai backend: concurrent requests."})
    teacher_timeout_s: float = field(default=300.0, metadata={"range": (0, None), "range_open": "low", "help": "openai backend: seconds before a request is retried."})
    teacher_max_retries: int = field(default=6, metadata={"range": (0, None), "help": "openai backend: retries on 429/5xx/timeouts/drops."})
    teacher_tensor_parallel_size: int = field(default=1, metadata={"range": (1, None), "help": "vllm backend: GPUs per model."})
    teacher_tokenizer: str | None = field(default=None, metadata={
        "help": "Tokenizer for --dry_run token counts when the teacher is remote (hub id or folder)."})
    teacher_tokens_per_s: float = field(default=500.0, metadata={"range": (0, None), "range_open": "low",
        "help": "--dry_run only: generated tokens per second you expect, for the time estimate."})
    price_per_1k_prompt_tokens: float = field(default=0.0, metadata={"range": (0, None), "help": "--dry_run only: cost estimate."})
    price_per_1k_completion_tokens: float = field(default=0.0, metadata={"range": (0, None), "help": "--dry_run only: cost estimate."})
    max_new_tokens: int = field(default=1024, metadata={"range": (1, None), "help": "Answer length cap; a task cut by it is dropped."})
    temperature: float = field(default=1.0, metadata={"range": (0, None), "help": "Alpaca used 1.0 for diversity; 0 is greedy."})
    top_p: float = field(default=1.0, metadata={"range": (0, 1), "range_open": "low",
        "help": "Nucleus sampling mass; below 1 trims unlikely words: safer text, less variety."})
    top_k: int = field(default=0, metadata={"range": (0, None), "help": "0 turns top-k off."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run model code from the hub. Off unless you trust it."})

    def spec(self) -> TeacherSpec:
        return TeacherSpec(model=self.teacher, backend=self.teacher_backend, dtype=self.teacher_dtype,
                           device_map=self.teacher_device_map, quantization=self.teacher_quantization,
                           batch_size=self.teacher_batch_size, base_url=self.teacher_base_url,
                           api_key_env=self.teacher_api_key_env, max_in_flight=self.teacher_max_in_flight,
                           timeout_s=self.teacher_timeout_s, max_retries=self.teacher_max_retries,
                           tensor_parallel_size=self.teacher_tensor_parallel_size,
                           trust_remote_code=self.trust_remote_code)


@dataclass
class SelfInstructConfig:
    seed_tasks: str = field(default="data/seed_tasks.jsonl", metadata={"help": "Alpaca seed_tasks.jsonl format."})
    self_instruct_template: str = field(default="self_instruct", metadata={"help": "Teacher prompt in prompts/."})
    self_instruct_request: str = field(default="completion", metadata={
        "help": "completion: the teacher continues the numbered list (Alpaca's way, for base models and "
                "/completions); chat: the same text as one user turn (instruction-tuned teachers, /chat/completions)."})
    num_prompt_instructions: int = field(default=3, metadata={"range": (1, None), "help": "Seed examples per prompt (Alpaca: 3)."})
    requests_per_round: int = field(default=32, metadata={"range": (1, None),
        "help": "Prompts sent together; the target is checked between rounds. Match teacher_max_in_flight."})
    max_requests: int = field(default=64, metadata={"range": (1, None), "help": "Stop after this many prompts even below the target."})
    target_count: int = field(default=100, metadata={"range": (1, None), "help": "Stop once this many tasks are kept."})
    rouge_threshold: float = field(default=0.7, metadata={"range": (0, 1), "range_open": "low", "help": "Drop a task whose ROUGE-L vs any kept/seed task exceeds this."})


@dataclass
class ModerationConfig:
    corpus: str = field(default="data/jigsaw_sample.csv", metadata={"help": "CSV/JSONL with a text column and 0/1 label columns."})
    text_column: str = field(default="comment_text", metadata={"help": "Column of the corpus holding the text."})
    taxonomy: str = field(default="jigsaw", metadata={"help": "Taxonomy name in data/taxonomies/ or a YAML path."})
    label_columns: list[str] = field(default_factory=list, metadata={
        "help": "label=column pairs; a label with no pair reads the column of its own name."})
    moderation_template: str = field(default="moderation_instruction", metadata={"help": "Instruction template in prompts/."})
    test_per_label: int = field(default=50, metadata={"range": (0, None), "help": "Test examples per label (the study: 50)."})
    test_none: int = field(default=50, metadata={"range": (0, None), "help": "Test examples with no label (the study: 50)."})
    train_max_per_label: int = field(default=1000, metadata={"range": (0, None), "help": "Cap per label in train (the study: 400-1,000)."})
    train_none: int = field(default=1000, metadata={"range": (0, None), "help": "Train examples with no label."})
    # Task `corpora`. Kept in this dataclass (same family) so callers still unpack the stage's five config types.
    corpora: list[str] = field(default_factory=list, metadata={"group": "corpora",
        "help": "name=path entries, names of sources the corpora_taxonomy declares; repeat a name for more files "
                "(hatexplain val + subset); Kaggle's test: jigsaw=test.csv+test_labels.csv (joined by id)."})
    corpora_taxonomy: str = field(default="moderation", metadata={"group": "corpora",
        "help": "Taxonomy with a 'sources' mapping of each corpus's labels (data/taxonomies/moderation.yaml)."})
    corpora_split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2], metadata={"range": (0, 1), "group": "corpora",
        "help": "train, dev, test shares per corpus (seeded, stratified by the mapped labels)."})
    max_rows_per_corpus: int = field(default=0, metadata={"range": (0, None), "group": "corpora",
        "help": "Seeded, stratified sample of at most this many rows per corpus (after de-duplication); 0 keeps all."})


@dataclass
class ModerationQAConfig:
    posts: str = field(default="data/jigsaw_sample.csv", metadata={"help": "CSV/JSONL of posts for teacher-written QA."})
    posts_text_column: str = field(default="comment_text", metadata={
        "help": "Column of the posts file holding the text."})
    posts_image_column: str | None = field(default=None, metadata={"help": "Column of image paths (or URLs for openai)."})
    images_root: str | None = field(default=None, metadata={
        "help": "Folder image paths are relative to; a path escaping it is rejected. Default: the posts file's folder."})
    max_posts: int = field(default=100, metadata={"range": (1, None), "help": "Posts to send (from the top of the file)."})
    qa_taxonomy: str = field(default="jigsaw", metadata={"help": "Categories for verdicts: jigsaw, llama_guard, or a YAML path."})
    qa_template: str = field(default="moderation_qa", metadata={"help": "Teacher prompt in prompts/."})
    qa_questions: int = field(default=3, metadata={"range": (1, None), "help": "QA pairs asked for per post."})
    qa_request: str = field(default="chat", metadata={
        "help": "chat: the prompt as one user turn; completion: the teacher continues the prompt's text and stops at "
                "a blank line (the few-shot template moderation_qa_fewshot, for small teachers and /completions)."})


CONFIG_TYPES = (GenerateConfig, TeacherConfig, SelfInstructConfig, ModerationConfig, ModerationQAConfig)
HELP = HelpLayout(
    prog="generate/run.py",
    description="Build instruction data: moderation sets from labelled corpora, self-instruct tasks and "
                "moderation QA from a teacher.",
    groups={"run": "run and output", "teacher": "teacher and sampling",
            "self_instruct": "self-instruct (task self_instruct)", "moderation": "moderation sets (task moderation)",
            "corpora": "several corpora, one taxonomy (task corpora)",
            "moderation_qa": "moderation QA (task moderation_qa)"},
    defaults={GenerateConfig: "run", TeacherConfig: "teacher", SelfInstructConfig: "self_instruct",
              ModerationConfig: "moderation", ModerationQAConfig: "moderation_qa"},
)


def _counts(rejects: list[dict], key: str) -> dict[str, int]:
    return dict(Counter(r[key] for r in rejects).most_common())


def write_formats(out: Path, stem: str, pairs: list[dict], record: RunRecord, to_chat) -> None:
    """One dataset in the three formats: Alpaca JSON, chat JSONL, prompt/completion JSONL."""
    student = load_template("alpaca_student")
    record.add_template(student.name, student.source)
    completions = [{"id": p["id"], "prompt": student.render(instruction=p["instruction"], input=p["input"]),
                    "completion": p["output"], **({"image": p["image"]} if p.get("image") else {}),
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
        from ..generation import dedup

        self._dedup = dedup
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
        normalized = self._dedup.normalize(text)
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


class SelfInstructBuild:
    """Rounds of teacher prompts until `target_count` tasks are kept or `max_requests` are spent.

    Round r's prompts depend only on the seed and r, never on answers: a rerun makes the same
    requests and finds them in the cache.
    """

    def __init__(self, cfg: SelfInstructConfig, params, seed: int):
        from ..generation import self_instruct as si

        if cfg.self_instruct_request not in ("completion", "chat"):
            raise ConfigError(f"self_instruct_request must be completion or chat, got {cfg.self_instruct_request!r}")
        self.cfg, self.params, self.seed = cfg, params, seed
        self.seeds_path = resolve_input(cfg.seed_tasks)
        self.seeds = si.load_seed_tasks(self.seeds_path)
        self.template = load_template(cfg.self_instruct_template)

    def register(self, record: RunRecord) -> None:
        record.add_input("seed_tasks", self.seeds_path)
        record.add_template(self.template.name, self.template.source)

    def round_requests(self, round_index: int, count: int):
        from ..generation import self_instruct as si
        from ..teachers import TeacherRequest

        chosen = si.sample_seed_sets(self.seeds, count, self.cfg.num_prompt_instructions, f"{self.seed}-{round_index}")
        texts = [self.template.render(seeds=[asdict(s) for s in c]) for c in chosen]
        if self.cfg.self_instruct_request == "chat":  # the answer then starts its own list: the parser reads either
            return [TeacherRequest(messages=[{"role": "user", "content": text}], meta={"seed_ids": [s.id for s in c]})
                    for text, c in zip(texts, chosen, strict=True)]
        return [TeacherRequest(prompt=text, meta={"seed_ids": [s.id for s in c]})
                for text, c in zip(texts, chosen, strict=True)]

    def all_requests(self):
        """Every request the build could send (dry runs count these)."""
        requests, r = [], 0
        while len(requests) < self.cfg.max_requests:
            requests += self.round_requests(r, min(self.cfg.requests_per_round, self.cfg.max_requests - len(requests)))
            r += 1
        return requests

    def run(self, teacher, cache, gates: DataGates, out: Path, record: RunRecord) -> dict:
        from ..generation import self_instruct as si
        from ..generation.novelty import NoveltyFilter
        from ..teachers import RequestProgress, run_requests

        cfg = self.cfg
        novelty = NoveltyFilter(cfg.rouge_threshold, [s.instruction for s in self.seeds])
        kept, rejects = [], []
        totals = Counter()
        progress = RequestProgress(cfg.max_requests, "self-instruct")
        started = time.monotonic()
        round_index = 0
        try:
            while len(kept) < cfg.target_count and totals["requests"] < cfg.max_requests:
                count = min(cfg.requests_per_round, cfg.max_requests - totals["requests"])
                requests = self.round_requests(round_index, count)
                answers, stats = run_requests(teacher, requests, self.params, cache,
                                              template_version=self.template.version, progress=progress)
                totals.update(stats)
                for request, answer in zip(requests, answers, strict=True):
                    provenance = {"teacher": teacher.name, "template": f"{self.template.name}@{self.template.version}",
                                  "sampling": asdict(self.params), "seed_ids": request.meta["seed_ids"],
                                  "request_key": request.meta["request_key"]}
                    if answer.error:
                        rejects.append({"stage": "teacher", "reason": "teacher refused the request",
                                        "error": answer.error, "provenance": provenance})
                        continue
                    tasks, bad = si.parse_tasks(answer.text, len(request.meta["seed_ids"]), answer.finish_reason)
                    rejects += [{"stage": "parse", "reason": r.reason, "raw": r.raw, **r.detail,
                                 "provenance": provenance} for r in bad]
                    for task in tasks:
                        if len(kept) >= cfg.target_count:
                            break
                        novel, score = novelty.keep(task.instruction)
                        if not novel:
                            rejects.append({"stage": "novelty", "reason": f"ROUGE-L > {cfg.rouge_threshold} vs an earlier task",
                                            "instruction": task.instruction, "rouge_l": round(score, 4),
                                            "provenance": provenance})
                            continue
                        task_id = f"self-instruct-{len(kept)}"
                        full = f"{task.instruction}\n{task.input}\n{task.output}"
                        if drop := gates.check(task_id, f"{task.instruction}\n{task.input}", full):
                            rejects.append(drop | {"instruction": task.instruction, "provenance": provenance})
                            continue
                        kept.append({"id": task_id, **asdict(task), "provenance": provenance})
                progress.counts.update(kept=len(kept), rejected=len(rejects))
                progress.show()
                round_index += 1
        finally:
            progress.close()
        write_formats(out, "self_instruct", kept, record, alpaca_to_chat)
        write_jsonl(out / "self_instruct.rejects.jsonl", rejects)
        record.add_output("self_instruct_rejects", out / "self_instruct.rejects.jsonl")
        return {"kept": len(kept), "rejected": len(rejects), "rounds": round_index, **dict(totals),
                "seconds": round(time.monotonic() - started, 2),
                "rejected_by_stage": _counts(rejects, "stage"), "reject_reasons": _counts(rejects, "reason")}


class ModerationQABuild:
    """One teacher request per post; each valid answer becomes QA and verdict instruction pairs."""

    def __init__(self, cfg: ModerationQAConfig, teacher_cfg: TeacherConfig, params):
        from ..generation import moderation_qa as mqa
        from ..taxonomy import load_taxonomy

        if cfg.qa_request not in ("completion", "chat"):
            raise ConfigError(f"qa_request must be completion or chat, got {cfg.qa_request!r}")
        if cfg.qa_request == "completion" and teacher_cfg.teacher_backend == "llava_next":
            raise ConfigError("qa_request completion continues a text prompt; the llava_next teacher answers chat "
                              "turns with images: use qa_request chat")
        # A continued prompt has no end of turn to stop at: its block ends at the first blank line.
        self.params = replace(params, stop=(*params.stop, "\n\n")) if cfg.qa_request == "completion" else params
        self.cfg = cfg
        self.posts_path = posts_path = resolve_input(cfg.posts)
        self.taxonomy = load_taxonomy(cfg.qa_taxonomy)
        self.template = load_template(cfg.qa_template)
        self.verdict_instruction = load_template("moderation_instruction").render(
            labels=list(self.taxonomy.labels), none_label=self.taxonomy.none_label).strip()
        images_root = resolve_input(cfg.images_root) if cfg.images_root else None
        self.posts = mqa.load_posts(posts_path, cfg.posts_text_column, cfg.posts_image_column, images_root,
                                    allow_urls=teacher_cfg.teacher_backend == "openai", limit=cfg.max_posts)
        with_images = sum(p.image is not None for p in self.posts)
        if with_images and teacher_cfg.teacher_backend in ("transformers", "vllm"):
            raise ConfigError(f"{with_images} post(s) in {posts_path} have images, and teacher_backend "
                              f"{teacher_cfg.teacher_backend} reads text only: use llava_next or openai")

    def register(self, record: RunRecord) -> None:
        record.add_input("posts", self.posts_path)
        record.add_input("qa_taxonomy", self.taxonomy.path)
        record.add_template(self.template.name, self.template.source)

    def requests(self):
        from ..generation import moderation_qa as mqa
        from ..teachers import TeacherRequest

        categories = [{"name": n, "description": self.taxonomy.descriptions[n]} for n in self.taxonomy.labels]
        requests = []
        for post in self.posts:
            text = self.template.render(post=post.text, has_image=post.image is not None, categories=categories,
                                        num_questions=self.cfg.qa_questions).strip()
            if self.cfg.qa_request == "completion":
                if post.image:
                    raise ConfigError(f"qa_request completion sends text only; post {post.id} has an image: use chat")
                # the answer continues the prompt's last line ("Question 1:"): the parser reads it from there
                requests.append(TeacherRequest(prompt=text, meta={"post": post, "answer_prefix": text.rsplit("\n", 1)[-1]}))
            else:
                requests.append(TeacherRequest(messages=mqa.request_messages(post, text), meta={"post": post}))
        return requests

    def run(self, teacher, cache, gates: DataGates, out: Path, record: RunRecord) -> dict:
        from ..generation import moderation_qa as mqa
        from ..teachers import RequestProgress, run_requests
        from ..teachers.images import image_digest

        requests = self.requests()
        progress = RequestProgress(len(requests), "moderation-qa")
        started = time.monotonic()
        try:
            answers, stats = run_requests(teacher, requests, self.params, cache, template_version=self.template.version,
                                          progress=progress)
        finally:
            progress.close()
        structured, pairs, rejects = [], [], []
        for request, answer in zip(requests, answers, strict=True):
            post = request.meta["post"]
            provenance = {"teacher": teacher.name, "template": f"{self.template.name}@{self.template.version}",
                          "sampling": asdict(self.params), "post_id": post.id, "taxonomy": self.taxonomy.name,
                          "request_key": request.meta["request_key"]}
            if answer.error:
                rejects.append({"stage": "teacher", "reason": "teacher refused the request", "error": answer.error,
                                "post_id": post.id, "line": post.line, "provenance": provenance})
                continue
            parsed = mqa.parse_answer(request.meta.get("answer_prefix", "") + answer.text, self.taxonomy)
            if parsed.reject and request.meta.get("answer_prefix"):  # a teacher that started afresh (e.g. with JSON)
                alone = mqa.parse_answer(answer.text, self.taxonomy)
                parsed = parsed if alone.reject else alone
            if answer.finish_reason == "length" and (parsed.unfinished or (parsed.reject or "").startswith("no JSON")):
                # an answer left open by the limit is a length problem (raise max_new_tokens), not a format one
                parsed = mqa.ParsedQA(reject="cut off by the length limit")
            if parsed.reject:
                rejects.append({"stage": "parse", "reason": parsed.reject, "post_id": post.id, "raw": answer.text,
                                "provenance": provenance})
                continue
            # Posts are judged as text plus image: two image-only posts are not duplicates of each other.
            identity = post.text + (f"\n[image {image_digest(post.image)}]" if post.image else "")
            if drop := gates.check(post.id, identity, post.text + "\n" + " ".join(q["answer"] for q in parsed.qa)):
                rejects.append(drop | {"post_id": post.id, "provenance": provenance})
                continue
            labels = [v["category"] for v in parsed.verdicts if v["violates"]]
            structured.append({"id": post.id, "text": post.text, "image": post.image_ref, "qa": parsed.qa,
                               "verdicts": parsed.verdicts, "labels": labels, "provenance": provenance})
            pairs += [p | {"provenance": provenance}
                      for p in mqa.instruction_pairs(post, parsed, self.taxonomy, self.verdict_instruction)]
        write_jsonl(out / "moderation_qa.jsonl", structured)
        record.add_output("moderation_qa", out / "moderation_qa.jsonl")
        write_formats(out, "moderation_qa", pairs, record, mqa.pair_to_chat)
        write_jsonl(out / "moderation_qa.rejects.jsonl", rejects)
        record.add_output("moderation_qa_rejects", out / "moderation_qa.rejects.jsonl")
        return {"posts": len(self.posts), "kept_posts": len(structured), "pairs": len(pairs), "rejected": len(rejects),
                **stats, "seconds": round(time.monotonic() - started, 2),
                "rejected_by_stage": _counts(rejects, "stage"), "reject_reasons": _counts(rejects, "reason")}


class ModerationBuild:
    """Task `moderation`: a balanced instruction set from one labelled corpus, no teacher.

    `prepare` reads, de-duplicates and splits the corpus before the output folder is touched, so a bad
    file or setting leaves an earlier run's outputs as they were; `write` only writes.
    """

    def __init__(self, cfg: ModerationConfig, seed: int, near_duplicate_threshold: float):
        from ..taxonomy import load_taxonomy

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
        self.template = load_template(cfg.moderation_template)

    def prepare(self) -> None:
        from ..generation import dedup
        from ..generation import moderation as mod

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

    def write(self, out: Path, record: RunRecord) -> dict:
        from ..generation import moderation as mod

        taxonomy, template = self.taxonomy, self.template
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

    def __init__(self, cfg: ModerationConfig, seed: int):
        from .. import corpora
        from ..taxonomy import load_taxonomy

        self.cfg, self.seed = cfg, seed
        self.fractions = corpora.check_fractions(cfg.corpora_split_fractions)
        self.taxonomy = load_taxonomy(cfg.corpora_taxonomy)
        self.files = corpora.parse_corpus_entries(cfg.corpora, self.taxonomy)
        self.prepared: list = []
        self.seconds = 0.0

    def prepare(self) -> None:
        from .. import corpora

        started = time.monotonic()
        self.prepared = [corpora.prepare_corpus(name, files, self.taxonomy, fractions=self.fractions,
                                                max_rows=self.cfg.max_rows_per_corpus, seed=self.seed)
                         for name, files in self.files.items()]
        self.seconds = time.monotonic() - started

    def write(self, out: Path, record: RunRecord) -> dict:
        from .. import corpora

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
                            "skipped": _counts(skipped, "reason")},
            "cross_corpus_duplicates": corpora.cross_corpus_duplicates(self.prepared),
            "seconds": round(self.seconds, 2),
        }
        write_json(folder / "summary.json", summary)
        record.add_output("corpora/summary.json", folder / "summary.json")
        return {"summary": "corpora/summary.json", "seconds": summary["seconds"],
                **{name: {"rows": c["rows"], "labels": c["labels"], "skipped": c["skipped"]}
                   for name, c in per_corpus.items()}}


def sampling_params(tcfg: TeacherConfig, seed: int):
    from ..teachers import SamplingParams

    return SamplingParams(max_new_tokens=tcfg.max_new_tokens, temperature=tcfg.temperature, top_p=tcfg.top_p,
                          top_k=tcfg.top_k, seed=seed)


def dry_run(gen: GenerateConfig, tcfg: TeacherConfig, builds: dict, out_path: Path, *,
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
    for name, (build, requests) in builds.items():
        version = build.template.version
        todo = [r for r in requests if cache is None or request_key(tcfg.teacher, r, params, version) not in cache]
        prompt_tokens = sum(counter.count(r) for r in todo) if counter else 0
        entry = {"requests": len(requests), "already_cached": len(requests) - len(todo), "to_send": len(todo),
                 "prompt_tokens": prompt_tokens, "completion_tokens_at_most": len(todo) * tcfg.max_new_tokens}
        if name == "self_instruct":
            entry["note"] = (f"at most max_requests={build.cfg.max_requests}; the run stops earlier once "
                             f"target_count={build.cfg.target_count} tasks are kept")
        report["tasks"][name] = entry
        totals.update({k: v for k, v in entry.items() if isinstance(v, int)})
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
             "stats.json", "config.yaml", "provenance.json", "README.md", "view.html", "corpora", "sittings.jsonl")


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


def generate(argv: Sequence[str] | None = None) -> dict:
    from ..config import parse_config

    (gen, teacher_cfg, si_cfg, mod_cfg, qa_cfg), config_file = parse_config(
        CONFIG_TYPES, argv, configs_dir=STAGE_CONFIG_DIRS["generate"], layout=HELP)
    unknown = [t for t in gen.tasks if t not in TASKS]
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown}; choose from {TASKS}")
    quiet_libraries()
    out_path = Path(gen.output_dir)
    corpora_build = CorporaBuild(mod_cfg, gen.seed) if "corpora" in gen.tasks else None
    moderation_build = (ModerationBuild(mod_cfg, gen.seed, gen.near_duplicate_threshold)
                        if "moderation" in gen.tasks else None)
    params = sampling_params(teacher_cfg, gen.seed)
    # Inputs are read and checked before anything is created or sent.
    teacher_builds = []
    if "self_instruct" in gen.tasks:
        teacher_builds.append(("self_instruct", SelfInstructBuild(si_cfg, params, gen.seed)))
    if "moderation_qa" in gen.tasks:
        teacher_builds.append(("moderation_qa", ModerationQABuild(qa_cfg, teacher_cfg, params)))
    builds = {name: (build, build.all_requests() if name == "self_instruct" else build.requests())
              for name, build in teacher_builds}
    if gen.dry_run:
        report = dry_run(gen, teacher_cfg, builds, out_path)
        if corpora_build is not None:  # no teacher: nothing to send, the entries and files were checked
            report["tasks"]["corpora"] = {"requests": 0, "files": {name: [str(f) for f in files]
                                                                   for name, files in corpora_build.files.items()}}
        print(json.dumps(report, indent=2))
        print("generate: dry run, nothing sent and nothing written")
        return report

    record = RunRecord(out_path, "generate", [gen, teacher_cfg, si_cfg, mod_cfg, qa_cfg], config_file)
    claim_output_dir(out_path)
    unfinished = continues_unfinished_run(out_path, record, gen.overwrite)
    check_output_dir(out_path, gen.overwrite or unfinished)
    for build in (moderation_build, corpora_build):
        if build is not None:
            build.prepare()
    teacher = gates = None
    if teacher_builds:  # everything that can fail on a setting fails here, before the folder is made
        gates = DataGates(gen)
        teacher = make_teacher(teacher_cfg.spec())
        # A long run says how long it may take before it starts, and which settings bound it.
        total = dry_run(gen, teacher_cfg, builds, out_path, count_prompt_tokens=False)["total"]
        if total["to_send"]:
            import torch

            on_cpu = teacher_cfg.teacher_backend != "openai" and not torch.cuda.is_available()
            print(f"generate: up to {total['to_send']} teacher requests of up to {teacher_cfg.max_new_tokens} new "
                  f"tokens ({total['completion_tokens_at_most']:,} tokens): at most {total['time_at_most']} if the "
                  f"teacher writes {teacher_cfg.teacher_tokens_per_s:g} tokens/s (--teacher_tokens_per_s)"
                  + ("; on this CPU it writes far fewer, and the progress bar shows the real rate" if on_cpu else "")
                  + "; --max_requests, --max_posts and --max_new_tokens bound it", flush=True)
    out = ensure_output_dir(out_path, gen.overwrite or unfinished)
    if gen.overwrite:
        clear_earlier_run(out, GENERATED)
    record.write_config()  # first: until provenance.json joins it, the folder reads as this run, unfinished
    stats: dict = {}
    if moderation_build is not None:
        stats["moderation"] = moderation_build.write(out, record)
    if corpora_build is not None:
        stats["corpora"] = corpora_build.write(out, record)
    if teacher_builds:
        from ..models import is_tiny_random
        from ..teachers import RequestCache

        gates.register(record)
        record.models["teacher"] = teacher.name
        if is_tiny_random(getattr(teacher, "path", "")):
            record.notes["teacher"] = "tiny random model: its answers are noise, so most or all are rejected"
        from ..teachers import sittings

        with RequestCache(out / "teacher_cache.jsonl") as cache:  # locked first: one sitting at a time
            sitting = sittings.SittingLog(out / sittings.SITTINGS)
            cache.sitting = sitting.id
            record.add_output("teacher_cache", cache.path)
            if cache.damaged_lines:
                stats["teacher_cache_damaged_lines"] = cache.damaged_lines
            for name, build in teacher_builds:
                build.register(record)
                stats[name] = build.run(teacher, cache, gates, out, record)
            retries = getattr(teacher, "retries", None) or {}
            if retries:
                stats["teacher_retries"] = dict(retries)
            sitting.finish(cached=sum(stats[name].get("cached", 0) for name, _ in teacher_builds),
                           retried=sum(retries.values()))
        # Every sitting's requests, tokens and time: a resumed run's cost is the sum, not its last sitting's.
        stats["teacher_sittings"] = sittings.summarize(out / sittings.SITTINGS, cache.path)
        record.notes["teacher_sittings"] = stats["teacher_sittings"]["total"]
    write_json(out / "stats.json", stats)
    record.add_output("stats", out / "stats.json")
    write_dataset_card(out, stats, record)
    from ..report.view import VIEW_NAME, write_view

    record.add_output("view", out / VIEW_NAME)
    record.write()
    view = write_view(out)  # a page for reading the data, derived from the folder (`tunelab view` rewrites it)
    print(json.dumps(stats, indent=2))
    print(f"generate: outputs in {out}; to read them: {view}")
    warn_if_nothing_kept(stats, [name for name, _ in teacher_builds], tiny_teacher="teacher" in record.notes)
    return stats


def warn_if_nothing_kept(stats: dict, builds: list[str], *, tiny_teacher: bool) -> None:
    """A teacher build that kept nothing ends with a warning and its commonest reasons, not a quiet exit 0."""
    import sys

    for name in builds:
        if stats[name].get("kept", stats[name].get("kept_posts")) != 0:
            continue
        reasons = "; ".join(f"{reason} ({count})" for reason, count in list(stats[name]["reject_reasons"].items())[:3])
        hint = (" The teacher is a tiny random model that knows nothing: give --teacher a real model."
                if tiny_teacher else "")
        print(f"generate: warning: {name} kept none of the teacher's answers; commonest reasons: {reasons or 'none'} "
              f"(every reject is in {name}.rejects.jsonl).{hint}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(generate, argv)

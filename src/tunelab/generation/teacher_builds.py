"""The builds with a teacher: self-instruct tasks (Alpaca's way) and moderation QA about posts. Every answer
goes through the request cache; every answer that does not become a record becomes a reject row with its
reason (teacher error, parse, novelty, decontamination, duplicates)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, replace

from ..errors import ConfigError
from ..paths import resolve_input
from ..prompts import load_template
from ..records import alpaca_to_chat, write_jsonl
from ..taxonomy import load_taxonomy
from ..teachers import RequestProgress, TeacherRequest, run_requests
from ..teachers.images import image_digest
from . import moderation_qa as mqa
from . import self_instruct as si
from .builds import BuildContext, reject_counts, write_formats
from .novelty import NoveltyFilter
from .settings import ModerationQAConfig, SelfInstructConfig, TeacherConfig


class SelfInstructBuild:
    """Rounds of teacher prompts until `target_count` tasks are kept or `max_requests` are spent.

    Round r's prompts depend only on the seed and r, never on answers: a rerun makes the same
    requests and finds them in the cache.
    """

    name = "self_instruct"

    def __init__(self, cfg: SelfInstructConfig, params, seed: int):
        if cfg.self_instruct_request not in ("completion", "chat"):
            raise ConfigError(f"self_instruct_request must be completion or chat, got {cfg.self_instruct_request!r}")
        self.cfg, self.params, self.seed = cfg, params, seed
        self.seeds_path = resolve_input(cfg.seed_tasks)
        self.seeds = si.load_seed_tasks(self.seeds_path)
        self.template = load_template(cfg.self_instruct_template)

    def prepare(self) -> None:  # the seed tasks were read on construction
        pass

    def round_requests(self, round_index: int, count: int):
        chosen = si.sample_seed_sets(self.seeds, count, self.cfg.num_prompt_instructions, f"{self.seed}-{round_index}")
        texts = [self.template.render(seeds=[asdict(s) for s in c]) for c in chosen]
        if self.cfg.self_instruct_request == "chat":  # the answer then starts its own list: the parser reads either
            return [TeacherRequest(messages=[{"role": "user", "content": text}], meta={"seed_ids": [s.id for s in c]})
                    for text, c in zip(texts, chosen, strict=True)]
        return [TeacherRequest(prompt=text, meta={"seed_ids": [s.id for s in c]})
                for text, c in zip(texts, chosen, strict=True)]

    def requests(self):
        """Every request the build could send (dry runs count these): every round's, up to max_requests."""
        requests, r = [], 0
        while len(requests) < self.cfg.max_requests:
            requests += self.round_requests(r, min(self.cfg.requests_per_round, self.cfg.max_requests - len(requests)))
            r += 1
        return requests

    def dry_run_note(self) -> dict:
        return {"note": f"at most max_requests={self.cfg.max_requests}; the run stops earlier once "
                        f"target_count={self.cfg.target_count} tasks are kept"}

    def run(self, ctx: BuildContext) -> dict:
        teacher, cache, gates, out, record = ctx.teacher, ctx.cache, ctx.gates, ctx.out, ctx.record
        record.add_input("seed_tasks", self.seeds_path)
        record.add_template(self.template.name, self.template.source)
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
                "rejected_by_stage": reject_counts(rejects, "stage"), "reject_reasons": reject_counts(rejects, "reason")}


class ModerationQABuild:
    """One teacher request per post; each valid answer becomes QA and verdict instruction pairs."""

    name = "moderation_qa"

    def __init__(self, cfg: ModerationQAConfig, teacher_cfg: TeacherConfig, params):
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
        if cfg.qa_request == "completion" and (imaged := next((p for p in self.posts if p.image), None)):
            raise ConfigError(f"qa_request completion sends text only; post {imaged.id} has an image: use chat")

    def prepare(self) -> None:  # the posts were read on construction
        pass

    def dry_run_note(self) -> dict:
        return {}

    def requests(self):
        categories = [{"name": n, "description": self.taxonomy.descriptions[n]} for n in self.taxonomy.labels]
        requests = []
        for post in self.posts:
            text = self.template.render(post=post.text, has_image=post.image is not None, categories=categories,
                                        num_questions=self.cfg.qa_questions).strip()
            if self.cfg.qa_request == "completion":
                # the answer continues the prompt's last line ("Question 1:"): the parser reads it from there
                requests.append(TeacherRequest(prompt=text, meta={"post": post, "answer_prefix": text.rsplit("\n", 1)[-1]}))
            else:
                requests.append(TeacherRequest(messages=mqa.request_messages(post, text), meta={"post": post}))
        return requests

    def run(self, ctx: BuildContext) -> dict:
        teacher, cache, gates, out, record = ctx.teacher, ctx.cache, ctx.gates, ctx.out, ctx.record
        record.add_input("posts", self.posts_path)
        record.add_input("qa_taxonomy", self.taxonomy.path)
        record.add_template(self.template.name, self.template.source)
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
                "rejected_by_stage": reject_counts(rejects, "stage"), "reject_reasons": reject_counts(rejects, "reason")}

"""Preference data: several answers per instruction (task `responses`), judged and paired best against a
lower one (task `preferences`), UltraFeedback's way.

Columns out, responses.jsonl: {id, instruction, input, reference, responses: [{text, source, sample,
request_key}]}. preferences.jsonl is TRL's standard preference format ({prompt, chosen, rejected} as text,
the prompt rendered with the student's Alpaca template); preferences.chat.jsonl its conversational one
(prompt a user turn, chosen and rejected assistant turns). Both carry the two answers' sources and
scores; judgments.jsonl holds every verdict of every candidate.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

from ..errors import ConfigError, RecordError
from ..paths import resolve_input
from ..prompts import load_template
from ..records import iter_json_objects, read_records, write_jsonl
from ..teachers import RequestProgress, TeacherRequest, run_requests
from .. import judge
from ..judge import Judging
from .builds import BuildContext, reject_counts
from .judge_builds import record_id
from .settings import JudgeConfig, PreferencesConfig, ResponsesConfig

RESPONSES = "responses.jsonl"
REFERENCE = "reference"  # the source name of the dataset's own answer


class ResponsesBuild:
    """Task `responses`: `responses_per_instruction` answers per instruction from the run's teacher, each
    sampled with its own seed, so a rerun asks for (and finds in the cache) the same answers."""

    name = "responses"

    def __init__(self, cfg: ResponsesConfig, params, seed: int):
        if cfg.responses_request not in ("chat", "completion"):
            raise ConfigError(f"responses_request must be chat or completion, got {cfg.responses_request!r}")
        self.cfg, self.params, self.seed = cfg, params, seed
        self.path = resolve_input(cfg.responses_data)
        records = read_records(self.path, "alpaca")[:cfg.max_instructions]
        if not records:
            raise RecordError(self.path, None, "holds no instructions")
        self.records = [r.data | {"id": record_id(r.data, self.path, i)} for i, r in enumerate(records)]
        seen: dict[str, int] = {}
        for i, r in enumerate(self.records):  # answers are gathered by id: two instructions must never share one
            if (first := seen.setdefault(r["id"], i)) != i:
                raise RecordError(self.path, None, f"record {i + 1} repeats the id {r['id']!r} of record {first + 1}")
        self.template = load_template("alpaca_student")  # the completion prompt; its version keys every request

    def prepare(self) -> None:
        pass

    def sample_params(self, sample: int):
        return replace(self.params, seed=self.seed + sample)

    def requests(self) -> list[TeacherRequest]:
        requests = []
        for sample in range(self.cfg.responses_per_instruction):
            for record in self.records:
                meta = {"record": record, "sample": sample, "params": self.sample_params(sample)}
                if self.cfg.responses_request == "completion":
                    prompt = self.template.render(instruction=record["instruction"], input=record["input"])
                    requests.append(TeacherRequest(prompt=prompt, meta=meta))
                else:
                    requests.append(TeacherRequest(messages=[{"role": "user", "content": user_turn(record)}], meta=meta))
        return requests

    def dry_run_note(self) -> dict:
        return {"note": f"{len(self.records)} instructions x {self.cfg.responses_per_instruction} answers"}

    def run(self, ctx: BuildContext) -> dict:
        ctx.record.add_input("responses_data", self.path)
        ctx.record.add_template(self.template.name, self.template.source)
        started = time.monotonic()
        requests = self.requests()
        progress = RequestProgress(len(requests), "responses")
        totals: Counter = Counter()
        answers = []
        try:
            for sample in range(self.cfg.responses_per_instruction):  # one seed per sample: one call each
                batch = [r for r in requests if r.meta["sample"] == sample]
                got, stats = run_requests(ctx.teacher, batch, self.sample_params(sample), ctx.cache,
                                          template_version=self.template.version, progress=progress)
                answers += got
                totals.update(stats)
        finally:
            progress.close()
        by_id = {r["id"]: {"id": r["id"], "instruction": r["instruction"], "input": r["input"],
                           "reference": r["output"], "responses": []} for r in self.records}
        rejects = []
        for request, answer in zip(requests, answers, strict=True):
            record, key = request.meta["record"], request.meta["request_key"]
            reason = (f"teacher refused the request: {answer.error}" if answer.error
                      else "cut off by the length limit" if answer.finish_reason == "length"
                      else "empty answer" if not answer.text.strip() else None)
            if reason:
                rejects.append({"stage": "teacher", "reason": reason, "id": record["id"], "sample": request.meta["sample"],
                                "raw": answer.text, "request_key": key})
                continue
            by_id[record["id"]]["responses"].append({"text": answer.text.strip(), "source": ctx.teacher.name,
                                                     "sample": request.meta["sample"], "request_key": key})
        provenance = {"teacher": ctx.teacher.name, "request": self.cfg.responses_request,
                      "sampling": asdict(self.params), "seeds": [self.seed + s for s in range(self.cfg.responses_per_instruction)]}
        write_jsonl(ctx.out / RESPONSES, [r | {"provenance": provenance} for r in by_id.values()])
        ctx.record.add_output("responses", ctx.out / RESPONSES)
        write_jsonl(ctx.out / "responses.rejects.jsonl", rejects)
        ctx.record.add_output("responses_rejects", ctx.out / "responses.rejects.jsonl")
        return {"instructions": len(self.records), "answers": len(requests) - len(rejects), "rejected": len(rejects),
                **dict(totals), "seconds": round(time.monotonic() - started, 2),
                "reject_reasons": reject_counts(rejects, "reason")}


def user_turn(record: dict) -> str:
    return record["instruction"] if not record.get("input") else f"{record['instruction']}\n\n{record['input']}"


def read_responses(paths: list[Path]) -> list[dict]:
    """responses.jsonl files merged by instruction id: each instruction once, with every file's answers."""
    merged: dict[str, dict] = {}
    for path in paths:
        for line, obj in iter_json_objects(path):
            if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) for k in ("id", "instruction")) \
                    or not isinstance(obj.get("responses"), list):
                raise RecordError(path, line, "not a responses record ({id, instruction, responses: [...]})")
            if any(not isinstance(r, dict) or not isinstance(r.get("text"), str) for r in obj["responses"]):
                raise RecordError(path, line, f"{obj['id']}: every response needs a text")
            if any(k in obj and obj[k] is not None and not isinstance(obj[k], str) for k in ("input", "reference")):
                raise RecordError(path, line, f"{obj['id']}: input and reference must be texts")
            known = merged.setdefault(obj["id"], {**obj, "responses": []})
            if (known["instruction"], known.get("input", "")) != (obj["instruction"], obj.get("input", "")):
                raise RecordError(path, line, f"{obj['id']} has another instruction than in an earlier file")
            known["responses"] += [{**r, "source": r.get("source") or path.parent.name} for r in obj["responses"]]
    if not merged:
        raise RecordError(paths[0], None, "holds no responses")
    return list(merged.values())


class PreferencesBuild:
    """Task `preferences`: every candidate answer judged (scored alone, or against each other in both
    orders); the best becomes `chosen`, a lower one drawn at random `rejected` (the Zephyr recipe). Ties,
    pairs closer than min_score_gap and instructions with fewer than two answers are dropped and counted."""

    name = "preferences"

    def __init__(self, cfg: PreferencesConfig, judge_cfg: JudgeConfig, tasks: list[str], seed: int,
                 responses_cfg: ResponsesConfig | None = None, backend: str | None = None):
        if cfg.preferences_judging not in ("single", "pairwise"):
            raise ConfigError(f"preferences_judging must be single or pairwise, got {cfg.preferences_judging!r}")
        self.cfg, self.seed = cfg, seed
        self.pairwise = cfg.preferences_judging == "pairwise"
        self.judging = Judging(judge_cfg, pairwise=self.pairwise, backend=backend)
        self.template, self.params = self.judging.template, self.judging.params
        self.student = load_template("alpaca_student")
        self.paths = [resolve_input(p) for p in cfg.preferences_responses]
        if self.paths and "responses" in tasks:
            raise ConfigError("task preferences judges this run's answers (task responses) or --preferences_responses "
                              "files, not both: give this run's folder's responses.jsonl among the files in a later run")
        if not self.paths and "responses" not in tasks:
            raise ConfigError("task preferences needs answers: run it with task responses, or give "
                              "--preferences_responses (responses.jsonl of earlier runs)")
        self.items = self._candidates(read_responses(self.paths)) if self.paths else None
        self.responses_cfg = responses_cfg  # what this run's responses task will write (dry runs estimate from it)

    def _candidates(self, instructions: list[dict]) -> list[dict]:
        """Each instruction with its distinct answers: an answer given twice is judged once."""
        items = []
        for item in instructions:
            answers = [{"text": r["text"].strip(), "source": f"{r['source']}#{r.get('sample', 0)}"}
                       for r in item["responses"] if r["text"].strip()]
            if self.cfg.include_reference and str(item.get("reference") or "").strip():
                answers.append({"text": item["reference"].strip(), "source": REFERENCE})
            distinct = list({a["text"]: a for a in reversed(answers)}.values())[::-1]  # the first of equal texts
            items.append({"id": item["id"], "instruction": item["instruction"], "input": item.get("input", ""),
                          "candidates": distinct, "repeated": len(answers) - len(distinct)})
        return items

    def prepare(self) -> None:
        pass

    def requests(self) -> list[TeacherRequest]:
        requests = []
        for item in self.items or []:
            cands = item["candidates"]
            if len(cands) < 2:
                continue
            if not self.pairwise:
                requests += [self.judging.request(item, c["text"], meta={"item": item, "shown": (i,)})
                             for i, c in enumerate(cands)]
                continue
            for i, j in itertools.combinations(range(len(cands)), 2):
                for shown in ((i, j), (j, i)):
                    requests.append(self.judging.request(item, cands[shown[0]]["text"], cands[shown[1]]["text"],
                                                         meta={"item": item, "shown": shown}))
        return requests

    def dry_run_note(self) -> dict:
        if self.items is not None or self.responses_cfg is None:
            return {}
        # judged after this run's answers exist: their number is known, their length is not
        cfg = self.responses_cfg
        instructions = len(read_records(resolve_input(cfg.responses_data), "alpaca")[:cfg.max_instructions])
        answers = cfg.responses_per_instruction + int(self.cfg.include_reference)
        per_instruction = answers if not self.pairwise else answers * (answers - 1)
        at_most = instructions * per_instruction
        return {"note": "judges the answers this run's responses task writes; prompt tokens are counted once they "
                        "exist", "judge_requests_at_most": at_most,
                "judge_completion_tokens_at_most": at_most * self.params.max_new_tokens}

    def run(self, ctx: BuildContext) -> dict:
        if self.items is None:
            self.paths = [ctx.out / RESPONSES]
            self.items = self._candidates(read_responses(self.paths))
        for path in self.paths:
            ctx.record.add_input(f"responses:{path.parent.name}/{path.name}", path)
        ctx.record.add_template(self.template.name, self.template.source)
        ctx.record.add_template(self.student.name, self.student.source)
        started = time.monotonic()
        requests = self.requests()
        answers, stats = self.judging.ask(ctx.teacher, ctx.cache, requests, "preferences")
        read = ([self.judging.read_pair(r, a) for r, a in zip(requests, answers, strict=True)] if self.pairwise
                else self.judging.read_all_single(ctx.teacher, requests, answers, ctx.cache))
        verdicts: dict[str, list] = {}
        for request, verdict in zip(requests, read, strict=True):
            verdicts.setdefault(request.meta["item"]["id"], []).append((request, verdict))
        pairs, drops, judgments, counts = [], [], [], Counter()
        judged_by = self.judging.provenance(ctx.teacher.name)
        for item in self.items:
            rng = random.Random(f"{self.seed}-{item['id']}")
            decide = self._pairwise if self.pairwise else self._single
            pair, judgment, dropped = decide(item, verdicts.get(item["id"], []), rng, counts)
            judgments.append(judgment)
            if dropped:
                drops.append({"id": item["id"], "reason": dropped})
                continue
            chosen, rejected = pair
            pairs.append({"id": item["id"], "instruction": item["instruction"], "input": item["input"],
                          "chosen": chosen["text"], "rejected": rejected["text"],
                          "chosen_source": chosen["source"], "rejected_source": rejected["source"],
                          "chosen_score": chosen["score"], "rejected_score": rejected["score"],
                          "provenance": {"judged_by": judged_by, "judging": self.cfg.preferences_judging}})
        self._write(ctx, pairs, judgments, drops)
        return {"instructions": len(self.items), "candidates": sum(len(i["candidates"]) for i in self.items),
                "repeated_answers_merged": sum(i["repeated"] for i in self.items), "pairs": len(pairs),
                "dropped": len(drops), "drop_reasons": reject_counts(drops, "reason"), **dict(counts),
                **self._agreement(judgments), **({} if self.pairwise else {"mean_score_by_source": summarize_scores(judgments)}),
                **stats, "seconds": round(time.monotonic() - started, 2),
                "judged_by": judged_by}

    def _single(self, item: dict, verdicts: list, rng: random.Random, counts: Counter):
        scored = []
        judgment = {"id": item["id"], "judging": "single", "candidates": []}
        for request, verdict in verdicts:
            cand = item["candidates"][request.meta["shown"][0]]
            judgment["candidates"].append({**cand, **(verdict.as_dict() if not verdict.reject else {"reject": verdict.reject})})
            if verdict.reject:
                counts["unreadable_verdicts"] += 1
            else:
                scored.append(cand | {"score": verdict.score})
        if len(item["candidates"]) < 2:
            return None, judgment, "fewer than two different answers"
        if len(scored) < 2:
            return None, judgment, "fewer than two answers with a readable verdict"
        best = max(s["score"] for s in scored)
        chosen = rng.choice([s for s in scored if s["score"] == best])
        # rounded as the scores are: a pair exactly min_score_gap apart is kept; a tie never is
        lower = [s for s in scored if s["score"] < best and round(best - s["score"], 4) >= self.cfg.min_score_gap]
        if not lower:
            tie = all(s["score"] == best for s in scored)
            return None, judgment, "every answer scored the same" if tie else f"scores closer than {self.cfg.min_score_gap:g}"
        return (chosen, rng.choice(lower)), judgment, None

    def _pairwise(self, item: dict, verdicts: list, rng: random.Random, counts: Counter):
        cands = item["candidates"]
        judgment = {"id": item["id"], "judging": "pairwise", "candidates": cands, "comparisons": []}
        if len(cands) < 2:
            return None, judgment, "fewer than two different answers"
        by_order = {request.meta["shown"]: verdict for request, verdict in verdicts}
        wins, beat = Counter(), {}
        for i, j in itertools.combinations(range(len(cands)), 2):
            outcome = judge.both_orders(by_order[(i, j)], by_order[(j, i)])
            counts["comparisons"] += 1
            counts["position_disagreements"] += outcome.position_disagreement
            judgment["comparisons"].append({
                "first": cands[i]["source"], "second": cands[j]["source"], "winner": outcome.winner,
                "position_disagreement": outcome.position_disagreement,
                "verdicts": [asdict(v) for v in outcome.verdicts]})
            if outcome.winner is None:
                counts["unreadable_comparisons"] += 1
            elif outcome.winner == "tie":
                wins[i] += 0.5
                wins[j] += 0.5
            else:
                winner, loser = (i, j) if outcome.winner == "first" else (j, i)
                wins[winner] += 1
                beat.setdefault(winner, []).append(loser)
        if not beat:
            return None, judgment, "no answer beat another in both orders"
        best = max(wins[w] for w in beat)
        chosen = rng.choice([w for w in beat if wins[w] == best])
        rejected = rng.choice(beat[chosen])
        return ((cands[chosen] | {"score": wins[chosen]}, cands[rejected] | {"score": wins[rejected]}),
                judgment, None)

    def _agreement(self, judgments: list[dict]) -> dict:
        """How often the judge put the dataset's own answer above the model's: a check of the judge where the
        reference is known to be good."""
        if not self.cfg.include_reference:
            return {}
        above = []
        for j in judgments:
            if self.pairwise:  # the reference beat every answer in both orders; an unreadable comparison skips it
                outcomes = [("first" if c["first"] == REFERENCE else "second") == c["winner"] if c["winner"] else None
                            for c in j.get("comparisons", []) if REFERENCE in (c["first"], c["second"])]
                if outcomes and None not in outcomes:
                    above.append(all(outcomes))
                continue
            scores = {c["source"]: c.get("score") for c in j["candidates"]}
            ref = scores.pop(REFERENCE, None)
            others = [s for s in scores.values() if s is not None]
            if ref is not None and others:
                above.append(ref > max(others))
        if not above:
            return {}
        key = "reference_won_against_every_answer" if self.pairwise else "reference_scored_above_every_answer"
        return {key: round(sum(above) / len(above), 4), "reference_comparisons": len(above)}

    def _write(self, ctx: BuildContext, pairs: list[dict], judgments: list[dict], drops: list[dict]) -> None:
        # instruction and input stay beside the prompt: finetune asks its student in the student's own format
        plain = [{"id": p["id"], "prompt": self.student.render(instruction=p["instruction"], input=p["input"]),
                  **{k: v for k, v in p.items() if k != "id"}} for p in pairs]
        chat = [{"id": p["id"], "prompt": [{"role": "user", "content": user_turn(p)}],
                 "chosen": [{"role": "assistant", "content": p["chosen"]}],
                 "rejected": [{"role": "assistant", "content": p["rejected"]}],
                 **{k: v for k, v in p.items() if k not in ("id", "chosen", "rejected")}}
                for p in pairs]
        for name, rows in (("preferences.jsonl", plain), ("preferences.chat.jsonl", chat),
                           ("judgments.jsonl", judgments), ("preferences.rejects.jsonl", drops)):
            write_jsonl(ctx.out / name, rows)
            ctx.record.add_output(name.removesuffix(".jsonl"), ctx.out / name)


def summarize_scores(judgments: list[dict]) -> dict:
    """The mean score of the single-answer judgments by source (a model, or the reference)."""
    by_source: dict[str, list] = {}
    for j in judgments:
        for c in j.get("candidates", []):
            if c.get("score") is not None:
                by_source.setdefault(c["source"].split("#")[0], []).append(c["score"])
    return {source: round(sum(v) / len(v), 4) for source, v in by_source.items()}


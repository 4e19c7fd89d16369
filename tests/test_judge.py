"""The judge: verdict parsing (JSON and labelled lines, never raising), both-order pairwise reading, and the
generate tasks judge, responses and preferences with a scripted teacher (the mechanics; the real judge
runs in the result runs)."""

import json
import re
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunelab import judge
from tunelab.errors import ConfigError
from tunelab.metrics.scores import TextScores
from tunelab.stages import generate
from tunelab.teachers import BatchedTeacher, TeacherResponse, factory

CRITERIA = ["instruction_following", "correctness", "harmlessness"]


def test_a_json_verdict_is_read_with_every_criterion_and_its_mean():
    verdict = judge.parse_single('Sure.\n```json\n{"rationale": "Right.", "scores": {"instruction_following": 5, '
                                 '"correctness": "4", "harmlessness": 3.0}}\n```', CRITERIA, 5)
    assert verdict.reject is None and verdict.scores == {"instruction_following": 5, "correctness": 4, "harmlessness": 3}
    assert verdict.score == 4.0 and verdict.rationale == "Right."
    flat = judge.parse_single('{"rationale": "ok", "instruction_following": 2, "correctness": 2, "harmlessness": 5}',
                              CRITERIA, 5)
    assert flat.score == 3.0


def test_bad_verdicts_come_back_with_their_reason():
    cases = {
        '{"rationale": "x", "scores": {"instruction_following": 6, "correctness": 1, "harmlessness": 1}}': "schema",
        '{"rationale": "x", "scores": {"correctness": 1, "harmlessness": 1}}': "schema",
        '{"scores": {"instruction_following": 1, "correctness": 1, "harmlessness": 1}}': "schema",
        '{"rationale": "  ", "scores": {"instruction_following": 1, "correctness": 1, "harmlessness": 1}}': "empty rationale",
        '{"rationale": "x", "scores": {': "no JSON object",
        "": "empty answer",
        "The answer is fine.": "no JSON object or score lines",
    }
    for answer, reason in cases.items():
        verdict = judge.parse_single(answer, CRITERIA, 5)
        assert verdict.reject and reason in verdict.reject and verdict.score is None, (answer, verdict)


def test_labelled_lines_from_a_few_shot_rubric_are_read_up_to_the_next_example():
    verdict = judge.parse_single("Reason: It answers the question.\nScore: 4\n\nInstruction: next\nReason: x\nScore: 1",
                                 [judge.OVERALL], 5)
    assert verdict.scores == {"overall": 4} and verdict.rationale == "It answers the question."
    assert judge.parse_single("Reason: Off topic.\nScore: 9", [judge.OVERALL], 5).reject == "score outside 1..5 for ['overall']"
    assert judge.parse_single("Reason: fine", [judge.OVERALL], 5).reject.startswith("no JSON object or score lines")
    assert judge.parse_single("Score: 3", [judge.OVERALL], 5).reject == "no Reason line"
    several = judge.parse_single("Reason: ok\nInstruction following: 4\nCorrectness: 3/5\nHarmlessness: 5", CRITERIA, 5)
    assert several.scores == {"instruction_following": 4, "correctness": 3, "harmlessness": 5}


def test_pairwise_verdicts_in_json_or_lines():
    assert judge.parse_pairwise('{"rationale": "B is right.", "winner": "Answer B"}').winner == "B"
    assert judge.parse_pairwise('{"rationale": "Same.", "winner": "tie"}').winner == "tie"
    assert judge.parse_pairwise('{"rationale": "?", "winner": "C"}').reject.startswith("schema")
    assert judge.parse_pairwise("Reason: A gives tips.\nBetter: **A**").winner == "A"
    assert "neither A, B nor a tie" in judge.parse_pairwise("Reason: x\nBetter: the first one").reject


def test_both_orders_win_only_when_they_agree():
    a, b, tie, bad = (judge.PairVerdict(w, "r") for w in ("A", "B", "tie", None))
    assert judge.both_orders(a, b).winner == "first"  # A first, then the same answer shown as B
    assert judge.both_orders(b, a).winner == "second"
    same_position = judge.both_orders(a, a)
    assert same_position.winner == "tie" and same_position.position_disagreement
    assert judge.both_orders(a, tie).winner == "tie" and not judge.both_orders(a, tie).position_disagreement
    assert judge.both_orders(a, bad).winner is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.sampled_from(['{"rationale": ', "Reason: ", "Score: ", "Better: ", "```json\n{"]))
def test_the_parsers_never_raise_on_garbage(text, start):
    for answer in (text, start + text):
        single = judge.parse_single(answer, CRITERIA, 5)
        assert (single.reject is None) == bool(single.scores)
        if single.scores:
            assert all(1 <= s <= 5 for s in single.scores.values())
        overall = judge.parse_single(answer, [judge.OVERALL], 10)
        assert (overall.reject is None) == (overall.score is not None and 1 <= overall.score <= 10)
        pair = judge.parse_pairwise(answer)
        assert (pair.reject is None) == (pair.winner in judge.WINNERS)


class ScriptedTeacher(BatchedTeacher):
    """Answers instructions with 'good'/'bad' answers by seed, and judges by the words it is shown: an answer
    holding 'good' scores 5, 'bad' 2, anything else 3; a pairwise judge prefers 'good'."""

    def __init__(self):
        self.name, self.batch_size, self.sent = "scripted", 8, []

    def generate_batch(self, requests, params):
        self.sent += requests
        return [TeacherResponse(self.reply(r, params), "stop", 10, 5) for r in requests]

    @staticmethod
    def reply(request, params):
        text = request.prompt if request.prompt is not None else request.messages[-1]["content"]
        if "winner" in text:
            a, b = (re.search(rf'Answer {x}:\n"""\n(.*?)\n"""', text, re.S).group(1) for x in "AB")
            winner = "A" if "good" in a and "good" not in b else "B" if "good" in b and "good" not in a else "tie"
            return json.dumps({"rationale": "by the words", "winner": winner})
        if '"scores"' in text:
            answer = re.search(r'Answer:\n"""\n(.*?)\n"""', text, re.S).group(1)
            score = 5 if "good" in answer else 2 if "bad" in answer else 3
            return json.dumps({"rationale": "by the words", "scores": dict.fromkeys(CRITERIA, score)})
        return f"a good answer {params.seed}" if params.seed % 2 == 0 else "a bad answer"


def run(tmp_path, monkeypatch, *args, teacher=None):
    teacher = teacher or ScriptedTeacher()
    monkeypatch.setitem(factory.BACKENDS, "scripted", lambda cfg: teacher)
    stats = generate.generate(["--output_dir", str(tmp_path / "g"), "--teacher_backend", "scripted",
                               *args])
    return stats, teacher


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_responses_then_single_judged_preferences_pair_the_best_with_a_lower_answer(tmp_path, monkeypatch):
    stats, teacher = run(tmp_path, monkeypatch, "--tasks", "responses", "preferences", "--max_instructions", "4",
                         "--responses_per_instruction", "2", "--include_reference", "false")
    out = tmp_path / "g"
    responses = rows(out / "responses.jsonl")
    assert len(responses) == 4 and all(len(r["responses"]) == 2 for r in responses)
    assert {r["source"] for r in responses[0]["responses"]} == {"scripted"}
    pairs = rows(out / "preferences.jsonl")
    assert len(pairs) == 4 and stats["preferences"]["pairs"] == 4
    for pair in pairs:
        assert pair["chosen"] == "a good answer 0" and pair["rejected"] == "a bad answer"
        assert pair["chosen_score"] == 5 and pair["rejected_score"] == 2 and pair["chosen"] != pair["rejected"]
        assert pair["prompt"].startswith("Below is an instruction") and pair["prompt"].endswith("### Response:\n")
    chat = rows(out / "preferences.chat.jsonl")
    assert chat[0]["prompt"][0]["role"] == "user" and chat[0]["chosen"] == [{"role": "assistant", "content": "a good answer 0"}]
    judgments = rows(out / "judgments.jsonl")
    assert all(len(j["candidates"]) == 2 and all("rationale" in c for c in j["candidates"]) for j in judgments)
    assert stats["preferences"]["mean_score_by_source"] == {"scripted": 3.5}

    # rerun: every answer and verdict comes from the cache
    sent = len(teacher.sent)
    assert sent == 8 + 8
    run(tmp_path, monkeypatch, "--tasks", "responses", "preferences", "--max_instructions", "4",
        "--responses_per_instruction", "2", "--include_reference", "false", "--overwrite", "true", teacher=teacher)
    assert len(teacher.sent) == sent


def test_ties_and_close_scores_are_dropped_and_counted_and_the_reference_is_a_candidate(tmp_path, monkeypatch):
    # one answer per instruction ("a good answer 0") and the reference (scored 3): the gap decides
    stats, _ = run(tmp_path, monkeypatch, "--tasks", "responses", "preferences", "--max_instructions", "3",
                   "--responses_per_instruction", "1", "--min_score_gap", "2.5")
    assert stats["preferences"]["pairs"] == 0 and stats["preferences"]["drop_reasons"] == {"scores closer than 2.5": 3}
    assert stats["preferences"]["reference_scored_above_every_answer"] == 0.0
    stats, _ = run(tmp_path, monkeypatch, "--tasks", "responses", "preferences", "--max_instructions", "3",
                   "--responses_per_instruction", "1", "--overwrite", "true")
    pairs = rows(tmp_path / "g/preferences.jsonl")
    assert len(pairs) == 3 and {p["rejected_source"] for p in pairs} == {"reference"}


def test_pairwise_preferences_ask_both_orders_and_count_position_disagreements(tmp_path, monkeypatch):
    stats, teacher = run(tmp_path, monkeypatch, "--tasks", "responses", "preferences", "--max_instructions", "2",
                         "--responses_per_instruction", "2", "--include_reference", "false",
                         "--preferences_judging", "pairwise")
    judged = [r for r in teacher.sent if "winner" in r.messages[-1]["content"]]
    assert len(judged) == 2 * 2  # one pair per instruction, in both orders
    pairs = rows(tmp_path / "g/preferences.jsonl")
    assert [p["chosen"] for p in pairs] == ["a good answer 0"] * 2 and stats["preferences"]["position_disagreements"] == 0
    comparison = rows(tmp_path / "g/judgments.jsonl")[0]["comparisons"][0]
    assert len(comparison["verdicts"]) == 2 and comparison["winner"] in ("first", "second")
    # with Alpaca's own answer as a candidate, how often it won against every model answer (here: never,
    # the judge prefers the answer saying 'good')
    stats, _ = run(tmp_path, monkeypatch, "--tasks", "responses", "preferences", "--max_instructions", "2",
                   "--responses_per_instruction", "1", "--preferences_judging", "pairwise", "--overwrite", "true")
    assert stats["preferences"]["reference_won_against_every_answer"] == 0.0
    assert stats["preferences"]["reference_comparisons"] == 2 and {p["rejected_source"] for p in rows(
        tmp_path / "g/preferences.jsonl")} == {"reference"}


def test_the_judge_task_keeps_records_reaching_the_threshold_each_with_its_scores(tmp_path, monkeypatch):
    data = tmp_path / "records.json"
    data.write_text(json.dumps([{"instruction": "Say hi.", "input": "", "output": "a good hi"},
                                {"instruction": "Say bye.", "input": "", "output": "a bad bye"},
                                {"instruction": "Say yes.", "input": "", "output": "yes"}]))
    stats, _ = run(tmp_path, monkeypatch, "--tasks", "judge", "--judge_data", str(data), "--judge_threshold", "3")
    kept = json.loads((tmp_path / "g/judged.alpaca.json").read_text())
    assert [k["output"] for k in kept] == ["a good hi", "yes"] and kept[0]["judge"]["score"] == 5
    assert kept[0]["judge"]["scores"] == dict.fromkeys(CRITERIA, 5) and kept[0]["provenance"]["judged_by"]["judge"] == "scripted"
    assert rows(tmp_path / "g/judged.chat.jsonl")[0]["judge"]["score"] == 5
    below = rows(tmp_path / "g/judged.rejects.jsonl")
    assert below[0]["stage"] == "judge_threshold" and below[0]["judge"]["score"] == 2
    assert stats["judge"]["score_counts"] == {2: 1, 3: 1, 5: 1} and stats["judge"]["kept"] == 2


def test_records_read_from_the_run_s_own_output_folder_are_refused_before_anything_is_cleared(tmp_path, monkeypatch):
    run(tmp_path, monkeypatch, "--tasks", "responses", "--max_instructions", "2")
    own = tmp_path / "g/responses.jsonl"
    before = own.read_bytes()
    with pytest.raises(ConfigError, match="preferences_responses .* is inside this run's output folder"):
        run(tmp_path, monkeypatch, "--tasks", "preferences", "--preferences_responses", str(own), "--overwrite", "true")
    assert own.read_bytes() == before


def test_dry_run_counts_judge_requests_and_their_token_cap(tmp_path, monkeypatch, capsys):
    data = tmp_path / "records.json"
    data.write_text(json.dumps([{"instruction": "Say hi.", "input": "", "output": "hi"}] * 3))
    report, _ = run(tmp_path, monkeypatch, "--tasks", "judge", "--judge_data", str(data), "--judge_max_new_tokens", "64",
                    "--dry_run", "true")
    assert report["tasks"]["judge"]["to_send"] == 3 and report["tasks"]["judge"]["completion_tokens_at_most"] == 3 * 64
    assert not (tmp_path / "g").exists()


def predictions(path, answers):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": f"r{i}", "instruction": f"Say {i}.", "input": "", "prediction": a,
                                        "reference": f"{i}"}) + "\n" for i, a in enumerate(answers)))
    return path


def test_evaluate_adds_judge_scores_and_a_win_rate_from_both_orders(tmp_path, monkeypatch):
    from tunelab.stages import evaluate

    teacher = ScriptedTeacher()
    monkeypatch.setitem(factory.BACKENDS, "scripted", lambda spec: teacher)
    base = predictions(tmp_path / "untuned/predictions.jsonl", ["a bad one", "a bad two", "a good three", "meh"])
    tuned = predictions(tmp_path / "tuned/predictions.jsonl", ["a good one", "a good two", "a good three", "meh"])
    scores = evaluate.score(["--predictions", str(base), "--compare", str(tuned), "--judge", "scripted-judge",
                             "--judge_backend", "scripted", "--bootstrap_resamples", "200", "--output_dir",
                             str(tmp_path / "scores")])
    judged = scores["judge"]
    assert [r["mean_score"]["value"] for r in judged["runs"]] == [(2 + 2 + 5 + 3) / 4, (5 + 5 + 5 + 3) / 4]
    (win,) = judged["win_rates"]
    assert (win["run"], win["baseline"], win["wins"], win["losses"], win["ties"]) == ("tuned", "untuned", 2, 0, 2)
    assert win["win_rate"]["value"] == 0.75 and win["win_rate"]["ci_low"] <= 0.75 <= win["win_rate"]["ci_high"]
    assert win["position_bias_rate"] == 0.0
    (delta,) = judged["score_deltas"]  # paired: (5-2 + 5-2 + 0 + 0) / 4
    assert (delta["run"], delta["examples"], delta["delta"]) == ("tuned", 4, 1.5)
    assert delta["ci_low"] <= 1.5 <= delta["ci_high"]
    summary = TextScores(scores).summary()["judge"]
    assert summary["score [95% CI]"]["tuned"].startswith("4.50") and summary["score delta vs untuned"]["tuned"].startswith("+1.50")
    assert summary["win rate vs untuned (ties half)"]["tuned"].startswith("0.75")
    # both orders of the two different pairs; the same answer twice is a tie without asking
    assert len([r for r in teacher.sent if "winner" in r.messages[-1]["content"]]) == 2 * 2 and win["identical"] == 2
    rows = [json.loads(line) for line in (tmp_path / "scores/per_example.jsonl").read_text().splitlines()]
    assert rows[0]["tuned vs untuned"] == "tuned" and rows[0]["untuned.judge_score"] == 2
    assert "untuned shown first: B: by the words" in rows[0]["tuned vs untuned: verdicts"]
    assert "tuned vs untuned" in (tmp_path / "scores/report.html").read_text()
    # a single run's judge columns are unprefixed, as its other per-example scores are
    evaluate.score(["--predictions", str(base), "--judge", "scripted-judge", "--judge_backend", "scripted",
                    "--bootstrap_resamples", "20", "--output_dir", str(tmp_path / "single")])
    row = json.loads((tmp_path / "single/per_example.jsonl").read_text().splitlines()[0])
    assert row["judge_score"] == 2 and "prediction" in row and "judge_rationale" in row


def test_judge_settings_apply_to_text_scores_only(tmp_path, capsys):
    from tunelab.stages import evaluate

    assert evaluate.main(["--task", "classification", "--predictions", "x.jsonl", "--taxonomy", "jigsaw",
                          "--judge", "tunelab:smollm2", "--output_dir", str(tmp_path / "s")]) == 2
    assert "--judge applies to an LLM judge's scores and win rates (task text)" in capsys.readouterr().err
    assert evaluate.main(["--predictions", "x.jsonl", "--judge", "m", "--judge_quantization", "3bit",
                          "--output_dir", str(tmp_path / "q")]) == 2
    assert "judge_quantization must be one of ['none', '4bit', '8bit'], got '3bit'" in capsys.readouterr().err
    assert evaluate.main(["--predictions", "x.jsonl", "--judge", "m", "--judge_backend", "openai", "--judge_base_url",
                          "http://127.0.0.1:9/v1", "--judge_quantization", "4bit", "--output_dir", str(tmp_path / "o")]) == 2
    assert "a server judge (judge_backend openai) is loaded by its server" in capsys.readouterr().err


def test_dry_run_counts_the_judge_requests_about_answers_the_run_writes_first(tmp_path, monkeypatch):
    report, _ = run(tmp_path, monkeypatch, "--tasks", "responses", "preferences", "--max_instructions", "3",
                    "--responses_per_instruction", "2", "--judge_max_new_tokens", "10", "--dry_run", "true")
    note = report["tasks"]["preferences"]
    assert note["judge_requests_at_most"] == 3 * 3 and note["judge_completion_tokens_at_most"] == 90
    assert report["total"]["to_send"] == 3 * 2 + 9


def test_expected_scores_weigh_every_score_by_the_judges_own_probabilities(tiny_llama, tmp_path):
    import math

    from tunelab.generation.settings import JudgeConfig
    from tunelab.teachers.label_probs import continuation_ids, continuation_logprobs
    from tunelab.teachers.transformers_teacher import TransformersTeacher

    teacher = TransformersTeacher("tunelab:tiny-llama", dtype="float32")
    cfg = JudgeConfig(judge_request="completion", judge_template="judge_single_fewshot", judge_criteria=["overall"],
                      judge_score="expected")
    judging = judge.Judging(cfg, pairwise=False)
    record = {"instruction": "Name a colour.", "input": ""}
    requests = [judging.request(record, answer, meta={}) for answer in ("Blue.", "Seven.")]
    answers = [TeacherResponse(" It names one.\nScore: 5\n\n", "stop"), TeacherResponse(" Not a colour.\nScore: 1", "stop")]
    from tunelab.teachers import RequestCache

    with RequestCache(tmp_path / "judge_cache.jsonl") as cache:
        verdicts = judging.read_all_single(teacher, requests, answers, cache)
        # a rerun reads the probabilities back: no model needed, the same scores
        again = judging.read_all_single(SimpleNamespace(name=teacher.name), requests, answers, cache)
    assert [v.probabilities for v in again] == [v.probabilities for v in verdicts]
    assert len((tmp_path / "expected_scores.jsonl").read_text().splitlines()) == 2
    for verdict, request in zip(verdicts, requests):
        assert math.isclose(sum(verdict.probabilities.values()), 1, abs_tol=1e-3) and 1 <= verdict.expected <= 5
        assert verdict.score == verdict.expected and verdict.as_dict()["stated_score"] in (1, 5)
    # the same probabilities as scoring each continuation on its own, without the shared cache
    context = f"{requests[0].prompt} It names one.\nScore:"
    direct = continuation_logprobs(teacher.model, teacher.tokenizer,
                                   [continuation_ids(teacher.tokenizer, context, f" {k}") for k in range(1, 6)])
    total = sum(math.exp(v) for v in direct)
    assert all(math.isclose(verdicts[0].probabilities[k], math.exp(v) / total, abs_tol=1e-3)
               for k, v in zip(range(1, 6), direct))
    with pytest.raises(Exception, match="judge_request completion and judge_criteria overall"):
        judge.Judging(JudgeConfig(judge_score="expected"), pairwise=False)


def test_on_a_scale_of_ten_a_one_does_not_also_count_every_ten():
    from tunelab.judge.expected import exclusive

    # " 1" -> [5]; " 10" -> [5, 7]; " 2" -> [6]: P(" 1") includes the 0.3 of " 10"
    assert exclusive([0.5, 0.2, 0.3], [[5], [6], [5, 7]]) == pytest.approx([0.2, 0.2, 0.3])
    assert exclusive([0.4, 0.6], [[5], [6]]) == [0.4, 0.6]  # no score begins another: as they are


def test_what_a_review_found_stays_fixed(tmp_path, monkeypatch):
    # "it's a tie" is a tie, not A; a score of a thousand digits is unreadable, not an exception
    assert judge.parse_pairwise("Reason: same.\nBetter: It's a tie").winner == "tie"
    assert judge.parse_single("Reason: x\nScore: " + "9" * 5000, [judge.OVERALL], 5).reject
    assert judge.parse_single('{"rationale": "x", "scores": {"overall": "' + "9" * 400 + '"}}', [judge.OVERALL], 5).reject
    # two instructions sharing an id would mix their answers
    data = tmp_path / "dup.json"
    data.write_text(json.dumps([{"id": "a", "instruction": "One.", "input": "", "output": "1"},
                                {"id": "a", "instruction": "Two.", "input": "", "output": "2"}]))
    monkeypatch.setitem(factory.BACKENDS, "scripted", lambda cfg: ScriptedTeacher())
    assert generate.main(["--tasks", "responses", "preferences", "--responses_data", str(data), "--teacher_backend",
                          "scripted", "--output_dir", str(tmp_path / "g")]) == 2
    assert generate.main(["--tasks", "responses", "preferences", "--preferences_responses", str(data),
                          "--teacher_backend", "scripted", "--output_dir", str(tmp_path / "g2")]) == 2


def test_a_pair_exactly_min_score_gap_apart_is_kept_and_a_tie_never_is(tmp_path, monkeypatch):
    # good answers score 5, the reference ("0", "1", ...) 3: two apart
    stats, _ = run(tmp_path, monkeypatch, "--tasks", "responses", "preferences", "--max_instructions", "2",
                   "--responses_per_instruction", "1", "--min_score_gap", "2")
    assert stats["preferences"]["pairs"] == 2
    # seeds 0, 1, 2: two good answers tied at 5 and a bad one at 2; with no gap asked, the tie is still never a pair
    stats, _ = run(tmp_path, monkeypatch, "--tasks", "responses", "preferences", "--max_instructions", "2",
                   "--responses_per_instruction", "3", "--include_reference", "false", "--min_score_gap", "0",
                   "--overwrite", "true")
    pairs = rows(tmp_path / "g/preferences.jsonl")
    assert len(pairs) == 2 and all((p["chosen_score"], p["rejected_score"]) == (5, 2) for p in pairs)


def test_a_judge_that_keeps_nothing_warns_and_names_its_rejects_file(tmp_path, monkeypatch, caplog):
    data = tmp_path / "records.json"
    data.write_text(json.dumps([{"instruction": "Say bye.", "input": "", "output": "a bad bye"}]))
    stats, _ = run(tmp_path, monkeypatch, "--tasks", "judge", "--judge_data", str(data), "--judge_threshold", "4")
    assert stats["judge"]["kept"] == 0
    assert "judge kept none" in caplog.text and "judged.rejects.jsonl" in caplog.text

"""Text scores with bootstrap intervals, several runs side by side, and the errors that stop a comparison."""

import json
import random

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from tunelab.metrics.bootstrap import Bootstrap
from tunelab.metrics.text import BERTScore, BERTScoreSettings, bleu, bleu_from_stats, rouge_l, score_runs
from tunelab.paths import PROJECT_ROOT
from tunelab.stages import evaluate


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These inputs are tiny: a second intra-op thread gains nothing, and on a busy shared CPU two spinning
    OpenMP threads made each BERTScore call ~6x slower (measured: 0.7 s vs 4.4 s for 24 pairs)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def answers() -> list[str]:
    """Real Alpaca answers, the shipped sample's (320)."""
    return [r["output"] for r in json.loads((PROJECT_ROOT / "data/alpaca_sample.json").read_text()) if r["output"].strip()]


@pytest.fixture(scope="module")
def short(answers) -> list[str]:
    """Their first 16 words: enough for BERTScore to tell answers apart, quick to encode on a CPU."""
    return [" ".join(a.split()[:16]) for a in answers]


def drop_words(texts: list[str], rate: float, seed: int = 0) -> list[str]:
    """A worse answer: each word dropped with probability `rate` (never all of them)."""
    rng = random.Random(seed)
    return [" ".join(w for w in t.split() if rng.random() >= rate) or t.split()[0] for t in texts]


def write_run(path, rows) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def rows_for(refs, preds, ids=None):
    ids = ids or [f"ex-{i}" for i in range(len(refs))]
    return [{"id": i, "instruction": f"task {i}", "input": "", "reference": r, "prediction": p}
            for i, r, p in zip(ids, refs, preds)]


# --- the library ---------------------------------------------------------------------------------------

def test_bleu_from_statistics_is_sacrebleus_corpus_and_sentence_bleu(answers):
    refs = answers[:120]
    preds = drop_words(refs, 0.3)
    b = bleu(preds, refs)
    assert b["score"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score, abs=1e-9)
    assert b["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")
    sentence = sacrebleu.metrics.BLEU(effective_order=True)
    assert b["per_example"] == pytest.approx([sentence.sentence_score(p, [r]).score for p, r in zip(preds, refs)])

    # each resample's BLEU from summed statistics = sacrebleu re-scoring the resampled sentences
    boot = Bootstrap(resamples=5, seed=3)
    counts = np.concatenate(list(boot.counts(len(refs))))
    sums = boot.sums(b["stats"])
    assert counts.shape == (5, len(refs)) and (counts.sum(axis=1) == len(refs)).all()
    for row, total in zip(counts[:3], sums[:3]):
        idx = np.repeat(np.arange(len(refs)), row)
        expected = sacrebleu.corpus_bleu([preds[i] for i in idx], [[refs[i] for i in idx]]).score
        assert bleu_from_stats(total) == pytest.approx(expected, abs=1e-9)


def test_rouge_l_is_rouge_scores_own_with_stemming(answers):
    refs, preds = answers[:60], drop_words(answers[:60], 0.4, seed=1)
    plain = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    assert rouge_l(preds, refs)["per_example"] == [plain.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)]


def test_intervals_hold_the_value_and_shrink_with_more_examples(answers):
    refs = answers[:300]
    preds = drop_words(refs, 0.3)
    widths = {}
    for n in (40, 300):
        result = score_runs({"run": preds[:n]}, refs[:n], None, Bootstrap(resamples=300))
        run = result["runs"][0]
        for metric in ("bleu", "rouge_l_f1"):
            ci = run[metric]
            assert ci["ci_low"] <= ci["value"] <= ci["ci_high"] and ci["ci_low"] < ci["ci_high"]
            widths[n, metric] = ci["ci_high"] - ci["ci_low"]
    for metric in ("bleu", "rouge_l_f1"):
        assert widths[300, metric] < 0.75 * widths[40, metric]
    # seeded: the same settings give the same intervals
    again = score_runs({"run": preds[:40]}, refs[:40], None, Bootstrap(resamples=300))
    assert again["runs"] == score_runs({"run": preds[:40]}, refs[:40], None, Bootstrap(resamples=300))["runs"]


def test_paired_deltas_identical_runs_zero_better_run_excludes_zero(answers):
    refs = answers[:150]
    worse, better = drop_words(refs, 0.5, seed=1), drop_words(refs, 0.1, seed=2)
    result = score_runs({"base": worse, "same": list(worse), "tuned": better}, refs, None, Bootstrap(resamples=400))
    by = {(c["run"], c["metric"]): c for c in result["comparisons"]}
    assert {c["baseline"] for c in result["comparisons"]} == {"base"}
    for metric in ("bleu", "rouge_l_f1"):
        same = by["same", metric]
        assert (same["delta"], same["ci_low"], same["ci_high"], same["excludes_zero"]) == (0, 0, 0, False)
        tuned = by["tuned", metric]
        assert tuned["delta"] > 0 and tuned["ci_low"] > 0 and tuned["excludes_zero"] is True
        # paired: the delta's interval is narrower than either run's own interval would suggest
        runs = {r["name"]: r for r in result["runs"]}
        assert tuned["ci_high"] - tuned["ci_low"] < (runs["tuned"][metric]["ci_high"] - runs["tuned"][metric]["ci_low"]
                                                    + runs["base"][metric]["ci_high"] - runs["base"][metric]["ci_low"])
    swapped = score_runs({"tuned": better, "base": worse}, refs, None, Bootstrap(resamples=400))
    assert all(c["ci_high"] < 0 and c["excludes_zero"] for c in swapped["comparisons"])


def test_no_resamples_means_no_intervals(answers):
    result = score_runs({"a": answers[:10], "b": drop_words(answers[:10], 0.3)}, answers[:10], None, Bootstrap(0))
    assert result["runs"][0]["bleu"]["value"] == pytest.approx(100)
    assert all(r[m]["ci_low"] is None and r[m]["ci_high"] is None for r in result["runs"] for m in ("bleu", "rouge_l_f1"))
    assert all(c["excludes_zero"] is None and c["ci_low"] is None for c in result["comparisons"])


def test_bertscore_is_bert_scores_own_loaded_once_and_bfloat16_stays_close(minilm, short):
    refs = short[:40]
    preds = drop_words(refs, 0.3)
    first = BERTScore(BERTScoreSettings(minilm, 6, batch_size=8))
    assert BERTScore(BERTScoreSettings(minilm, 6, batch_size=32))._scorer is first._scorer
    one = first(preds, refs)["per_example"]
    # token-sorted encoder batches: BERTScorer.score's own numbers, whatever the encoder batch size
    assert one == pytest.approx(first._scorer.score(preds, refs)[2].tolist(), abs=1e-5)
    assert BERTScore(BERTScoreSettings(minilm, 6, batch_size=3))(preds, refs)["per_example"] == pytest.approx(one, abs=1e-5)
    # several runs in one call: the same F1 as scoring each alone; an empty answer scores 0
    both = first.runs([preds, [""] + refs[1:]], refs)
    assert both[0] == pytest.approx(one, abs=1e-5)
    assert both[1][0] == 0.0 and both[1][1:] == pytest.approx([1.0] * 39, abs=1e-5)
    half = BERTScore(BERTScoreSettings(minilm, 6, batch_size=8, dtype="bfloat16"))
    assert half._scorer is not first._scorer
    assert np.max(np.abs(np.array(half(preds, refs)["per_example"]) - one)) < 5e-3
    with pytest.raises(ValueError, match="float32, bfloat16 or auto"):
        BERTScore(BERTScoreSettings(minilm, 6, dtype="float16"))


# --- the evaluate stage --------------------------------------------------------------------------------

def test_runs_side_by_side_in_scores_and_per_example(tmp_path, short):
    refs = short[:30]
    base = write_run(tmp_path / "base/predictions.jsonl", rows_for(refs, drop_words(refs, 0.5)))
    # the tuned run lists the same examples in another order: matched by id, not by line
    tuned_rows = rows_for(refs, drop_words(refs, 0.1, seed=5))[::-1]
    tuned = write_run(tmp_path / "tuned/predictions.jsonl", tuned_rows)
    scores = evaluate.score(["--task", "text", "--predictions", base, "--compare", tuned,
                             "--output_dir", str(tmp_path / "out"), "--bootstrap_resamples", "200"])
    assert scores["examples"] == 30 and scores["baseline"] == "base"
    assert [r["name"] for r in scores["runs"]] == ["base", "tuned"]
    assert scores["bleu"] == scores["runs"][0]["bleu"]["value"]  # single-run keys: the first run's values
    assert scores["bootstrap"]["resamples"] == 200
    assert {(c["run"], c["metric"]) for c in scores["comparisons"]} == {
        ("tuned", m) for m in ("bleu", "rouge_l_f1", "bertscore_f1")}
    for run in scores["runs"]:
        for metric in ("bleu", "rouge_l_f1", "bertscore_f1"):
            assert run[metric]["ci_low"] <= run[metric]["value"] <= run[metric]["ci_high"]
    rows = [json.loads(line) for line in (tmp_path / "out/per_example.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"ex-{i}" for i in range(30)]
    by_id = {r["id"]: r for r in tuned_rows}
    for row in rows:
        assert {"id", "instruction", "input", "reference"} <= set(row)
        for name in ("base", "tuned"):
            assert {f"{name}.{k}" for k in ("prediction", "bleu", "rouge_l_f1", "bertscore_f1")} <= set(row)
        assert row["tuned.prediction"] == by_id[row["id"]]["prediction"]
    assert np.mean([r["tuned.rouge_l_f1"] for r in rows]) == pytest.approx(scores["runs"][1]["rouge_l_f1"]["value"])

    named = evaluate.score(["--task", "text", "--predictions", base, "--compare", tuned, "--run_names", "b", "t",
                            "--output_dir", str(tmp_path / "named"), "--bootstrap_resamples", "0"])
    assert [r["name"] for r in named["runs"]] == ["b", "t"] and named["comparisons"][0]["ci_low"] is None


@pytest.mark.parametrize("case", ["missing_id", "extra_id", "count", "reference", "duplicate", "no_id",
                                  "no_reference", "empty"])
def test_runs_that_do_not_line_up_are_named(tmp_path, capsys, case):
    refs = ["The cat sat on the mat.", "Dogs bark at night.", "Rain falls in spring."]
    base = write_run(tmp_path / "base/predictions.jsonl", rows_for(refs, refs))
    rows = rows_for(refs, refs)
    expected = {"missing_id": "has no record ex-1", "extra_id": "record ex-9: not in",
                "count": "has no record ex-2", "reference": "record ex-1: reference differs",
                "duplicate": "record ex-0: id already on line 1", "no_id": "row has no 'id'",
                "no_reference": "row needs a string 'reference'", "empty": "record ex-2: empty prediction"}[case]
    line = {"missing_id": None, "extra_id": 2, "count": None, "reference": 2, "duplicate": 3, "no_id": 2,
            "no_reference": 3, "empty": 3}[case]
    if case == "missing_id":
        del rows[1]
    elif case == "extra_id":
        rows[1]["id"] = "ex-9"
    elif case == "count":
        rows = rows[:2]
    elif case == "reference":
        rows[1]["reference"] = "Cats bark at noon."
    elif case == "duplicate":
        rows[2]["id"] = "ex-0"
    elif case == "no_id":
        del rows[1]["id"]
    elif case == "no_reference":
        del rows[2]["reference"]
    elif case == "empty":
        rows[2]["prediction"] = "  "
    tuned = write_run(tmp_path / "tuned/predictions.jsonl", rows)
    code = evaluate.main(["--task", "text", "--predictions", base, "--compare", tuned,
                          "--output_dir", str(tmp_path / "out"), "--bootstrap_resamples", "10"])
    err = capsys.readouterr().err
    assert code == 2
    where = f"{tuned}:{line}: " if line else f"{tuned}: "
    assert where in err and expected in err, err


def test_run_names_must_be_usable(tmp_path, capsys):
    refs = ["One two three four.", "Five six seven eight."]
    a = write_run(tmp_path / "a/predictions.jsonl", rows_for(refs, refs))
    for names, message in ((["x"], "gives 1 names for 2"), (["x.y", "z"], "without '.'"), (["x", "x"], "distinct")):
        assert evaluate.main(["--task", "text", "--predictions", a, "--compare", a, "--run_names", *names,
                              "--output_dir", str(tmp_path / "out")]) == 2
        assert message in capsys.readouterr().err
    assert evaluate.main(["--task", "text", "--predictions", a, "--compare", a,
                          "--output_dir", str(tmp_path / "out")]) == 2
    assert "--run_names" in capsys.readouterr().err


def test_a_failed_scoring_over_an_older_one_leaves_no_finished_record(tmp_path, capsys):
    """--overwrite of a scores folder: until the new scores are written, the older run's record is gone, so a
    runner never takes the older scores for the new ones (evaluate/results.py skips finished folders)."""
    refs = ["The cat sat on the mat.", "Dogs bark at night."]
    base = write_run(tmp_path / "base/predictions.jsonl", rows_for(refs, refs))
    out = tmp_path / "out"
    out.mkdir()
    (out / "provenance.json").write_text("{}")  # an older scoring, finished
    (out / "scores.json").write_text("{}")
    broken = rows_for(refs, refs)
    del broken[1]["reference"]
    tuned = write_run(tmp_path / "tuned/predictions.jsonl", broken)
    code = evaluate.main(["--task", "text", "--predictions", base, "--compare", tuned, "--output_dir", str(out),
                          "--overwrite", "true", "--bootstrap_resamples", "10"])
    assert code == 2 and "row needs a string 'reference'" in capsys.readouterr().err
    assert not (out / "provenance.json").exists()

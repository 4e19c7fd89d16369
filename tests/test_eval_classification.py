"""evaluate --task classification: LLM answers parsed into labels (refusals apart), metrics against
scikit-learn, plots, dev-tuned thresholds, bad-input errors and k-shot baseline mechanics. Offline."""

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tunelab.metrics.classification import (NO_ANSWER, mean_std, multilabel_metrics, multilabel_scores,
                                            singlelabel_scores, tune_thresholds)
from tunelab.metrics.llm_answers import OUTCOMES, REFUSAL_PATTERNS, parse_label_answer, score_answers
from tunelab.errors import ConfigError
from tunelab.inference.few_shot import draw_shots
from tunelab.stages import evaluate

JIGSAW = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
GUARD = ("violent_crimes", "hate", "suicide_and_self_harm", "privacy")


# ---- the answer parser -----------------------------------------------------------------------------

@pytest.mark.parametrize("answer, outcome, labels", [
    ("toxic, insult", "labels", ("toxic", "insult")),
    ("Insult, TOXIC", "labels", ("toxic", "insult")),            # any case, any order; taxonomy order back
    ("severe_toxic", "labels", ("severe_toxic",)),
    ("Severe toxic and identity-hate.", "labels", ("severe_toxic", "identity_hate")),
    ("- Toxic\n- Obscene\n", "labels", ("toxic", "obscene")),       # bullets
    ("1. threat\n2) insult", "labels", ("threat", "insult")),
    ('"toxic"', "labels", ("toxic",)),
    ('["toxic", "insult"]', "labels", ("toxic", "insult")),
    ("Sure! Here is the classification: **toxic**, *insult*", "labels", ("toxic", "insult")),
    ("toxic/obscene | threats", "labels", ("toxic", "obscene", "threat")),
    ("The comment is toxic and clearly insulting.", "labels", ("toxic", "insult")),  # prose, inflections
    ("It contains no threats, but it is obscene.", "labels", ("obscene",)),         # negation ends at "but"
    ("none", "none", ()),
    ("None.", "none", ()),
    ('"none"', "none", ()),
    ("None of the above", "none", ()),
    ("The comment does not fall into any of the categories.", "none", ()),
    ("This comment is not toxic.", "none", ()),
    ("non-toxic", "none", ()),
    ("I cannot classify this content as it contains hate speech and toxic language.", "refusal", ()),
    ("I'm sorry, but I can't help with that.", "refusal", ()),
    ("As an AI language model, I must decline.", "refusal", ()),
    ("I’m not able to label offensive material.", "refusal", ()),               # typographic apostrophe
    ("It is not appropriate for me to judge this comment, which is obscene.", "refusal", ()),
    ("I cannot be certain, but the answer is:\ntoxic, insult", "labels", ("toxic", "insult")),  # a clear list wins
    ("I can't find a category that applies: none", "none", ()),
    # the prompt's category list repeated before the answer is not the answer
    ("Categories: toxic, severe_toxic, obscene, threat, insult, identity_hate.\nAnswer: insult", "labels", ("insult",)),
    ("Categories: toxic, severe toxic, obscene, threat, insult, identity hate, none. Answer: none", "none", ()),
    ("toxic, severe_toxic, obscene, threat, insult, identity_hate", "labels", JIGSAW),  # alone: all apply
    ("spam", "unparseable", ()),
    ("", "unparseable", ()),
    ("   \n", "unparseable", ()),
])
def test_parser_reads_answers(answer, outcome, labels):
    got = parse_label_answer(answer, JIGSAW, "none")
    assert (got.outcome, got.labels) == (outcome, labels), got.reason
    assert got.reason


def test_parser_with_another_taxonomy_and_none_label():
    assert parse_label_answer("Suicide and self harm, hate", GUARD, "safe").labels == ("hate", "suicide_and_self_harm")
    assert parse_label_answer("Safe", GUARD, "safe").outcome == "none"
    assert parse_label_answer("unsafe: privacy", GUARD, "safe").labels == ("privacy",)
    refused = parse_label_answer("I apologize, but I cannot assist with violent crimes.", GUARD, "safe")
    assert refused.outcome == "refusal" and "apologi" in refused.reason


label_names = st.lists(st.from_regex(r"[a-z]{2,8}(_[a-z]{2,8})?", fullmatch=True), min_size=1, max_size=6, unique=True)


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=300), labels=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6),
       none_label=st.text(min_size=1, max_size=8))
def test_parser_never_raises(text, labels, none_label):
    got = parse_label_answer(text, labels, none_label)
    assert got.outcome in OUTCOMES and set(got.labels) <= set(labels) and isinstance(got.reason, str)
    assert bool(got.labels) == (got.outcome == "labels")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(labels=label_names, data=st.data())
def test_parser_reads_any_clean_list_back(labels, data):
    keys = [x.replace("_", " ") for x in labels]
    reserved = {"and", "or", "none", "nothing", "no", "not", "non", "n/a"}
    assume(len(set(keys)) == len(keys) and not reserved & {w for k in keys for w in k.split()})
    chosen = data.draw(st.lists(st.sampled_from(labels), unique=True, max_size=len(labels)))
    written = [data.draw(st.sampled_from([x, x.upper(), x.replace("_", " "), x.replace("_", "-"), x.title()]))
               for x in chosen]
    sep = data.draw(st.sampled_from([", ", ",", "; ", " and ", " / ", "\n- ", " | "]))
    text = sep.join(written) if written else data.draw(st.sampled_from(["none", "None.", '"none"']))
    text = data.draw(st.sampled_from(["{}", '"{}"', "Answer: {}", "{}.", "- {}"])).format(text)
    got = parse_label_answer(text, labels, "none")
    assert got.outcome == ("labels" if chosen else "none"), (text, got)
    assert set(got.labels) == set(chosen)


@settings(max_examples=60, deadline=None)
@given(phrase=st.sampled_from(["I cannot do that.", "I can't classify this.", "As an AI, I won't.",
                               "I'm not able to help.", "That is not appropriate.", "I'm sorry, no.",
                               "I am unable to comply."]),
       mention=st.sampled_from(JIGSAW))
def test_refusals_win_over_prose_but_not_over_a_clear_list(phrase, mention):
    prose = f"{phrase} The comment may be {mention.replace('_', ' ')}, which I will not judge."
    assert parse_label_answer(prose, JIGSAW).outcome == "refusal"
    assert parse_label_answer(f"{phrase}\n{mention}", JIGSAW).labels == (mention,)
    assert any(re.search(p, phrase.lower()) for p in REFUSAL_PATTERNS)


# ---- metrics against scikit-learn ----------------------------------------------------------------

def test_multilabel_scores_match_sklearn():
    from sklearn.metrics import (accuracy_score, average_precision_score, f1_score, hamming_loss,
                                 precision_score, recall_score, roc_auc_score)

    y = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0], [1, 0, 1], [0, 1, 0]])
    p = np.array([[.9, .2, .6], [.3, .4, .7], [.6, .8, .2], [.1, .1, .4], [.4, .3, .9], [.2, .35, .1]])
    m = multilabel_metrics(y, p, ["a", "b", "c"], 0.5)
    pred = (p >= 0.5).astype(int)
    assert m["micro"]["f1"] == pytest.approx(f1_score(y, pred, average="micro"))
    assert m["macro"]["f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["macro"]["precision"] == pytest.approx(precision_score(y, pred, average="macro"))
    assert m["micro"]["recall"] == pytest.approx(recall_score(y, pred, average="micro"))
    assert m["subset_accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(y, pred))
    for j, label in enumerate("abc"):
        v = m["per_label"][label]
        assert v["f1"] == pytest.approx(f1_score(y[:, j], pred[:, j]))
        assert v["roc_auc"] == pytest.approx(roc_auc_score(y[:, j], p[:, j]))
        assert v["pr_auc"] == pytest.approx(average_precision_score(y[:, j], p[:, j]))
        assert (v["tn"], v["fp"], v["fn"], v["tp"]) == (
            int(((y[:, j] == 0) & (pred[:, j] == 0)).sum()), int(((y[:, j] == 0) & (pred[:, j] == 1)).sum()),
            int(((y[:, j] == 1) & (pred[:, j] == 0)).sum()), int(((y[:, j] == 1) & (pred[:, j] == 1)).sum()))
    assert m["mean_roc_auc"] == pytest.approx(np.mean([m["per_label"][x]["roc_auc"] for x in "abc"]))
    # a label with one class has no ROC-AUC; without positives no PR-AUC either
    one_class = multilabel_scores(np.array([[0], [0]]), np.array([[0], [1]]), ["x"], np.array([[.1], [.9]]))
    assert one_class["per_label"]["x"]["roc_auc"] is None and one_class["per_label"]["x"]["pr_auc"] is None


def test_singlelabel_scores_with_unanswered_examples_match_sklearn():
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    y = np.array([0, 1, 2, 1, 0, 2, 1])
    pred = np.array([0, 1, NO_ANSWER, 2, 0, 2, NO_ANSWER])
    m = singlelabel_scores(y, pred, ["neg", "neu", "pos"])
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred)) == pytest.approx(4 / 7)
    k = [0, 1, 2]
    assert m["macro"]["f1"] == pytest.approx(f1_score(y, pred, labels=k, average="macro"))
    # micro precision counts answered examples only
    assert m["micro"]["precision"] == pytest.approx(precision_score(y, pred, labels=k, average="micro"))
    assert m["micro"]["recall"] == pytest.approx(recall_score(y, pred, labels=k, average="micro")) == m["accuracy"]
    assert m["confusion_matrix_labels"][-1] == "(no answer)"
    assert np.array(m["confusion_matrix"])[:, -1].tolist() == [0, 1, 1, 0]  # one unanswered neu, one pos


def test_mean_std_over_seeds():
    got = mean_std([{"a": 1.0, "b": {"c": 2.0}, "n": None}, {"a": 3.0, "b": {"c": 4.0}, "n": 1.0}])
    assert got["mean"] == {"a": 2.0, "b": {"c": 3.0}, "n": None}
    assert got["std"]["a"] == pytest.approx(np.std([1, 3], ddof=1)) and got["std"]["n"] is None
    assert mean_std([{"a": 1.0}])["std"]["a"] is None  # one run has no spread


def test_refusals_are_scored_two_ways():
    parse = lambda text: parse_label_answer(text, ("a", "b"), "none")  # noqa: E731
    refs = [("a",), ("b",), (), ("a", "b")]
    parsed = [parse("a"), parse("I cannot answer that."), parse("none"), parse("???")]
    s = score_answers(refs, parsed, ("a", "b"), "none", "multi_label")
    assert s["outcomes"] == {"labels": 1, "none": 1, "refusal": 1, "unparseable": 1}
    assert s["refusal_rate"] == 0.25 and s["unparseable_rate"] == 0.25
    assert s["outcomes_by_true_label"]["b"] == {"examples": 2, "refusal": 1, "unparseable": 1, "refusal_rate": 0.5,
                                                "unparseable_rate": 0.5}
    # refusals counted as wrong: the refused row predicts the complement {a}; the unparseable one nothing
    assert s["examples"] == 4 and s["subset_accuracy"] == 0.5
    assert s["hamming_loss"] == pytest.approx(4 / 8)
    ex = s["refusals_excluded"]
    assert ex["examples"] == 3 and ex["subset_accuracy"] == pytest.approx(2 / 3)
    assert ex["hamming_loss"] == pytest.approx(2 / 6)
    assert "refusals counted as wrong" in s["scored_as"] and "refusals excluded" in ex["scored_as"]


# ---- LLM answers through the evaluate stage ------------------------------------------------------

def probs(**given):
    return {label: given.get(label, 0.05) for label in JIGSAW}


ROWS = [
    {"id": "a", "instruction": "Classify", "input": "you idiot", "reference": "toxic, insult",
     "prediction": "Toxic, insult", "label_probs": probs(toxic=.9, insult=.8)},
    {"id": "b", "instruction": "Classify", "input": "nice day", "reference": "none", "prediction": "none",
     "label_probs": probs(toxic=.2)},
    {"id": "c", "instruction": "Classify", "input": "I will find you", "reference": "threat",
     "prediction": "I cannot classify this content.", "label_probs": probs(threat=.7, toxic=.4)},
    {"id": "d", "instruction": "Classify", "input": "damn", "reference": "obscene, toxic",
     "prediction": "The comment is obscene.", "label_probs": probs(obscene=.6, toxic=.5)},
    {"id": "e", "instruction": "Classify", "input": "ok then", "reference": "none", "prediction": "blah",
     "label_probs": probs(insult=.3)},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_llm_answers_end_to_end(tmp_path):
    path = write_jsonl(tmp_path / "predictions.jsonl", ROWS)
    out = tmp_path / "scores"
    scores = evaluate.score(["--task", "classification", "--predictions", str(path), "--taxonomy", "jigsaw",
                             "--output_dir", str(out)])
    assert scores["source"] == "llm_answers" and scores["problem_type"] == "multi_label"
    assert scores["outcomes"] == {"labels": 2, "none": 1, "refusal": 1, "unparseable": 1}
    assert scores["outcomes_by_true_label"]["threat"]["refusal_rate"] == 1.0
    assert scores["outcomes_by_true_label"]["none"] == {"examples": 2, "refusal": 0, "unparseable": 1,
                                                        "refusal_rate": 0.0, "unparseable_rate": 0.5}
    assert scores["examples"] == 5 and scores["refusals_excluded"]["examples"] == 4
    assert set(scores["per_label"]) == set(JIGSAW) and scores["scores_from"] == "label_probs"
    assert scores["per_label"]["toxic"]["roc_auc"] is not None and scores["per_label"]["toxic"]["pr_auc"] is not None
    # counted as wrong, the refused row (threat) and the unparseable one (none) predict every other label
    insult = scores["per_label"]["insult"]
    assert (insult["tp"], insult["fp"], insult["fn"], insult["f1"]) == (1, 2, 0, 0.5)
    assert scores["refusals_excluded"]["per_label"]["insult"]["f1"] == pytest.approx(2 / 3)  # only e's FP left
    rows = [json.loads(x) for x in (out / "per_example.jsonl").read_text().splitlines()]
    assert [r["outcome"] for r in rows] == ["labels", "none", "refusal", "labels", "unparseable"]
    assert rows[3]["predicted"] == ["obscene"] and rows[3]["reference"] == ["toxic", "obscene"]
    assert rows[2]["predicted"] is None and not rows[2]["correct"] and rows[0]["correct"]
    assert {"id", "text", "answer", "reason", "scores"} <= set(rows[0])
    made = {"confusion_per_label", "roc_curves", "pr_curves", "refusals_excluded_confusion_per_label"}
    assert made <= set(scores["plots"])
    outputs = json.loads((out / "provenance.json").read_text())["outputs"]
    for name in made:
        png = out / scores["plots"][name]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and outputs[name] == str(png)


def test_single_label_llm_answers_with_confusion_matrix(tmp_path):
    cases = [("bad", "negative", "Negative.", .8), ("good", "positive", "positive", .3),
             ("meh", "negative", "I'm sorry, I can't.", .6), ("great", "positive", "negative", .55)]
    rows = [{"id": str(i), "input": t, "reference": ref, "prediction": ans,
             "label_probs": {"negative": p, "positive": 1 - p}} for i, (t, ref, ans, p) in enumerate(cases)]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    scores = evaluate.score(["--task", "classification", "--predictions", str(path), "--labels", "negative", "positive",
                             "--output_dir", str(tmp_path / "s")])
    assert scores["problem_type"] == "single_label" and scores["accuracy"] == 0.5
    assert scores["refusals_excluded"]["accuracy"] == pytest.approx(2 / 3)
    assert scores["confusion_matrix_labels"] == ["negative", "positive", "(no answer)"]
    assert (tmp_path / "s/confusion_matrix.png").exists() and (tmp_path / "s/roc_curves.png").exists()


def test_references_from_a_data_file_are_matched_by_id(tmp_path):
    answers = [{k: v for k, v in r.items() if k not in ("reference", "label_probs")} for r in ROWS]
    pred = write_jsonl(tmp_path / "p.jsonl", answers[::-1])  # another order: matched by id, not position
    refs = write_jsonl(tmp_path / "refs.jsonl", [
        {"id": r["id"], "text": r["input"], "labels": [x.strip() for x in r["reference"].split(",") if x != "none"]}
        for r in ROWS])
    scores = evaluate.score(["--task", "classification", "--predictions", str(pred), "--data", str(refs),
                             "--taxonomy", "jigsaw", "--output_dir", str(tmp_path / "s"), "--plots", "false"])
    assert scores["outcomes"]["refusal"] == 1 and scores["scores_from"] is None and "plots" not in scores
    assert scores["per_label"]["toxic"]["roc_auc"] is None


# ---- bad input -----------------------------------------------------------------------------------

def _fails(argv, capsys) -> str:
    assert evaluate.main(argv) == 2
    return capsys.readouterr().err


def test_mismatched_predictions_and_references_name_file_and_record(tmp_path, capsys):
    answers = [{"id": r["id"], "prediction": r["prediction"]} for r in ROWS]
    pred = write_jsonl(tmp_path / "p.jsonl", answers)
    base = ["--task", "classification", "--predictions", str(pred), "--taxonomy", "jigsaw"]
    fewer = write_jsonl(tmp_path / "fewer.jsonl", [{"id": r["id"], "labels": []} for r in ROWS[:4]])
    err = _fails([*base, "--data", str(fewer), "--output_dir", str(tmp_path / "a")], capsys)
    assert f"{pred}:5: record e: no reference with this id in {fewer}" in err and "5 predictions" in err
    other = write_jsonl(tmp_path / "other.jsonl", [{"id": "zz" if r["id"] == "c" else r["id"], "labels": []}
                                                   for r in ROWS])
    err = _fails([*base, "--data", str(other), "--output_dir", str(tmp_path / "b")], capsys)
    assert f"{pred}:3: record c: no reference with this id" in err
    no_ids = write_jsonl(tmp_path / "noids.jsonl", [{"labels": []}] * 6)
    err = _fails([*base, "--data", str(no_ids), "--output_dir", str(tmp_path / "c")], capsys)
    assert f"{no_ids}:6: record 5 has no counterpart: 5 predictions" in err
    outside = write_jsonl(tmp_path / "outside.jsonl", [{"id": r["id"], "labels": ["spam"] if r["id"] == "b" else []}
                                                       for r in ROWS])
    err = _fails([*base, "--data", str(outside), "--output_dir", str(tmp_path / "d")], capsys)
    assert f"{outside}:2: record b: labels 'spam' outside the taxonomy ['toxic'" in err


def test_bad_prediction_rows_name_file_and_record(tmp_path, capsys):
    base = ["--task", "classification", "--taxonomy", "jigsaw"]
    bad_ref = write_jsonl(tmp_path / "r.jsonl", [ROWS[0], {**ROWS[1], "reference": "toxic, rude"}])
    err = _fails([*base, "--predictions", str(bad_ref), "--output_dir", str(tmp_path / "a")], capsys)
    assert f"{bad_ref}:2: record b: reference 'rude' outside the taxonomy" in err
    empty = write_jsonl(tmp_path / "e.jsonl", [ROWS[0], {**ROWS[1], "prediction": "  "}])
    err = _fails([*base, "--predictions", str(empty), "--output_dir", str(tmp_path / "b")], capsys)
    assert f"{empty}:2: record b: empty prediction" in err
    allowed = evaluate.score([*base, "--predictions", str(empty), "--allow_empty_predictions", "true",
                              "--output_dir", str(tmp_path / "c"), "--plots", "false"])
    assert allowed["outcomes"]["unparseable"] == 1
    probs_out = write_jsonl(tmp_path / "lp.jsonl", [ROWS[0], {**ROWS[1], "label_probs": {**probs(), "spam": .5}}])
    err = _fails([*base, "--predictions", str(probs_out), "--output_dir", str(tmp_path / "d")], capsys)
    assert f"{probs_out}:2: record b: label_probs names ['spam'], outside the taxonomy" in err
    dup = write_jsonl(tmp_path / "dup.jsonl", [ROWS[0], ROWS[0]])
    assert f"{dup}:2: record a: id given twice" in _fails([*base, "--predictions", str(dup), "--output_dir",
                                                           str(tmp_path / "e")], capsys)
    err = _fails(["--task", "classification", "--predictions", str(dup), "--output_dir", str(tmp_path / "f")], capsys)
    assert "--taxonomy" in err


# ---- encoder classifier: thresholds tuned on dev, applied to test --------------------------------

CLS_LABELS = ("toxic", "insult", "threat")


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory, minilm):
    """A random 1-layer BERT head on MiniLM's tokenizer, saved as a classifier folder (no training)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from tunelab.training.classify.config import ClassifierConfig
    from tunelab.training.classify.predict import ClassifierInfo

    out = tmp_path_factory.mktemp("classifier")
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=37, num_labels=len(CLS_LABELS), problem_type="multi_label_classification"))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    ClassifierInfo(base=minilm, labels=CLS_LABELS, problem_type="multi_label", max_length=32, lora=False,
                   layout=ClassifierConfig().layout).write(out)
    return out


def moderation_rows(n, offset):
    rng = np.random.default_rng(offset)
    words = ["you", "idiot", "nice", "day", "hurt", "stupid", "lovely", "find", "dumb", "great"]
    return [{"id": f"r{offset + i}", "text": " ".join(rng.choice(words, 4)),
             "labels": [label for label in CLS_LABELS if rng.random() < 0.4]} for i in range(n)]


def test_thresholds_tuned_on_dev_are_applied_to_test(tiny_classifier, tmp_path):
    from tunelab.training.classify.predict import load_classifier, predict_proba

    dev = write_jsonl(tmp_path / "dev.jsonl", moderation_rows(16, 100))
    test = write_jsonl(tmp_path / "test.jsonl", moderation_rows(12, 200))
    out = tmp_path / "scores"
    scores = evaluate.score(["--task", "classification", "--model", str(tiny_classifier), "--data", str(test),
                             "--dev_data", str(dev), "--output_dir", str(out)])
    model, tokenizer, _ = load_classifier(tiny_classifier)
    dev_rows = moderation_rows(16, 100)
    y_dev = np.array([[label in r["labels"] for label in CLS_LABELS] for r in dev_rows], dtype=int)
    expected = tune_thresholds(y_dev, predict_proba(model, tokenizer, [r["text"] for r in dev_rows], 32))
    tuned = scores["tuned_on_dev"]
    assert [tuned["thresholds"][label] for label in CLS_LABELS] == pytest.approx(expected.tolist())
    assert tuned["dev_examples"] == 16 and tuned["examples"] == 12 == scores["examples"]
    assert scores["threshold"] == 0.5 and scores["threshold_source"] == "default"
    assert scores["source"] == "classifier" and all("pr_auc" in v for v in scores["per_label"].values())
    rows = [json.loads(x) for x in (out / "per_example.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {"id", "text", "reference", "predicted", "outcome", "scores",
                                "predicted_tuned_on_dev"} <= set(rows[0])
    assert all((k in r["predicted_tuned_on_dev"]) == (p >= tuned["thresholds"][k]) for r in rows
               for k, p in r["scores"].items())
    made = {"confusion_per_label", "roc_curves", "pr_curves", "tuned_on_dev_confusion_per_label"}
    assert made <= set(scores["plots"])
    assert all((out / name).exists() for name in scores["plots"].values())


# ---- k-shot baselines ----------------------------------------------------------------------------

def test_shots_are_drawn_per_seed_and_never_from_the_answered_examples():
    pool = [{"id": f"s{i}", "instruction": "Classify", "input": f"shot {i}", "output": "none"} for i in range(6)]
    pool.append({"id": "eval", "instruction": "Classify", "input": "text 0", "output": "toxic"})
    pool.append({"id": "other", "instruction": "Classify", "input": "text 9", "output": "toxic"})
    answered = {("Classify", "text 0"), ("Summarize", "")}
    draws = [draw_shots(pool, 3, seed, answered) for seed in range(5)]
    assert all(len(d) == 3 and all(s["id"] != "eval" for s in d) for d in draws)
    assert draws[0] == draw_shots(pool, 3, 0, answered) and len({tuple(s["id"] for s in d) for d in draws}) > 1
    with pytest.raises(ConfigError, match="only 7 examples outside the eval set"):
        draw_shots(pool, 8, 0, answered)
    # instruction-only records (no input) are told apart by their instruction
    pool.append({"id": "plain", "instruction": "Name a colour.", "input": "", "output": "Blue."})
    assert [s["id"] for s in draw_shots(pool, 8, 0, answered) if s["id"] == "plain"] == ["plain"]


def test_kshot_baselines_are_inference_runs_scored_beside_the_main_scores(tmp_path, tiny_llama):
    from tunelab.stages import infer

    rows = ROWS[:3]
    pred = write_jsonl(tmp_path / "p.jsonl", [{k: v for k, v in r.items() if k != "label_probs"} for r in rows])
    eval_set = tmp_path / "eval.json"
    eval_set.write_text(json.dumps([{"id": r["id"], "instruction": r["instruction"], "input": r["input"],
                                     "output": r["reference"]} for r in rows]))
    shots = tmp_path / "shots.json"
    shots.write_text(json.dumps([{"id": f"s{i}", "instruction": "Classify", "input": f"comment {i}", "output": o}
                                 for i, o in enumerate(["toxic", "none", "insult, toxic", "none"])]))
    runs = []
    for k, seed in ((0, 0), (2, 0), (2, 1)):
        folder = tmp_path / f"{k}shot_seed{seed}"
        infer.infer(["--model", "tunelab:tiny-llama", "--data", str(eval_set), "--shots", str(k), "--shots_seed",
                     str(seed), *(["--shots_data", str(shots)] if k else []), "--max_new_tokens", "6",
                     "--label_probs", "jigsaw", "--output_dir", str(folder)])
        runs.append(str(folder / "predictions.jsonl"))
    noted = json.loads((tmp_path / "2shot_seed1/provenance.json").read_text())["notes"]["shots"]
    assert noted["shots"] == 2 and noted["seed"] == 1 and len(noted["ids"]) == 2
    out = tmp_path / "s"
    scores = evaluate.score(["--task", "classification", "--predictions", str(pred), "--taxonomy", "jigsaw",
                             "--baselines", *runs, "--output_dir", str(out), "--plots", "false"])
    base = scores["baselines"]
    assert base["model"] == "tunelab:tiny-llama" and base["examples"] == 3 and set(base["by_shots"]) == {"0", "2"}
    assert [r["seed"] for r in base["by_shots"]["2"]["runs"]] == [0, 1]
    assert base["by_shots"]["2"]["runs"][1]["shot_ids"] == noted["ids"]
    for entry in base["by_shots"].values():
        assert all(sum(r["outcomes"].values()) == 3 for r in entry["runs"])
        assert set(entry["mean"]) >= {"refusal_rate", "unparseable_rate", "refusals_as_wrong", "outcomes"}
        # ROC-AUC from the label tokens' probabilities, for the labels these 3 rows hold both ways
        assert all(r["refusals_as_wrong"]["mean_roc_auc"] is not None for r in entry["runs"])
    assert base["by_shots"]["0"]["std"]["refusal_rate"] is None  # one run: no spread
    assert base["by_shots"]["2"]["std"]["refusal_rate"] is not None
    systems = [r["system"] for r in scores["comparison"]]
    assert systems == ["scored model", "0-shot baseline", "2-shot baseline"]
    assert "±" in scores["comparison"][2]["text"]["macro_f1"]
    answered = [json.loads(x) for x in (out / "baselines/2shot_seed1.jsonl").read_text().splitlines()]
    assert len(answered) == 3 and {"id", "answer", "outcome", "reason", "reference", "predicted"} <= set(answered[0])
    assert set(answered[0]["label_probs"]) == set(JIGSAW)


def test_a_baseline_must_be_a_finished_inference_run_on_the_same_examples(tmp_path, capsys):
    pred = write_jsonl(tmp_path / "p.jsonl", ROWS)
    base = ["--task", "classification", "--predictions", str(pred), "--taxonomy", "jigsaw", "--plots", "false"]
    (tmp_path / "loose").mkdir()
    loose = write_jsonl(tmp_path / "loose" / "predictions.jsonl", ROWS)
    assert "holds no config.yaml" in _fails([*base, "--baselines", str(loose), "--output_dir", str(tmp_path / "a")],
                                            capsys)
    (tmp_path / "loose" / "config.yaml").write_text("model: m\nshots: 2\nshots_seed: 0\n")
    assert "has not finished" in _fails([*base, "--baselines", str(loose), "--output_dir", str(tmp_path / "b")],
                                        capsys)
    (tmp_path / "loose" / "provenance.json").write_text("{}")
    write_jsonl(loose, ROWS[:4])
    assert "baselines are compared on the same ids" in _fails(
        [*base, "--baselines", str(loose), "--output_dir", str(tmp_path / "c")], capsys)


def test_settings_of_the_other_path_are_refused_not_ignored(tmp_path, capsys):
    pred = write_jsonl(tmp_path / "p.jsonl", ROWS)
    base = ["--task", "classification", "--predictions", str(pred), "--taxonomy", "jigsaw",
            "--output_dir", str(tmp_path / "s")]
    assert "--split, --tfidf_baseline apply to an encoder classifier" in _fails(
        [*base, "--split", "test", "--tfidf_baseline", "true"], capsys)
    assert "--bertscore_model applies to text scores" in _fails([*base, "--bertscore_model", "x"], capsys)
    assert "--split must be test or eval" in _fails(
        ["--task", "classification", "--model", str(tmp_path), "--split", "train"], capsys)

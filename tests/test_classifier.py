"""Encoder classifiers: the labeled-table loader, losses and sampler against hand computations, and
short real MiniLM runs (single-label IMDB, multi-label GoEmotions) through finetune and evaluate."""

from __future__ import annotations

import csv
import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tunelab.errors import ConfigError, RecordError
from tunelab.metrics.classification import tune_thresholds
from tunelab.records import read_table_rows
from tunelab.stages import evaluate, finetune
from tunelab.training.classify.config import ClassifierConfig
from tunelab.training.classify.data import LabeledTexts, load_labeled_texts
from tunelab.training.classify.imbalance import class_weights, sample_weights
from tunelab.training.classify.modeling import classification_loss
from tunelab.training.classify.predict import load_classifier, predict_proba

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
JIGSAW_LABELS = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
RUN = ["--task", "classify", "--base", "tunelab:minilm", "--max_length", "64", "--per_device_train_batch_size", "8",
       "--per_device_eval_batch_size", "16", "--learning_rate", "0.001", "--logging_steps", "1", "--save_strategy", "no",
       "--report_to", "none", "--activation_checkpointing", "false", "--disable_tqdm", "true"]

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data (the real datasets) is not here")


def write_csv(path: Path, header: list[str] | None, rows: list[list], delimiter: str = ",") -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return path


def log_keys(out: Path) -> set[str]:
    return {k for e in json.loads((out / "train_log.json").read_text())["log_history"] for k in e}


# ---- loader ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def imdb_slice(tmp_path_factory) -> Path:
    """24 training reviews (18 positive, 6 negative) and 16 test reviews, gzipped, IMDB's columns."""
    picked = {("train", "positive"): 18, ("train", "negative"): 6, ("test", "positive"): 8, ("test", "negative"): 8}
    rows = []
    with gzip.open(SHARED / "imdb/imdb_50k_aclImdb.csv.gz", "rt", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        for row in reader:
            key = (row[2], row[1])
            if picked.get(key, 0) > 0:
                picked[key] -= 1
                rows.append(row)
            if not any(picked.values()):
                break
    return write_csv(tmp_path_factory.mktemp("imdb") / "imdb_slice.csv.gz", header, rows)


@pytest.fixture(scope="module")
def goemotions_slices(tmp_path_factory) -> tuple[Path, Path]:
    """The first 48 training and 24 dev rows of GoEmotions' header-less TSVs, byte for byte."""
    folder = tmp_path_factory.mktemp("goemotions")
    for name, n in (("train", 48), ("dev", 24)):
        lines = (SHARED / f"go_emotions/original/{name}.tsv").read_text(encoding="utf-8").splitlines(keepends=True)[:n]
        (folder / f"{name}.tsv").write_text("".join(lines), encoding="utf-8")
    return folder / "train.tsv", folder / "dev.tsv"


GOEMOTIONS = ["--column_names", "text", "labels", "id", "--labels_file", str(SHARED / "go_emotions/original/labels.txt")]


@needs_shared
def test_imdb_single_label_by_split_column(imdb_slice):
    layout = ClassifierConfig(text_column="review", label_column="sentiment", split_column="split")
    train = load_labeled_texts([imdb_slice], layout, split_value="train")
    assert train.labels == ("negative", "positive") and train.problem_type == "single_label"
    assert len(train) == 24 and train.other_split_rows == 16
    assert sorted(np.bincount(train.y())) == [6, 18]
    test = load_labeled_texts([imdb_slice], layout, labels=train.labels, problem_type="single_label", split_value="test")
    assert len(test) == 16 and list(np.bincount(test.y())) == [8, 8]


@needs_shared
def test_dbpedia_indices_are_one_based_into_classes_txt():
    path = SHARED / "dbpedia_14/train_14k.csv"
    data = load_labeled_texts([path], ClassifierConfig(text_column="content", label_column="label", label_index_start=1,
                                                       labels_file=str(SHARED / "dbpedia_14/classes.txt")))
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert data.problem_type == "single_label" and len(data.labels) == 14 and len(data) == len(rows)
    # every row's class name, looked up through the index, is the file's own label_name column
    assert all(data.labels[t[0]] == row["label_name"] for t, row in zip(data.targets, rows))


@needs_shared
def test_goemotions_tsv_id_lists_are_multi_label(goemotions_slices):
    train_path, _ = goemotions_slices
    data = load_labeled_texts([train_path], ClassifierConfig(column_names=["text", "labels", "id"],
                                                             labels_file=str(SHARED / "go_emotions/original/labels.txt")))
    names = (SHARED / "go_emotions/original/labels.txt").read_text().split()
    assert data.problem_type == "multi_label" and data.labels == tuple(names) and len(data) == 48
    with train_path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert [sorted(t) for t in data.targets] == [sorted(int(x) for x in r[1].split(",")) for r in rows]
    assert any(len(t) > 1 for t in data.targets) and data.ids[0] == rows[0][2]
    assert data.texts == [r[0] for r in rows]  # quoted fields with doubled quotes come back as written


@needs_shared
def test_jigsaw_one_hot_columns_and_their_weights():
    path = SHARED / "jigsaw/train_rows0001-0300_with_id.csv"
    data = load_labeled_texts([path], ClassifierConfig(text_column="comment_text", label_columns=JIGSAW_LABELS))
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    y = np.array([[int(r[c]) for c in JIGSAW_LABELS] for r in rows])
    assert data.labels == tuple(JIGSAW_LABELS) and data.problem_type == "multi_label"
    assert (data.y() == y).all() and data.ids[:2] == [rows[0]["id"], rows[1]["id"]]
    pos = y.sum(axis=0)
    expected = np.where(pos > 0, (len(y) - pos) / np.maximum(pos, 1), 1.0)
    assert np.allclose(class_weights(data), expected)
    assert np.allclose(class_weights(data, cap=10.0), np.minimum(expected, 10.0)) and expected.max() > 10


def test_bad_rows_are_listed_with_file_line_and_reason(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["text", "label"], [
        ["good one", "a"], ["", "a"], ["fine", "c"], ["x", "b", "extra"], ["another", "b"], ["by index", "1"],
        ["two", "a,b"], ["far", "7"]])
    layout = ClassifierConfig(label_column="label", labels=["a", "b"], problem_type="single_label")
    data = load_labeled_texts([path], layout)
    assert data.texts == ["good one", "another", "by index"] and data.targets == [[0], [1], [1]]
    reasons = {s["line"]: s["reason"] for s in data.skipped}
    assert set(reasons) == {3, 4, 5, 8, 9} and all(s["file"] == str(path) for s in data.skipped)
    assert "empty text" in reasons[3] and "unknown label 'c'" in reasons[4] and "3 fields" in reasons[5]
    assert "unknown label 'a,b'" in reasons[8] and "outside 0..1" in reasons[9]
    with pytest.raises(RecordError, match=f"{path}:3: empty text"):
        load_labeled_texts([path], layout, bad_records="error")
    # auto reads 'a,b' as a list, so the problem is multi-label and row 8 is two labels
    auto = load_labeled_texts([path], ClassifierConfig(label_column="label", labels=["a", "b"]))
    assert auto.problem_type == "multi_label" and [0, 1] in auto.targets


def test_missing_columns_name_the_file_and_the_column(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["text", "sentiment"], [["hi", "pos"]])
    with pytest.raises(RecordError, match=rf"{path}:1: missing column\(s\) \['label'\]"):
        load_labeled_texts([path], ClassifierConfig(label_column="label"))
    jsonl = tmp_path / "t.jsonl.gz"
    with gzip.open(jsonl, "wt", encoding="utf-8") as f:
        f.write('{"review": "hi", "labels": ["x"]}\n{"review": "yo", "labels": []}\n')
    with pytest.raises(RecordError, match=rf"{jsonl}: missing column\(s\) \['text'\]"):
        load_labeled_texts([jsonl], ClassifierConfig())
    assert len(load_labeled_texts([jsonl], ClassifierConfig(text_column="review", labels=["x"]))) == 2
    tsv = write_csv(tmp_path / "t.tsv", None, [["hi", "0"]], delimiter="\t")
    with pytest.raises(RecordError, match=rf"{tsv}: missing column\(s\) \['labels'\]"):
        load_labeled_texts([tsv], ClassifierConfig(column_names=["text", "label"]))
    with pytest.raises(ConfigError, match="holds label indices"):
        load_labeled_texts([tsv], ClassifierConfig(column_names=["text", "labels"]))


def test_read_table_rows_keeps_raising_without_on_bad(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["text", "label"], [["a", "b"], ["c"]])
    with pytest.raises(RecordError, match=f"{path}:3: row has 1 fields, the header 2"):
        read_table_rows(path, ["text"])
    seen = []
    assert [line for line, _ in read_table_rows(path, ["text"], on_bad=lambda *a: seen.append(a))] == [2]
    assert seen == [(3, "row has 1 fields, the header 2")]


def test_conflicting_label_settings_are_config_errors(capsys):
    assert finetune.main([*RUN, "--data", "x.csv", "--output_dir", "unused", "--label_column", "a",
                          "--label_columns", "b", "c"]) == 2
    assert "label_column" in capsys.readouterr().err
    with pytest.raises(ValueError, match="one source of label names"):
        ClassifierConfig(taxonomy="jigsaw", labels=["a"])


# ---- losses, weights, sampler, thresholds --------------------------------------------------------

def test_weighted_losses_match_a_hand_computation():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.5]])
    y = torch.tensor([0, 1, 1])
    w = torch.tensor([2.0, 0.5])
    nll = [-math.log(math.exp(logits[i, y[i]]) / sum(math.exp(v) for v in logits[i].tolist())) for i in range(3)]
    by_hand = sum(w[y[i]].item() * nll[i] for i in range(3)) / sum(w[y[i]].item() for i in range(3))
    assert classification_loss(logits, y, "single_label", w).item() == pytest.approx(by_hand, rel=1e-6)
    assert classification_loss(logits, y, "single_label").item() == pytest.approx(sum(nll) / 3, rel=1e-6)
    assert by_hand != pytest.approx(sum(nll) / 3, rel=1e-3)

    x = torch.tensor([[1.0, -2.0, 0.5], [-0.5, 0.2, 3.0]])
    t = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    pw = torch.tensor([3.0, 1.0, 0.25])
    sig = torch.sigmoid(x)
    by_hand = -(pw * t * sig.log() + (1 - t) * (1 - sig).log()).mean().item()
    assert classification_loss(x, t, "multi_label", pw).item() == pytest.approx(by_hand, rel=1e-6)
    assert classification_loss(x, t, "multi_label").item() != pytest.approx(by_hand, rel=1e-3)


def _texts(targets, problem_type, labels=("a", "b")) -> LabeledTexts:
    return LabeledTexts([f"text {i}" for i in range(len(targets))], targets, [str(i) for i in range(len(targets))],
                        labels, problem_type)


def test_balanced_weights_and_draw_weights_by_hand():
    single = _texts([[0], [0], [0], [1]], "single_label")
    assert np.allclose(class_weights(single), [4 / (2 * 3), 4 / (2 * 1)])
    assert np.allclose(sample_weights(single), [1 / 3, 1 / 3, 1 / 3, 1])
    multi = _texts([[0], [0], [0, 1], [1], []], "multi_label")
    assert np.allclose(class_weights(multi), [(5 - 3) / 3, (5 - 2) / 2])
    # each row: 1 / count of its rarest label (label 0: 3 rows, label 1: 2); the label-less row is a group of one
    assert np.allclose(sample_weights(multi), [1 / 3, 1 / 3, 1 / 2, 1 / 2, 1])


def test_thresholds_maximise_each_labels_f1():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]])
    p = np.array([[0.9, 0.2, 0.1], [0.4, 0.7, 0.2], [0.35, 0.6, 0.3], [0.1, 0.65, 0.9]])
    # label 0: cutting between 0.4 and 0.35 catches both positives and no negative; label 1: between 0.65
    # and 0.6 likewise; label 2 has no positive and keeps the default
    assert np.allclose(tune_thresholds(y, p), [0.375, 0.625, 0.5])
    # label 0 when one positive scores below a negative: F1 is best (0.8) cutting below both
    assert tune_thresholds(np.array([[1], [0], [1], [0]]), np.array([[0.9], [0.5], [0.3], [0.1]]))[0] == pytest.approx(0.2)


@pytest.fixture(scope="module")
def tiny_bert(minilm):
    """A 1-layer random BERT head on MiniLM's tokenizer: trainer mechanics without the real weights' cost."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(minilm)
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=37, num_labels=2))
    return model, tokenizer


def _trainer(tiny_bert, tmp_path, data, **kwargs):
    from tunelab.training.classify.trainer import build_classifier_trainer
    from tunelab.training.arguments import TrainConfig

    args = TrainConfig(output_dir=str(tmp_path), report_to="none", per_device_train_batch_size=10, seed=3,
                       max_length=16)
    return build_classifier_trainer(tiny_bert[0], tiny_bert[1], data, None, args, 16, **kwargs)


def test_balanced_sampling_refuses_a_second_sampler(tmp_path):
    posts = write_csv(tmp_path / "posts.csv", ["text", "label"], [["good", "a"], ["bad", "b"]])
    with pytest.raises(ConfigError, match="cannot be combined with train_sampling_strategy group_by_length"):
        finetune.finetune([*RUN, "--data", str(posts), "--balanced_sampling", "true",
                           "--train_sampling_strategy", "group_by_length", "--output_dir", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_balanced_sampler_draws_classes_evenly(tiny_bert, tmp_path):
    data = _texts([[0]] * 90 + [[1]] * 10, "single_label")
    plain = _trainer(tiny_bert, tmp_path, data)
    balanced = _trainer(tiny_bert, tmp_path, data, balanced_sampling=True)
    sampler = balanced._get_train_sampler()
    draws = [i for _ in range(20) for i in sampler]  # 20 epochs of one sampler
    assert len(draws) == 2000 and 0.45 < np.mean([data.targets[i][0] for i in draws]) < 0.55
    minority = sum(int(b["labels"].sum()) for b in balanced.get_train_dataloader())
    assert minority > 30  # the training loader itself uses the sampler (about 10 of 100 without it)
    assert sum(int(b["labels"].sum()) for b in plain.get_train_dataloader()) == 10


def test_class_weights_change_the_trainers_loss(tiny_bert, tmp_path):
    data = _texts([[0]] * 6 + [[1]] * 2, "single_label")
    weights = class_weights(data)
    plain, weighted = _trainer(tiny_bert, tmp_path, data), _trainer(tiny_bert, tmp_path, data, loss_weights=weights)
    batch = next(iter(weighted.get_eval_dataloader(weighted.train_dataset)))
    tiny_bert[0].eval()  # no dropout: the same logits for every call
    with torch.no_grad():
        logits = tiny_bert[0](**{k: v for k, v in batch.items() if k != "labels"}).logits
        got = weighted.compute_loss(tiny_bert[0], batch).item()
        assert got == pytest.approx(classification_loss(logits, batch["labels"], "single_label",
                                                        torch.tensor(weights, dtype=torch.float32)).item(), rel=1e-5)
        assert got != pytest.approx(plain.compute_loss(tiny_bert[0], batch).item(), rel=1e-3)


# ---- real MiniLM runs ----------------------------------------------------------------------------

@needs_shared
def test_single_label_imdb_trains_with_metrics_and_scores(imdb_slice, tmp_path):
    out = tmp_path / "imdb"
    summary = finetune.finetune([*RUN, "--data", str(imdb_slice), "--eval_data", str(imdb_slice), "--text_column", "review",
                                 "--label_column", "sentiment", "--split_column", "split", "--class_weighting", "balanced",
                                 "--max_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2",
                                 "--output_dir", str(out)])
    assert summary["problem_type"] == "single_label" and summary["examples"] == 24 and summary["eval_examples"] == 16
    assert summary["class_weights"] == pytest.approx({"negative": 2.0, "positive": 24 / 36})
    assert {"eval_accuracy", "eval_macro_f1", "eval_loss"} <= log_keys(out)
    info = json.loads((out / "tunelab_classifier.json").read_text())
    assert info["labels"] == ["negative", "positive"] and info["problem_type"] == "single_label"
    assert info["thresholds"] is None and info["layout"]["split_column"] == "split"

    model, tokenizer, info = load_classifier(out)
    probs = predict_proba(model, tokenizer, ["Great film.", "Dreadful.", "Fine"], 64)
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)  # softmax over the two classes

    scores = evaluate.score(["--task", "classification", "--model", str(out), "--data", str(imdb_slice),
                             "--output_dir", str(tmp_path / "scores")])
    assert scores["examples"] == 16 and scores["rows_in_other_splits"] == 24  # the test split, as trained
    assert 0 <= scores["accuracy"] <= 1 and set(scores["per_label"]) == {"negative", "positive"}
    rows = [json.loads(x) for x in (tmp_path / "scores/predictions.jsonl").read_text().splitlines()]
    assert all(r["predicted"] == max(r["probs"], key=r["probs"].get) for r in rows)


@needs_shared
def test_multi_label_goemotions_tunes_saves_and_applies_thresholds(goemotions_slices, tmp_path):
    train_path, dev_path = goemotions_slices
    out = tmp_path / "goemo"
    summary = finetune.finetune([*RUN, *GOEMOTIONS, "--data", str(train_path), "--eval_data", str(dev_path),
                                 "--balanced_sampling", "true", "--max_steps", "2", "--eval_strategy", "steps",
                                 "--eval_steps", "2", "--output_dir", str(out)])
    assert summary["problem_type"] == "multi_label" and summary["labels"] == 28 and summary["balanced_sampling"]
    assert {"eval_micro_f1", "eval_macro_f1", "eval_mean_roc_auc"} <= log_keys(out)
    info = json.loads((out / "tunelab_classifier.json").read_text())
    thresholds = info["thresholds"]
    assert info["problem_type"] == "multi_label" and list(thresholds) == info["labels"]
    dev = load_labeled_texts([dev_path], ClassifierConfig(**info["layout"]), labels=tuple(info["labels"]),
                             problem_type="multi_label")
    present = dev.y().sum(axis=0) > 0
    assert all(thresholds[label] == 0.5 for label, p in zip(info["labels"], present) if not p)
    assert any(thresholds[label] != 0.5 for label, p in zip(info["labels"], present) if p)

    model, tokenizer, _ = load_classifier(out)
    assert model.config.problem_type == "multi_label_classification"
    with torch.no_grad():  # 28 sigmoids, not a softmax
        logits = model(**tokenizer(["thanks so much!"], return_tensors="pt")).logits
    assert predict_proba(model, tokenizer, ["thanks so much!"], 64) == pytest.approx(
        torch.sigmoid(logits).numpy(), abs=1e-5)

    tuned = evaluate.score(["--task", "classification", "--model", str(out), "--data", str(dev_path),
                            "--output_dir", str(tmp_path / "tuned")])
    fixed = evaluate.score(["--task", "classification", "--model", str(out), "--data", str(dev_path),
                            "--threshold", "0.5", "--output_dir", str(tmp_path / "fixed")])
    assert tuned["threshold_source"] == "tuned at training" and fixed["threshold_source"] == "given"
    assert tuned["threshold"] == pytest.approx([thresholds[label] for label in info["labels"]])
    assert tuned["examples"] == 24 and fixed["threshold"] == 0.5
    # each label's threshold maximises its F1 on this set, so the mean of those F1s can only go up
    assert tuned["macro"]["f1"] >= fixed["macro"]["f1"] - 1e-9
    assert tuned["macro"]["f1"] > fixed["macro"]["f1"] or tuned["micro"]["f1"] != fixed["micro"]["f1"]
    rows = [json.loads(x) for x in (tmp_path / "tuned/predictions.jsonl").read_text().splitlines()]
    # probs are written to 6 decimals: a row within that rounding of its threshold may read either way
    assert all((k in r["predicted"]) == (p >= thresholds[k]) or abs(p - thresholds[k]) <= 5e-7
               for r in rows for k, p in r["probs"].items())


def test_bad_rows_are_skipped_into_the_run_folder_or_stop_the_run(tmp_path, capsys):
    path = write_csv(tmp_path / "rows.csv", ["text", "label"], [
        ["a fine day", "pos"], ["", "pos"], ["awful", "neg"], ["meh", "maybe"], ["lovely", "pos", "x"], ["bad", "neg"]])
    out = tmp_path / "run"
    summary = finetune.finetune([*RUN, "--data", str(path), "--label_column", "label", "--labels", "neg", "pos",
                                 "--max_steps", "1", "--output_dir", str(out)])
    assert summary["examples"] == 3 and summary["skipped_records"] == 3
    listed = [json.loads(x) for x in (out / "skipped_records.jsonl").read_text().splitlines()]
    assert [(s["file"], s["line"]) for s in listed] == [(str(path), 3), (str(path), 5), (str(path), 6)]
    assert "empty text" in listed[0]["reason"] and "unknown label 'maybe'" in listed[1]["reason"]
    assert finetune.main([*RUN, "--data", str(path), "--label_column", "label", "--labels", "neg", "pos",
                          "--bad_records", "error", "--max_steps", "1", "--output_dir", str(tmp_path / "strict")]) == 2
    assert f"{path}:3: empty text in column 'text'" in capsys.readouterr().err


def test_lora_trains_every_new_head_module_in_full(tmp_path):
    """A BERT checkpoint without a pooler (common in sentence-transformers exports) gets a new random pooler
    under the new classifier: under LoRA it must train in full, not stay a frozen random projection."""
    from transformers import BertConfig, BertModel

    from tunelab.training.classify.modeling import classifier_model

    BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37),
              add_pooling_layer=False).save_pretrained(tmp_path)
    model, _ = classifier_model(str(tmp_path), ("a", "b"), "single_label", finetune.ModelConfig(base=str(tmp_path)))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    for head in ("pooler.dense", "classifier"):
        assert any(f".{head}.modules_to_save." in n for n in trainable), head
    assert any("query.lora_A" in n for n in trainable)
    assert not any(n.endswith("query.base_layer.weight") for n in trainable)


def test_the_heads_biases_start_at_the_training_label_rates(tmp_path):
    """head_bias_init prior: before any step, the head predicts each label's share of the training rows
    (sigmoids for multi_label, a softmax for single_label), under LoRA too; under weighted losses and
    balanced draws, the rates as the loss sees them."""
    from transformers import BertConfig, BertModel

    from tunelab.training.classify.imbalance import label_prior_logits
    from tunelab.training.classify.modeling import classifier_model, set_head_bias

    posts = tmp_path / "posts.jsonl"  # a: 9 of 12 rows, b: 3 of 12, c: none
    posts.write_text("".join(json.dumps({"text": f"post {i}", "labels": labels}) + "\n"
                             for i, labels in enumerate([["a"], ["a", "b"], [], ["a"]] * 3)), encoding="utf-8")
    multi = load_labeled_texts([posts], ClassifierConfig(labels=["a", "b", "c"]))
    assert multi.problem_type == "multi_label"
    assert 1 / (1 + np.exp(-label_prior_logits(multi))) == pytest.approx([0.75, 0.25, 1e-4])
    reviews = write_csv(tmp_path / "reviews.csv", ["text", "label"], [[f"review {i}", "good" if i % 4 else "bad"]
                                                                       for i in range(12)])
    single = load_labeled_texts([reviews], ClassifierConfig(label_column="label"))
    assert np.exp(label_prior_logits(single)) == pytest.approx([0.25, 0.75])  # a softmax of these is the shares

    BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=37)).save_pretrained(tmp_path / "bert")
    bias = label_prior_logits(multi)
    for use_lora in (False, True):
        model, bias_set = classifier_model(str(tmp_path / "bert"), multi.labels, "multi_label",
                                           finetune.ModelConfig(base=str(tmp_path / "bert"), use_lora=use_lora),
                                           head_bias=bias)
        assert bias_set
        heads = {n: p for n, p in model.named_parameters() if n.endswith("classifier.bias")
                 or n.endswith("classifier.modules_to_save.default.bias")}
        assert heads and all(torch.allclose(p, torch.tensor(bias, dtype=p.dtype)) for p in heads.values())

    from transformers import LlamaConfig, LlamaForSequenceClassification

    llama = LlamaForSequenceClassification(LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
                                                       num_attention_heads=2, intermediate_size=37, num_labels=3))
    assert set_head_bias(llama, bias) is None  # a decoder's `score` has no bias: left as built, said so

    out = tmp_path / "run"  # through the stage: a step at learning rate 0 leaves the head as it started
    summary = finetune.finetune([*RUN, "--data", str(posts), "--labels", "a", "b", "c", "--max_steps", "1",
                                 "--learning_rate", "0", "--warmup_steps", "0", "--output_dir", str(out)])
    model, _, _ = load_classifier(out)
    assert summary["head_bias_init"] == "prior"
    assert model.classifier.bias.detach().numpy() == pytest.approx(bias, abs=1e-5)
    # pos_weight = negatives / positives (a: 1/3, b: 3) evens the odds; capped at 2, b keeps 2/3 of even
    absent = np.log(1e-4 / (1 - 1e-4))
    assert label_prior_logits(multi, class_weights(multi)) == pytest.approx([0, 0, absent])
    assert label_prior_logits(multi, class_weights(multi, cap=2.0)) == pytest.approx([0, np.log(2 / 3), absent])
    # balanced draws: 1 / count of a row's rarest label (6 rows of a alone: 1/9, 3 of a+b: 1/3, 3 of none:
    # 1/3; 8/3 in all): a is drawn in (6/9 + 1) / (8/3) = 5/8 of them, b in 3/8
    assert 1 / (1 + np.exp(-label_prior_logits(multi, draw_weights=sample_weights(multi)))) == pytest.approx(
        [5 / 8, 3 / 8, 1e-4])
    assert label_prior_logits(single, class_weights(single)) == pytest.approx(np.log([0.5, 0.5]))
    summary = finetune.finetune([*RUN, "--data", str(posts), "--labels", "a", "b", "c", "--max_steps", "1",
                                 "--learning_rate", "0", "--warmup_steps", "0", "--class_weighting", "balanced",
                                 "--max_class_weight", "2", "--output_dir", str(tmp_path / "weighted")])
    model, _, _ = load_classifier(tmp_path / "weighted")
    assert summary["head_bias_init"] == "prior"
    assert model.classifier.bias.detach().numpy() == pytest.approx([0, np.log(2 / 3), absent], abs=1e-5)


def test_mean_pooling_reads_the_average_of_the_encoders_outputs_and_reloads(minilm, tmp_path):
    """pooling mean: the head reads the masked mean of the token outputs (the sentence embedding
    all-MiniLM-L6-v2 was trained to give), so padding never changes a text's scores; trained (full and
    LoRA) and reloaded through the stages, the folder gives the same probabilities it was saved with."""
    from transformers import AutoModel, AutoTokenizer

    from tunelab.training.classify.modeling import MeanPooledClassifier, classifier_model, load_classifier_base

    model, new = load_classifier_base(minilm, ("a", "b", "c"), with_new_modules=True, pooling="mean")
    assert isinstance(model, MeanPooledClassifier) and new == ["classifier"]
    assert not any(n.startswith("encoder.pooler") for n, _ in model.named_parameters())  # nothing left untrained
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    texts = ["thanks so much!", "this is a much longer sentence with many more words in it"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(minilm)(**tokenizer(texts[:1], return_tensors="pt")).last_hidden_state
        expected = model.classifier(hidden.mean(dim=1))
        alone = model(**tokenizer(texts[:1], return_tensors="pt")).logits
        padded = model(**batch).logits[:1]  # the short text padded to the long one's length
    assert alone == pytest.approx(expected, abs=1e-5) and padded == pytest.approx(alone, abs=1e-5)

    lora, _ = classifier_model(minilm, ("a", "b"), "single_label", finetune.ModelConfig(base=minilm, use_lora=True),
                               pooling="mean")
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert any(".classifier.modules_to_save." in n for n in trainable) and any("query.lora_A" in n for n in trainable)

    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps({"text": f"{word} post {i}", "labels": labels}) + "\n"
                             for i in range(4) for word, labels in (("kind", []), ("rude", ["a"]), ("vile", ["a", "b"]))),
                     encoding="utf-8")
    for use_lora in ("false", "true"):
        out = tmp_path / f"lora_{use_lora}"
        summary = finetune.finetune([*RUN, "--data", str(posts), "--labels", "a", "b", "--max_steps", "2",
                                     "--pooling", "mean", "--use_lora", use_lora, "--output_dir", str(out),
                                     "--activation_checkpointing", "true"])  # on by default on CUDA
        assert summary["pooling"] == "mean"
        info = json.loads((out / "tunelab_classifier.json").read_text())
        assert info["pooling"] == "mean"
        reloaded, tok, _ = load_classifier(out)
        assert isinstance(reloaded.base_model.model if use_lora == "true" else reloaded, MeanPooledClassifier)
        probs = predict_proba(reloaded, tok, texts, 64)
        again = predict_proba(load_classifier(out)[0], tok, texts, 64)
        assert probs.shape == (2, 2) and probs == pytest.approx(again, abs=1e-6)
        scores = evaluate.score(["--task", "classification", "--model", str(out), "--data", str(posts),
                                 "--output_dir", str(tmp_path / f"scores_{use_lora}"), "--plots", "false"])
        assert scores["examples"] == 12
    with pytest.raises(ConfigError, match="pooling must be one of model, mean"):
        finetune.finetune([*RUN, "--data", str(posts), "--labels", "a", "b", "--pooling", "cls",
                           "--output_dir", str(tmp_path / "bad")])


def test_head_tail_truncation_keeps_the_start_and_the_end(minilm):
    from transformers import AutoTokenizer

    from tunelab.training.classify.data import encode_texts

    tokenizer = AutoTokenizer.from_pretrained(minilm)
    words = [f"w{i}" for i in range(300)]
    text = " ".join(words)
    tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = encode_texts(tokenizer, [text, "short one"], 34, "head_tail")["input_ids"]
    assert len(ids[0]) == 34 and ids[0][0] == tokenizer.cls_token_id and ids[0][-1] == tokenizer.sep_token_id
    assert ids[0][1:9] == tokens[:8] and ids[0][9:-1] == tokens[-24:]  # room 32: a quarter head, the rest tail
    assert ids[1] == tokenizer("short one")["input_ids"]
    assert encode_texts(tokenizer, [text], 34, "head")["input_ids"][0][1:-1] == tokens[:32]


@needs_shared
def test_held_out_test_split_is_scored_beside_a_tfidf_baseline(tmp_path, capsys):
    data = tmp_path / "jigsaw.csv"
    data.write_bytes((SHARED / "jigsaw/train_rows0001-3000_noid.csv").read_bytes())
    out = tmp_path / "jigsaw"
    summary = finetune.finetune([*RUN, "--data", str(data), "--text_column", "comment_text", "--label_columns",
                                 *JIGSAW_LABELS, "--eval_split", "0.1",
                                 "--test_split", "0.2", "--train_subset", "300", "--truncation", "head_tail",
                                 "--max_steps", "2", "--output_dir", str(out)])
    assert (summary["examples"], summary["eval_examples"], summary["test_examples"], summary["unused_examples"]) == \
        (300, 300, 600, 1800)
    splits = json.loads((out / "data_splits.json").read_text())["splits"]
    rows = {name: set(s["positions"][str(data)]) for name, s in splits.items()}
    assert sum(map(len, rows.values())) == 3000 and len(set().union(*rows.values())) == 3000  # disjoint, complete
    threat = load_labeled_texts([data], ClassifierConfig(label_columns=JIGSAW_LABELS, text_column="comment_text"))
    threats = {at for (_, at), t in zip(threat.origins, threat.targets) if 3 in t}
    assert len(threats & rows["test"]) == round(14 * 0.2)  # stratified: the 14 threats split as the rows
    assert json.loads((out / "tunelab_classifier.json").read_text())["truncation"] == "head_tail"

    scores = evaluate.score(["--task", "classification", "--model", str(out), "--split", "test", "--tfidf_baseline",
                             "true", "--bootstrap_resamples", "200", "--output_dir", str(tmp_path / "scores")])
    assert scores["examples"] == 600 and scores["split"] == "test" and scores["threshold_source"] == "tuned at training"
    ci = scores["intervals"]["mean_roc_auc"]
    assert ci["ci_low"] <= ci["value"] <= ci["ci_high"] and ci["value"] == pytest.approx(scores["mean_roc_auc"])
    baseline = scores["tfidf_baseline"]
    assert baseline["train_rows"] == 300 and baseline["examples"] == 600
    assert baseline["threshold_source"] == "tuned on the classifier run's eval split"
    assert set(baseline["classifier_minus_baseline"]) == {"subset_accuracy", "micro_f1", "macro_f1", "mean_roc_auc"}
    delta = baseline["classifier_minus_baseline"]["mean_roc_auc"]
    assert delta["delta"] == pytest.approx(scores["mean_roc_auc"] - baseline["mean_roc_auc"])

    with data.open("a", encoding="utf-8") as f:  # the training file changed: its rows cannot be recovered
        f.write('"one more comment",0,0,0,0,0,0\n')
    with pytest.raises(ConfigError, match="changed since"):
        evaluate.score(["--task", "classification", "--model", str(out), "--split", "test",
                        "--output_dir", str(tmp_path / "again")])


def test_an_overwritten_run_keeps_its_own_data_splits(tmp_path):
    # the earlier run's files are cleared before the new run writes any, data_splits.json included
    posts = write_csv(tmp_path / "posts.csv", ["text", "label"], [[f"{w} post {i}", w] for i in range(8)
                                                                  for w in ("good", "bad")])
    out = tmp_path / "run"
    for seed in ("0", "1"):
        finetune.finetune([*RUN, "--data", str(posts), "--label_column", "label", "--eval_split", "0.25",
                           "--max_steps", "1", "--seed", seed,
                           "--output_dir", str(out), *(["--overwrite", "true"] if seed == "1" else [])])
    assert json.loads((out / "data_splits.json").read_text())["seed"] == 1
    assert evaluate.score(["--task", "classification", "--model", str(out), "--split", "eval",
                           "--output_dir", str(tmp_path / "scores")])["examples"] == 4


def test_kaggle_jigsaw_layout_with_ids_and_a_separate_labels_file(tmp_path):
    train = write_csv(tmp_path / "train.csv", ["id", "comment_text", *JIGSAW_LABELS],
                      [["a1", "you are awful", 1, 0, 0, 0, 1, 0], ["a2", "nice edit", 0, 0, 0, 0, 0, 0]])
    test = write_csv(tmp_path / "test.csv", ["id", "comment_text"],
                     [["t1", "go away idiot"], ["t2", "thanks"], ["t3", "unscored one"], ["t4", "no labels row"]])
    labels = write_csv(tmp_path / "test_labels.csv", ["id", *JIGSAW_LABELS],
                       [["t2", 0, 0, 0, 0, 0, 0], ["t1", 1, 0, 0, 0, 1, 0], ["t3", -1, -1, -1, -1, -1, -1]])
    layout = ClassifierConfig(text_column="comment_text", label_columns=JIGSAW_LABELS)
    assert load_labeled_texts([train], layout).ids == ["a1", "a2"]  # Kaggle's train.csv: ids kept
    data = load_labeled_texts([f"{test}+{labels}"], layout)
    assert data.ids == ["t1", "t2"] and data.targets == [[0, 4], []]
    reasons = {s["id"]: s["reason"] for s in data.skipped}
    assert "-1 (unscored" in reasons["t3"] and reasons["t4"] == "test.csv: id 't4' is not in test_labels.csv"
    assert all(s["file"] == f"{test}+{labels}" for s in data.skipped)
    with pytest.raises(ConfigError, match="needs both files; missing"):
        load_labeled_texts([f"{test}+{tmp_path / 'absent.csv'}"], layout)


def test_a_dataset_folder_or_hub_id_loads_like_a_file(tmp_path):
    folder = tmp_path / "imdb_like"
    folder.mkdir()
    rows = [{"text": "loved it", "label": 1}, {"text": "hated it", "label": 0}, {"text": "", "label": 1}]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    layout = ClassifierConfig(label_column="label", labels=["negative", "positive"])
    data = load_labeled_texts([folder], layout)
    assert data.texts == ["loved it", "hated it"] and data.targets == [[1], [0]] and data.problem_type == "single_label"
    assert data.skipped[0]["line"] == 3 and "empty text" in data.skipped[0]["reason"]
    with pytest.raises(RecordError, match=r"missing column\(s\) \['sentiment'\]"):
        load_labeled_texts([folder], ClassifierConfig(label_column="sentiment", labels=["negative", "positive"]))
    with pytest.raises(RecordError, match="cannot load the dataset"):  # offline here: a hub id fails by name
        load_labeled_texts(["no-such-org/no-such-dataset:test"], layout)


def test_split_rows_are_found_again_by_position_and_checked_by_digest(tmp_path):
    from tunelab.training.classify.held_out import load_split_rows, write_data_splits

    layout = ClassifierConfig(labels=["a", "b"], problem_type="single_label")
    records = [{"text": f"text {i}", "labels": ["b" if i % 2 else "a"]} for i in range(6)]
    data = tmp_path / "rows.json"  # one line for every row: line numbers cannot tell them apart
    data.write_text(json.dumps(records), encoding="utf-8")
    folder = tmp_path / "dataset"  # a dataset folder (as a hub id): no file hash to compare
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    for source, run in ((data, tmp_path / "run_file"), (folder, tmp_path / "run_folder")):
        run.mkdir()
        rows = load_labeled_texts([source], layout)
        write_data_splits(run, 0, {"train": rows.subset([0, 2, 3, 5]), "test": rows.subset([1, 4]), "eval": None},
                          {"data": [source]})
        test, files = load_split_rows(run, "test", layout, ("a", "b"), "single_label")
        assert test.texts == ["text 1", "text 4"] and files == [source]
    records[4]["text"] = "changed"  # same count, same labels: only the digest of the rows tells
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    with pytest.raises(ConfigError, match="are not the 2 recorded at training"):
        load_split_rows(tmp_path / "run_folder", "test", layout, ("a", "b"), "single_label")


def test_held_out_key_meets_copies_that_differ_in_spacing_punctuation_and_accents():
    from tunelab.training.classify.held_out import held_out_key

    # one DBpedia abstract as the 5k sample and the 14k sample spell it
    five_k = "Witowice Dolne [vʲitɔˈvʲit͡sɛ ˈdɔlnɛ] is a village in Gmina Łososina Dolna. It lies 5 kilometres (3 mi) north."
    fourteen_k = "Witowice Dolne [ vitvits dln ] is a village in Gmina ososina Dolna .\tIt lies 5 kilometres ( 3 mi ) north ."
    assert held_out_key(five_k) == held_out_key(fourteen_k)
    assert held_out_key(five_k) != held_out_key(five_k.replace("5 kilometres", "6 kilometres"))
    assert held_out_key("Привет, мир!") == held_out_key("привет мир") != held_out_key("Пока, мир!")  # no ASCII at all


@needs_shared
def test_extra_train_data_joins_training_only_and_never_repeats_a_held_out_row(tmp_path):
    """The DBpedia recipe's shape: a split sample plus a second file for training alone. The second file here
    holds a reformatted copy of every sample row (as the 14k file spells them) and 50 rows of its own: copies
    of eval and test rows are left out, copies of training rows stay."""
    sample = SHARED / "dbpedia_14/dhim_val_5k.csv"
    with sample.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header, rows = next(reader), [r for _, r in zip(range(200), reader)]
    with (SHARED / "dbpedia_14/train_14k.csv").open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        own = [r for _, r in zip(range(50), reader)]

    def as_14k(text: str) -> str:
        spaced = text.encode("ascii", "ignore").decode()
        for mark in "().,":
            spaced = spaced.replace(mark, f" {mark} ")
        return " ".join(spaced.split())

    data = write_csv(tmp_path / "sample.csv", header, rows)
    extra = write_csv(tmp_path / "extra.csv", header, [[r[0], r[1], as_14k(r[2])] for r in rows] + own)
    out = tmp_path / "dbpedia"
    summary = finetune.finetune([*RUN, "--data", str(data), "--extra_train_data", str(extra), "--text_column", "content",
                                 "--label_column", "label", "--label_index_start", "1", "--labels_file",
                                 str(SHARED / "dbpedia_14/classes.txt"), "--eval_split", "0.1", "--test_split", "0.2",
                                 "--max_length", "32", "--max_steps", "1", "--output_dir", str(out)])
    assert (summary["eval_examples"], summary["test_examples"]) == (20, 40)
    assert summary["extra_train_held_out_copies"] == 60 and summary["extra_train_examples"] == 140 + 50
    assert summary["examples"] == 140 + 190
    splits = json.loads((out / "data_splits.json").read_text())["splits"]
    held_out = set(splits["eval"]["positions"][str(data)]) | set(splits["test"]["positions"][str(data)])
    assert str(extra) not in splits["eval"]["positions"] and str(extra) not in splits["test"]["positions"]
    kept_copies = {at for at in splits["train"]["positions"][str(extra)] if at < 200}
    assert kept_copies == set(range(200)) - held_out  # the copy at position i is sample row i
    skipped = [json.loads(line) for line in (out / "skipped_records.jsonl").read_text().splitlines()]
    assert len(skipped) == 60 and all(s["file"] == str(extra) for s in skipped)
    assert {s["line"] - 2 for s in skipped} == held_out  # a header line, then row 0 on line 2
    assert all(s["reason"].startswith(("extra_train_data row repeats eval row",
                                       "extra_train_data row repeats test row")) for s in skipped)

    scores = evaluate.score(["--task", "classification", "--model", str(out), "--split", "test", "--tfidf_baseline",
                             "true", "--bootstrap_resamples", "50", "--output_dir", str(tmp_path / "scores")])
    assert scores["examples"] == 40 and scores["tfidf_baseline"]["train_rows"] == 330  # the same training rows

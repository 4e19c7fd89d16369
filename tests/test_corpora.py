"""Moderation corpora mapped onto one taxonomy: readers per layout, mapping, splits, the generate task `corpora`."""

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from tunelab.generation import corpora
from tunelab.errors import ConfigError, RecordError
from tunelab.stages import generate
from tunelab.taxonomy import load_taxonomy
from tunelab.training.classify.config import ClassifierConfig
from tunelab.training.classify.data import load_labeled_texts

SHARED = Path(__file__).parents[1] / ".." / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not present")
JIGSAW = list(corpora.JIGSAW_LABELS)


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy("moderation")


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def flags(*names):
    return [int(c in names) for c in JIGSAW]


def hatexplain_post(post_id, votes, text="some words here"):
    return {"post_id": post_id, "annotators": [{"label": v, "annotator_id": i, "target": ["None"]}
                                               for i, v in enumerate(votes)],
            "rationales": [], "post_tokens": text.split()}


def read(name, files, taxonomy):
    return corpora.read_corpus(name, [corpora.CorpusFile(*f) if isinstance(f, tuple) else corpora.CorpusFile(f)
                                      for f in files], taxonomy)


# ---- the taxonomy and its declared mapping ------------------------------------------------------

def test_moderation_taxonomy_declares_labels_and_every_source(taxonomy):
    assert taxonomy.labels == ("offensive", "identity_hate") and taxonomy.none_label == "none"
    assert all(taxonomy.descriptions[label] for label in taxonomy.labels)
    sources = corpora.corpus_sources(taxonomy)
    assert sources["davidson"].map["hate_speech"] == ("offensive", "identity_hate")
    assert sources["davidson"].map["neither"] == ()
    assert sources["jigsaw"].map["identity_hate"] == ("offensive", "identity_hate")
    assert {sources["jigsaw"].map[c] for c in JIGSAW if c != "identity_hate"} == {("offensive",)}
    assert sources["hatexplain"].skip == {"undecided": "no majority among the annotators"}
    assert load_taxonomy("jigsaw").sources == {}  # taxonomies without sources load as before


def test_a_mapping_onto_a_label_outside_the_taxonomy_is_refused(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("labels: [offensive]\nsources:\n  davidson:\n    map: {hate_speech: [hateful], "
                    "offensive_language: offensive, neither: none}\n")
    with pytest.raises(ConfigError, match=r"'hate_speech' maps to \['hateful'\], not labels"):
        load_taxonomy(path)


def test_a_source_that_leaves_a_label_of_its_reader_unmapped_is_refused(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("labels: [offensive]\nsources:\n  hatexplain:\n    map: {hatespeech: offensive, "
                    "offensive: offensive, normal: none}\n")
    with pytest.raises(ConfigError, match=r"source 'hatexplain' does not map its label\(s\) \['undecided'\]"):
        corpora.corpus_sources(load_taxonomy(path))


# ---- readers -----------------------------------------------------------------------------------------

def test_jigsaw_sample_layout_maps_any_label_to_offensive(tmp_path, taxonomy):
    path = write_csv(tmp_path / "sample.csv", ["comment_text", *JIGSAW], [
        ["fine comment", *flags()], ["you idiot", *flags("toxic", "insult")],
        ["slur against a group", *flags("toxic", "identity_hate")], ["   ", *flags("toxic")],
        ["odd cell", "2", 0, 0, 0, 0, 0]])
    corpus = read("jigsaw", [path], taxonomy)
    assert [(r["id"], r["labels"], r["source_label"]) for r in corpus.records] == [
        ("jigsaw:sample.csv:2", [], "none"), ("jigsaw:sample.csv:3", ["offensive"], "toxic,insult"),
        ("jigsaw:sample.csv:4", ["offensive", "identity_hate"], "toxic,identity_hate")]
    assert [(Path(s["file"]).name, s["line"], s["reason"]) for s in corpus.skipped] == [
        ("sample.csv", 5, corpora.EMPTY_TEXT), ("sample.csv", 6, corpora.BAD_ROW)]


def test_jigsaw_kaggle_test_joins_labels_by_id_and_leaves_out_unscored_rows(tmp_path, taxonomy):
    text = write_csv(tmp_path / "test.csv", ["id", "comment_text"], [
        ["a1", "scored and clean"], ["b2", "never scored"], ["c3", "scored and obscene"], ["d4", "no labels row"]])
    # test_labels.csv in another order: the join is by id, not by position
    labels = write_csv(tmp_path / "test_labels.csv", ["id", *JIGSAW], [
        ["c3", *flags("obscene")], ["b2", *[-1] * 6], ["a1", *flags()], ["zz", *flags("toxic")]])
    corpus = read("jigsaw", [(text, labels)], taxonomy)
    assert [(r["id"], r["text"], r["labels"]) for r in corpus.records] == [
        ("jigsaw:a1", "scored and clean", []), ("jigsaw:c3", "scored and obscene", ["offensive"])]
    assert [(Path(s["file"]).name, s["line"], s["id"], s["reason"]) for s in corpus.skipped] == [
        ("test_labels.csv", 3, "jigsaw:b2", corpora.UNSCORED),
        ("test.csv", 5, "jigsaw:d4", corpora.NO_LABELS_ROW),
        ("test_labels.csv", 5, "jigsaw:zz", corpora.NO_TEXT_ROW)]


def test_jigsaw_kaggle_train_layout_keeps_ids(tmp_path, taxonomy):
    path = write_csv(tmp_path / "train.csv", ["id", "comment_text", *JIGSAW], [
        ["0000997932d777bf", "Explanation\nwhy the edits", *flags()], ["00a", "threatening words", *flags("threat")]])
    corpus = read("jigsaw", [path], taxonomy)
    assert [(r["id"], r["labels"]) for r in corpus.records] == [("jigsaw:0000997932d777bf", []),
                                                               ("jigsaw:00a", ["offensive"])]


def test_kaggle_test_csv_without_its_labels_file_says_how_to_give_it(tmp_path, taxonomy):
    text = write_csv(tmp_path / "test.csv", ["id", "comment_text"], [["a1", "hello"]])
    with pytest.raises(RecordError, match=r"test\.csv:1: missing column\(s\).*test\.csv\+test_labels\.csv"):
        read("jigsaw", [text], taxonomy)


def test_davidson_hate_gets_both_labels(tmp_path, taxonomy):
    path = write_csv(tmp_path / "labeled_data.csv", ["", "count", "hate_speech", "offensive_language", "neither",
                                                     "class", "tweet"], [
        [0, 3, 0, 0, 3, 2, "nice weather today"], [1, 3, 0, 3, 0, 1, "rude tweet"], [2, 3, 3, 0, 0, 0, "hateful tweet"],
        [3, 3, 0, 0, 3, 7, "class out of range"], [4, 3, 0, 0, 3, 2, ""]])
    corpus = read("davidson", [path], taxonomy)
    assert [(r["id"], r["labels"], r["source_label"]) for r in corpus.records] == [
        ("davidson:0", [], "neither"), ("davidson:1", ["offensive"], "offensive_language"),
        ("davidson:2", ["offensive", "identity_hate"], "hate_speech")]
    assert [(s["line"], s["reason"]) for s in corpus.skipped] == [(5, corpora.UNKNOWN_LABEL), (6, corpora.EMPTY_TEXT)]


def test_hatexplain_majority_vote_no_majority_and_post_id_dedup(tmp_path, taxonomy):
    val = write_jsonl(tmp_path / "val.jsonl", [
        hatexplain_post("1_twitter", ["hatespeech", "hatespeech", "offensive"], "they are vermin"),
        hatexplain_post("2_gab", ["normal", "offensive", "hatespeech"], "split vote"),
        hatexplain_post("3_gab", ["offensive", "normal", "offensive"], "what a jerk"),
        hatexplain_post("4_gab", ["normal", "spam", "normal"], "odd vote")])
    # The subset's own majority_label is the first annotator's where all three differ: it must be recounted.
    subset = write_csv(tmp_path / "subset.csv", ["post_id", "text", "text_length", "label_1", "label_2", "label_3",
                                                 "majority_label", "agreement_type"], [
        ["3_gab", "what a jerk", 3, "offensive", "normal", "offensive", "offensive", "Partial"],
        ["5_twitter", "three ways", 2, "hatespeech", "offensive", "normal", "hatespeech", "None"],
        ["6_twitter", "plain post", 2, "normal", "normal", "offensive", "normal", "Partial"]])
    corpus = read("hatexplain", [val, subset], taxonomy)
    assert [(r["id"], r["text"], r["labels"], r["source_label"]) for r in corpus.records] == [
        ("hatexplain:1_twitter", "they are vermin", ["offensive", "identity_hate"], "hatespeech"),
        ("hatexplain:3_gab", "what a jerk", ["offensive"], "offensive"),
        ("hatexplain:6_twitter", "plain post", [], "normal")]
    assert [(Path(s["file"]).name, s["line"], s["id"], s["reason"]) for s in corpus.skipped] == [
        ("val.jsonl", 2, "hatexplain:2_gab", "no majority among the annotators"),
        ("val.jsonl", 4, "hatexplain:4_gab", corpora.UNKNOWN_LABEL),
        ("subset.csv", 2, "hatexplain:3_gab", corpora.DUPLICATE_ID),
        ("subset.csv", 3, "hatexplain:5_twitter", "no majority among the annotators")]
    assert "annotators chose ['normal', 'offensive', 'hatespeech']" in corpus.skipped[0]["detail"]


def test_a_missing_column_or_unreadable_file_names_the_file(tmp_path, taxonomy):
    path = write_csv(tmp_path / "labeled_data.csv", ["count", "class", "text"], [[3, 0, "hi"]])
    with pytest.raises(RecordError, match=r"labeled_data\.csv:1: missing column\(s\) \['tweet'\]"):
        read("davidson", [path], taxonomy)
    broken = tmp_path / "val.jsonl"
    broken.write_text(json.dumps(hatexplain_post("1", ["normal"] * 3)) + "\n{not json\n")
    with pytest.raises(RecordError, match=r"val\.jsonl:2: invalid JSON"):
        read("hatexplain", [broken], taxonomy)


# ---- de-duplication, cap and splits ----------------------------------------------------------------

def synthetic_records(n_hate=10, n_offensive=40, n_none=50):
    labels = [["offensive", "identity_hate"]] * n_hate + [["offensive"]] * n_offensive + [[]] * n_none
    return [{"id": f"c:{i}", "text": f"post number {i}", "labels": list(ls), "corpus": "c", "source_label": "x"}
            for i, ls in enumerate(labels)]


def test_splits_are_disjoint_stratified_and_seeded(taxonomy):
    records = synthetic_records()
    splits = corpora.split_records(records, (0.7, 0.1, 0.2), taxonomy, seed=3)
    ids = [{r["id"] for r in rows} for rows in splits.values()]
    assert sum(map(len, ids)) == len(records) == len(set().union(*ids))  # disjoint, nothing lost
    shares = {split: Counter(tuple(r["labels"]) for r in rows) for split, rows in splits.items()}
    assert shares["train"] == {("offensive", "identity_hate"): 7, ("offensive",): 28, (): 35}
    assert shares["dev"] == {("offensive", "identity_hate"): 1, ("offensive",): 4, (): 5}
    assert shares["test"] == {("offensive", "identity_hate"): 2, ("offensive",): 8, (): 10}
    again = corpora.split_records(records, (0.7, 0.1, 0.2), taxonomy, seed=3)
    other = corpora.split_records(records, (0.7, 0.1, 0.2), taxonomy, seed=4)
    assert again == splits and other["test"] != splits["test"]


def test_the_cap_is_a_seeded_stratified_sample(taxonomy):
    records = synthetic_records(n_hate=20, n_offensive=80, n_none=100)
    capped = corpora.cap_rows(records, 50, taxonomy, seed=0)
    assert len(capped) == 50
    assert Counter(len(r["labels"]) for r in capped) == {2: 5, 1: 20, 0: 25}
    assert capped == corpora.cap_rows(records, 50, taxonomy, seed=0) != corpora.cap_rows(records, 50, taxonomy, seed=1)
    assert corpora.cap_rows(records, 0, taxonomy, seed=0) is records  # 0: no cap


def test_duplicate_texts_are_dropped_and_listed(tmp_path, taxonomy):
    path = write_csv(tmp_path / "d.csv", ["", "class", "tweet"], [
        [0, 1, "RT you are a clown!"], [1, 2, "hello there"], [2, 0, "rt YOU are a clown"]])
    corpus = read("davidson", [path], taxonomy)
    assert corpora.drop_duplicate_texts(corpus) == 1
    assert [r["id"] for r in corpus.records] == ["davidson:0", "davidson:1"]
    assert corpus.skipped == [{"corpus": "davidson", "file": str(path), "line": 4, "id": "davidson:2",
                               "reason": corpora.DUPLICATE_TEXT, "duplicate_of": "davidson:0",
                               "detail": "labels differ: ['offensive', 'identity_hate'] here, ['offensive'] kept"}]


# ---- config entries ----------------------------------------------------------------------------------

def test_entries_name_a_declared_source_and_existing_files(tmp_path, taxonomy):
    path = write_csv(tmp_path / "d.csv", ["class", "tweet"], [[1, "x"]])
    with pytest.raises(ConfigError, match=r"corpus 'reddit' is not a source that taxonomy 'moderation' maps"):
        corpora.parse_corpus_entries([f"reddit={path}"], taxonomy)
    with pytest.raises(ConfigError, match=r"taxonomy 'jigsaw' .* declares no sources"):
        corpora.parse_corpus_entries([f"jigsaw={path}"], load_taxonomy("jigsaw"))
    with pytest.raises(RecordError, match=r"nope\.csv: file not found \(corpora entry 'davidson="):
        corpora.parse_corpus_entries([f"davidson={tmp_path / 'nope.csv'}"], taxonomy)
    with pytest.raises(ConfigError, match="must be name=path"):
        corpora.parse_corpus_entries([str(path)], taxonomy)
    with pytest.raises(ConfigError, match="takes no labels file"):
        corpora.parse_corpus_entries([f"davidson={path}+{path}"], taxonomy)
    files = corpora.parse_corpus_entries([f"davidson={path}", f"jigsaw={path}+{path}"], taxonomy)
    assert files == {"davidson": [corpora.CorpusFile(path)], "jigsaw": [corpora.CorpusFile(path, path)]}


# ---- the generate task end to end ------------------------------------------------------------------------

@pytest.fixture
def three_corpora(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    j_rows = [[f"j{i}", f"wiki comment {i}", *flags(*(["toxic"] if i % 4 == 0 else []),
                                                   *(["identity_hate"] if i % 10 == 0 else []))] for i in range(40)]
    write_csv(src / "test.csv", ["id", "comment_text"], [r[:2] for r in j_rows] + [["unscored", "not scored"]])
    write_csv(src / "test_labels.csv", ["id", *JIGSAW], [[r[0], *r[2:]] for r in j_rows] + [["unscored", *[-1] * 6]])
    write_csv(src / "labeled_data.csv", ["", "count", "hate_speech", "offensive_language", "neither", "class", "tweet"],
              [[i, 3, 0, 0, 0, i % 3, f"tweet number {i}"] for i in range(30)] + [[30, 3, 0, 0, 0, 1, "tweet number 0"]])
    write_jsonl(src / "val.jsonl", [hatexplain_post(f"{i}_gab", [("hatespeech", "offensive", "normal")[i % 3]] * 2
                                                    + ["normal"], f"gab post {i}") for i in range(30)]
                + [hatexplain_post("x_gab", ["hatespeech", "offensive", "normal"], "undecided post")])
    return src


def corpora_argv(src, out, *extra):
    return ["--tasks", "corpora", "--output_dir", str(out), "--corpora", f"jigsaw={src}/test.csv+{src}/test_labels.csv",
            f"davidson={src}/labeled_data.csv", f"hatexplain={src}/val.jsonl", *extra]


def test_generate_corpora_writes_splits_the_classifier_reads(tmp_path, three_corpora):
    out = tmp_path / "out"
    stats = generate.generate(corpora_argv(three_corpora, out))
    folder = out / "corpora"
    names = {f"{c}_{s}.jsonl" for c in ("jigsaw", "davidson", "hatexplain") for s in corpora.SPLITS}
    assert {p.name for p in folder.iterdir()} == names | {"skipped.jsonl", "summary.json"}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["corpora"]["jigsaw"]["rows"] == {"train": 28, "dev": 4, "test": 8}
    assert summary["corpora"]["davidson"]["skipped"] == {corpora.DUPLICATE_TEXT: 1}
    assert summary["corpora"]["hatexplain"]["skipped"] == {"no majority among the annotators": 1}
    assert summary["corpora"]["jigsaw"]["skipped"] == {corpora.UNSCORED: 1}
    assert summary["corpora"]["davidson"]["labels"]["test"] == {"offensive": 4, "identity_hate": 2, "none": 2}
    assert summary["mapping"]["davidson"]["map"]["hate_speech"] == ["offensive", "identity_hate"]
    assert stats["corpora"]["hatexplain"]["rows"] == {"train": 21, "dev": 3, "test": 6}
    skipped = read_jsonl(folder / "skipped.jsonl")
    assert {(Path(s["file"]).name, s["line"], s["reason"]) for s in skipped} == {
        ("test_labels.csv", 42, corpora.UNSCORED), ("labeled_data.csv", 32, corpora.DUPLICATE_TEXT),
        ("val.jsonl", 31, "no majority among the annotators")}
    train = read_jsonl(folder / "davidson_train.jsonl")
    assert set(train[0]) == {"id", "text", "labels", "corpus", "source_label"}
    for corpus in ("jigsaw", "davidson", "hatexplain"):  # splits of a corpus share no text
        texts = [{r["text"] for r in read_jsonl(folder / f"{corpus}_{s}.jsonl")} for s in corpora.SPLITS]
        assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    data = load_labeled_texts(sorted(folder.glob("*_train.jsonl")), ClassifierConfig(taxonomy="moderation"),
                              bad_records="error")
    assert data.labels == ("offensive", "identity_hate") and data.problem_type == "multi_label" and len(data) == 70
    provenance = json.loads((out / "provenance.json").read_text())
    hashed = {v.split(" sha256:")[0] for v in provenance["inputs"].values() if " sha256:" in v}
    assert {Path(p).name for p in hashed} == {"test.csv", "test_labels.csv", "labeled_data.csv", "val.jsonl",
                                               "moderation.yaml"}
    assert "corpora" in (out / "config.yaml").read_text()


def test_same_seed_same_files_other_seed_other_split(tmp_path, three_corpora):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        generate.generate(corpora_argv(three_corpora, tmp_path / name, "--seed", str(seed)))
        runs[name] = {p.name: p.read_bytes() for p in (tmp_path / name / "corpora").glob("*.jsonl")}
    assert runs["a"] == runs["b"]
    assert runs["a"]["davidson_test.jsonl"] != runs["c"]["davidson_test.jsonl"]


def test_bad_corpora_settings_stop_before_the_output_folder_exists(tmp_path, three_corpora, capsys):
    out = tmp_path / "out"
    assert generate.main(corpora_argv(three_corpora, out, "--corpora", "gab=x.csv")) == 2
    assert "corpus 'gab' is not a source that taxonomy 'moderation' maps" in capsys.readouterr().err
    assert generate.main(corpora_argv(three_corpora, out, "--corpora_split_fractions", "0.8", "0.3", "0.1")) == 2
    assert "three positive fractions" in capsys.readouterr().err
    bad = write_csv(tmp_path / "bad.csv", ["", "class", "text"], [[0, 1, "x"]])
    assert generate.main(corpora_argv(three_corpora, out, "--corpora", f"davidson={bad}")) == 2
    assert f"{bad}:1: missing column(s) ['tweet']" in capsys.readouterr().err
    assert not out.exists()


# ---- the real files in ../shared/data ---------------------------------------------------------------------

@needs_shared
def test_real_jigsaw_files(taxonomy):
    sample = read("jigsaw", [SHARED / "jigsaw/train_rows0001-3000_noid.csv"], taxonomy)
    assert len(sample.records) == 3000 and not sample.skipped
    assert Counter(label for r in sample.records for label in r["labels"]) == {"offensive": 322, "identity_hate": 32}
    with_ids = read("jigsaw", [SHARED / "jigsaw/train_rows0001-0300_with_id.csv"], taxonomy)
    assert len(with_ids.records) == 300 and with_ids.records[0]["id"] == "jigsaw:0000997932d777bf"


@needs_shared
def test_real_davidson_file(taxonomy):
    corpus = read("davidson", [SHARED / "davidson/labeled_data.csv"], taxonomy)
    assert len(corpus.records) == 24783 and not corpus.skipped
    assert Counter(r["source_label"] for r in corpus.records) == {"offensive_language": 19190, "neither": 4163,
                                                                 "hate_speech": 1430}
    assert all(r["labels"] == ["offensive", "identity_hate"] for r in corpus.records if r["source_label"] == "hate_speech")


@needs_shared
def test_real_hatexplain_files(taxonomy):
    folder = SHARED / "hatexplain"
    corpus = read("hatexplain", [folder / "hatexplain_val.jsonl", folder / "hatexplain_disagreement_subset_gorawit.csv"],
                  taxonomy)
    reasons = Counter(s["reason"] for s in corpus.skipped)
    # val: 1,922 posts, all with a majority; the subset: 10,303 posts, 939 of them val posts, 919 without a majority
    assert reasons == {corpora.DUPLICATE_ID: 939, "no majority among the annotators": 919}
    assert len(corpus.records) == 1922 + 10303 - 939 - 919
    assert corpus.records[0]["text"] == ("me getting books from the library about queer cowboys and homoeroticism in "
                                         "cinema instead of anything useful for my thesis")

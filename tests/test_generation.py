import json
import csv

import pytest

from fakes import CannedTeacher, numbered_answer
from tunelab.errors import RecordError
from tunelab.generation import moderation as mod
from tunelab.generation.dedup import drop_exact_duplicates, normalize
from tunelab.generation.novelty import NoveltyFilter
from tunelab.generation import self_instruct as si
from tunelab.prompts import load_template
from tunelab.taxonomy import load_taxonomy
from tunelab.teachers import RequestCache, SamplingParams, TeacherRequest, run_requests

GOOD = [
    ("Explain why the sky looks blue during the day.", "", "Sunlight scatters off air molecules."),
    ("Classify the sentiment of the following movie review.", "I loved it.", "Positive"),
    ("Draw a picture of a cat sitting on a mat.", "", "..."),  # blacklisted: image output
    ("Sort these numbers?", "3, 1, 2", "1, 2, 3"),  # too short
]


def test_parse_keeps_valid_tasks_and_names_each_rejection():
    kept, rejected = si.parse_tasks(numbered_answer(4, GOOD, cut_last=True), 3, "length")
    assert [t.instruction for t in kept] == [GOOD[0][0], GOOD[1][0]]
    assert kept[0].input == "" and kept[1].input == "I loved it."
    assert sorted(r.reason for r in rejected) == sorted(
        ["blacklisted keyword", "instruction too short", "cut off by the length limit"])


@pytest.mark.parametrize("garbage", ["", "   ", "###", "4. Instruction", "\x00\xff", "1. Input:\n2. Output:", "#" * 500])
def test_parse_never_raises_on_garbage(garbage):
    kept, rejected = si.parse_tasks(garbage, 3, "stop")
    assert kept == [] and all(isinstance(r.reason, str) for r in rejected)


def test_novelty_filter_drops_near_duplicates():
    novelty = NoveltyFilter(0.7, ["Explain why the sky looks blue during the day."])
    assert novelty.keep("Explain why the sky looks blue during daytime.")[0] is False
    assert novelty.keep("Write a haiku about autumn leaves falling.")[0] is True
    assert novelty.keep("Write a haiku about autumn leaves falling down.")[0] is False


def test_self_instruct_prompt_follows_alpaca(project_root):
    seeds = si.load_seed_tasks(project_root / "data/seed_tasks.jsonl")
    assert len(seeds) == 175
    prompt = load_template("self_instruct").render(seeds=[vars(s) for s in seeds[:3]])
    assert prompt.startswith("You are asked to come up with a set of 20 diverse task instructions.")
    assert prompt.endswith("###\n4. Instruction:")
    assert f"1. Instruction: {seeds[0].instruction}\n1. Input:\n<noinput>\n" in prompt


def test_teacher_answers_are_cached_and_never_requested_twice(tmp_path):
    teacher = CannedTeacher(["one", "two"])
    requests = [TeacherRequest(prompt=f"p{i}") for i in range(5)]
    cache = RequestCache(tmp_path / "cache.jsonl")
    first, stats = run_requests(teacher, requests, SamplingParams(), cache, template_version="v1")
    assert stats["sent"] == 5 and teacher.calls == 5
    cache.close()
    again, stats = run_requests(teacher, requests, SamplingParams(), RequestCache(tmp_path / "cache.jsonl"),
                                template_version="v1")
    assert stats["cached"] == 5 and stats["sent"] == 0 and teacher.calls == 5
    assert [a.text for a in again] == [a.text for a in first]
    # Another template version or sampling setting is another request.
    _, stats = run_requests(teacher, requests[:1], SamplingParams(temperature=0.5), cache, template_version="v1")
    assert stats["sent"] == 1


def write_corpus(path, rows, header=("comment_text", "toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_corpus_with_missing_column_names_it(tmp_path):
    path = tmp_path / "c.csv"
    write_corpus(path, [["hi", 0, 0, 0, 0, 0]], header=("comment_text", "toxic", "severe_toxic", "obscene", "threat", "insult"))
    tax = load_taxonomy("jigsaw")
    with pytest.raises(RecordError, match=r"c\.csv:1: missing column\(s\) \['identity_hate'\]"):
        mod.load_labeled_corpus(path, tax, "comment_text", {label: label for label in tax.labels})


def test_corpus_with_empty_text_names_its_line(tmp_path):
    path = tmp_path / "c.csv"
    write_corpus(path, [["hello", 0, 0, 0, 0, 0, 0], ["", 1, 0, 0, 0, 0, 0]])
    tax = load_taxonomy("jigsaw")
    with pytest.raises(RecordError, match=r"c\.csv:3: column 'comment_text' is empty"):
        mod.load_labeled_corpus(path, tax, "comment_text", {label: label for label in tax.labels})


def test_kaggle_unscored_rows_are_skipped_and_counted(tmp_path):
    path = tmp_path / "c.csv"
    write_corpus(path, [["a", -1, -1, -1, -1, -1, -1], ["b", 1, 0, 1, 0, 0, 0]])
    tax = load_taxonomy("jigsaw")
    records, skipped = mod.load_labeled_corpus(path, tax, "comment_text", {label: label for label in tax.labels})
    assert [r["labels"] for r in records] == [["toxic", "obscene"]] and skipped == {"unscored (-1) rows": 1}


def test_balanced_split_is_disjoint_and_balanced(project_root):
    tax = load_taxonomy("jigsaw")
    records, _ = mod.load_labeled_corpus(project_root / "data/jigsaw_sample.csv", tax, "comment_text",
                                         {label: label for label in tax.labels})
    records, _ = drop_exact_duplicates(records, key=lambda r: r["text"])
    train, test = mod.balanced_split(records, tax, test_per_label=10, test_none=10, train_max_per_label=100,
                                     train_none=50, seed=0)
    assert not {normalize(r["text"]) for r in train} & {normalize(r["text"]) for r in test}
    test_counts, train_counts = mod.label_counts(test, tax), mod.label_counts(train, tax)
    assert all(test_counts[label] >= min(10, 14 // 2) for label in tax.labels)  # threat: 14 in the sample
    assert test_counts["none"] == 10 and train_counts["none"] == 50
    assert train_counts["threat"] >= 7  # half of the rarest label still reaches training


def test_answer_format_is_fixed():
    tax = load_taxonomy("jigsaw")
    assert mod.answer_text(["insult", "toxic"], tax) == "toxic, insult"
    assert mod.answer_text([], tax) == "none"


# Parsers fed garbage: a reject reason, never an exception.
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tunelab.generation import moderation_qa as mqa  # noqa: E402

BLOCKISH = st.lists(st.sampled_from(["###", "4. Instruction:", "5. Input:", "4. Output:", "<noinput>", "\n", " ",
                                     "Explain the rules of chess to a child.", "{", "}", "é", "\x00"]), max_size=30)
JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                           st.sampled_from(["qa", "verdicts", "question", "answer", "category", "violates", "rationale"]),
                           inner, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=400), BLOCKISH.map("".join)), st.sampled_from(["stop", "length"]))
def test_self_instruct_parser_never_raises(answer, finish_reason):
    kept, rejected = si.parse_tasks(answer, 3, finish_reason)
    assert all(t.instruction and t.output for t in kept)
    assert all(isinstance(r.reason, str) and r.reason for r in rejected)


LINEISH = st.lists(st.sampled_from(["Question 1:", "Answer 1:", "**Question 2:**", "Answer:", "Categories:", "Category:",
                                    "Reason:", "Comment:", " toxic", ", insult", " none", " no", " hateful", " and",
                                    " Who is it for?", " A friend.", "\n", "\n\n", " ", "é", "\x00"]), max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), JSONISH.map(json.dumps), JSONISH.map(lambda o: f"```json\n{json.dumps(o)}\n```"),
                 LINEISH.map("".join)))
def test_moderation_qa_parser_never_raises(answer):
    parsed = mqa.parse_answer(answer, load_taxonomy("jigsaw"))
    assert (parsed.reject is None) == bool(parsed.verdicts)
    assert parsed.reject is None or isinstance(parsed.reject, str)


def test_moderation_qa_parser_accepts_a_fenced_answer_amid_prose():
    taxonomy = load_taxonomy("llama_guard")
    body = {"qa": [{"question": "Is this a threat?", "answer": "No."}],
            "verdicts": [{"category": c, "violates": c == "hate", "rationale": "why"} for c in taxonomy.labels]}
    parsed = mqa.parse_answer(f"Sure!\n```json\n{json.dumps(body)}\n```\nHope this helps.", taxonomy)
    assert parsed.reject is None and [v["category"] for v in parsed.verdicts if v["violates"]] == ["hate"]
    assert mqa.verdict_answer(parsed.verdicts, taxonomy).startswith("hate\n- hate: why")


# SmolLM2-135M's answer to the few-shot template (moderation_qa_fewshot), as it wrote it, then its next example.
SMALL_TEACHER_LINES = """Question 1: Who is the comment addressed to?
Answer 1: The person who wrote the article.
Question 2: Does it threaten anyone?
Answer 2: No. It is a joke,
but a rude one.
Categories: toxic, insult
Reason: It is rude and insulting.

Comment: "Awesome, you're just a stupid editor."
Question 1: Who is the comment addressed to?"""


def test_moderation_qa_parser_reads_labelled_lines_up_to_the_next_block():
    taxonomy = load_taxonomy("jigsaw")
    parsed = mqa.parse_answer(SMALL_TEACHER_LINES, taxonomy)
    assert parsed.reject is None and not parsed.unfinished
    assert parsed.qa == [{"question": "Who is the comment addressed to?", "answer": "The person who wrote the article."},
                         {"question": "Does it threaten anyone?", "answer": "No. It is a joke, but a rude one."}]
    assert [v["category"] for v in parsed.verdicts if v["violates"]] == ["toxic", "insult"]
    assert mqa.verdict_answer(parsed.verdicts, taxonomy) == (
        "toxic, insult\n- toxic: It is rude and insulting.\n- insult: It is rude and insulting.")


@pytest.mark.parametrize("categories, labels", [("none", []), ("No.", []), ("**Severe toxic** and Threat", ["severe_toxic", "threat"]),
                                                ("insult, insult", ["insult"]), ("Insults, threatening", ["threat", "insult"]),
                                                ("severe", ["severe_toxic"]), ("N/A", []), ("toxicity", ["toxic"])])
def test_moderation_qa_parser_reads_a_categories_line_the_way_a_person_would(categories, labels):
    parsed = mqa.parse_answer(f"Question 1: Is it rude?\nAnswer 1: Yes.\nCategories: {categories}\nReason: Because.",
                              load_taxonomy("jigsaw"))
    assert parsed.reject is None and [v["category"] for v in parsed.verdicts if v["violates"]] == labels
    assert parsed.unfinished  # nothing after the Reason line: a length cut there may have cut the reason


@pytest.mark.parametrize("answer, reason", [
    ("Question 1: Is it rude?\nAnswer 1: Yes.\nCategories: toxic, hateful\nReason: x", "unknown categories ['hateful']"),
    ("Question 1: Is it rude?\nAnswer 1: Yes.\nCategories: toxic: yes, insult: no\nReason: x", "unknown categories"),
    ("Question 1: Is it rude?\nAnswer 1: Yes.\nCategories: insult (no)\nReason: x", "unknown categories"),
    ('{\n"qa": [\n{"question": "Who is targeted?",\n"answer": "No one', "no JSON object in the answer"),
    ("Question 1: Is it rude?\nAnswer 1: Yes.\nCategories: none, toxic\nReason: x", "the verdict names none and categories"),
    ("Question 1: Is it rude?\nAnswer 1: Yes.\nReason: x", "no Categories line"),
    ("Question 1: Is it rude?\nAnswer 1: Yes.\nCategories: toxic", "no Reason line"),
    ("Categories: toxic\nReason: x", "no question/answer pairs"),
    ("I cannot help with that.", "no JSON object or Question/Answer/Categories lines"),
])
def test_moderation_qa_parser_names_what_a_lines_answer_lacks(answer, reason):
    parsed = mqa.parse_answer(answer, load_taxonomy("jigsaw"))
    assert parsed.reject.startswith(reason) and not parsed.verdicts


def test_a_category_named_in_words_with_and_inside_is_one_category():
    parsed = mqa.parse_answer("Question 1: Is it harmful?\nAnswer 1: Yes.\nCategories: Suicide and self-harm\nReason: x",
                              load_taxonomy("llama_guard"))
    assert [v["category"] for v in parsed.verdicts if v["violates"]] == ["suicide_and_self_harm"]


def test_a_verdict_keeps_one_line_per_reason_so_it_reads_back_as_labels():
    taxonomy = load_taxonomy("jigsaw")
    verdicts = [{"category": c, "violates": c == "insult", "rationale": "line one\nline two"} for c in taxonomy.labels]
    assert mqa.verdict_answer(verdicts, taxonomy) == "insult\n- insult: line one line two"

"""Exact and near-duplicate removal, decontamination and eval-set loading."""

from __future__ import annotations

import json

import pytest

from tunelab.errors import RecordError
from tunelab.generation.dedup import (
    Decontaminator,
    alpaca_full_text,
    alpaca_text,
    drop_exact_duplicates,
    drop_near_duplicates,
    load_eval_texts,
    normalize,
)
from tunelab.paths import PROJECT_ROOT

BASE = "Write a short story about a brave young girl who travels across the cold mountains"  # 15 words


def rec(instruction: str, input: str = "", output: str = "ok", **extra) -> dict:
    return {"instruction": instruction, "input": input, "output": output, **extra}


def test_normalize():
    assert normalize("  Hello,   WORLD!\n") == "hello world"
    assert normalize("Ｈｅｌｌｏ “world”…") == "hello world"  # NFKC and Unicode punctuation
    assert normalize("Don't use e-mail (3.5)") == "don't use e-mail 3.5"


def test_exact_duplicates_ignore_case_spacing_and_punctuation():
    records = [
        rec("Name three primary colors.", id="a"),
        rec("Give an example of a simile."),
        rec("  name THREE primary   colors ", output="different answer"),
        rec("Name three primary colors!!!", id="d"),
        rec("give an example of a simile"),
        rec("Name three primary colors.", input="for a child"),  # a different input: a different task
    ]
    kept, dropped = drop_exact_duplicates(records)
    assert kept == [records[0], records[1], records[5]]
    assert [(d["reason"], d["duplicate_of"]) for d in dropped] == [
        ("exact duplicate", "a"), ("exact duplicate", "a"), ("exact duplicate", 1),
    ]
    assert dropped[0]["record"] is records[2]
    assert dropped[0]["text"] == alpaca_text(records[2])


def test_near_duplicates_dropped_unrelated_kept():
    assert len(BASE.split()) == 15
    records = [
        rec(BASE, id="base"),
        rec("Explain how photosynthesis converts sunlight, water and carbon dioxide into glucose and oxygen"),
        rec(BASE.replace("mountains", "hills"), id="copy"),  # one word changed
        rec("List five tips for staying productive while working from home during a long winter"),
    ]
    kept, dropped = drop_near_duplicates(records)  # word trigrams, Jaccard 12/14 with the first
    assert kept == [records[0], records[1], records[3]]
    (report,) = dropped
    assert report["reason"] == "near duplicate"
    assert report["duplicate_of"] == "base"
    assert report["record"]["id"] == "copy"
    assert 0.8 <= report["jaccard"] <= 1.0 and report["jaccard"] == round(report["jaccard"], 4)


def test_near_duplicates_mid_sentence_change_with_word_shingles():
    # One word changed mid-sentence alters 3 of 13 trigrams (Jaccard 10/16): word sets catch it.
    records = [rec(BASE), rec(BASE.replace("brave", "clever")), rec("Translate this sentence into French please")]
    assert drop_near_duplicates(records)[1] == []
    kept, dropped = drop_near_duplicates(records, shingle=1)
    assert kept == [records[0], records[2]]
    assert dropped[0]["duplicate_of"] == 0  # index when there is no id


def test_near_duplicates_deterministic_and_short_texts():
    records = [rec(BASE), rec(BASE.replace("cold", "high")), rec("Hi there"), rec("hi THERE."), rec("Bye")]
    first = drop_near_duplicates(records, threshold=0.6)
    second = drop_near_duplicates([dict(r) for r in records], threshold=0.6)
    assert first == second
    kept, dropped = first
    assert [r["instruction"] for r in kept] == [BASE, "Hi there", "Bye"]
    assert [d["duplicate_of"] for d in dropped] == [0, 2]


EVAL = {
    "heldout": [
        "Describe the process of making a cup of green tea using loose leaves and hot water.",
        "Name the capital of France.",  # shorter than 8 words
        "True",  # a one-word answer
    ]
}


def test_decontaminate_catches_spans_and_short_items():
    deco = Decontaminator(EVAL, n=8)
    records = [
        rec("Please describe the process of making a cup of green tea for me."),  # an 8-word span
        rec("name the capital of france", id="short"),  # equals the short item
        rec("Write a haiku about autumn leaves falling in a quiet park at dusk."),
        rec("What is the capital of France and why?"),  # contains the short item, but is not it
        # copies a span of the eval text into the answer
        rec("Summarize this.", output="Making a cup of green tea using loose leaves is easy."),
        rec("Is the sky blue on a clear day?", output="True"),  # shares only a one-word answer
    ]
    hits = [deco.check(alpaca_full_text(r)) for r in records]
    assert [h is not None for h in hits] == [True, True, False, False, True, False]
    assert hits[0][0] == "heldout"
    assert len(hits[0][1].split()) == 8 and hits[0][1] in normalize(EVAL["heldout"][0])
    assert hits[1][1] == "name the capital of france"
    assert deco.check("An unrelated sentence about trains and timetables in the city.") is None
    assert deco.check("true") == ("heldout", "true")  # a short item still matches a text equal to it


def test_load_eval_texts_alpaca_heldout():
    path = PROJECT_ROOT / "data" / "alpaca_heldout.json"
    records = json.loads(path.read_text(encoding="utf-8"))
    texts = load_eval_texts(path)
    assert len(texts) == 2 * len(records)
    first = records[0]
    assert texts[0] == f"{first['instruction']} {first['input']}"
    assert texts[1] == first["output"]
    # every held-out record is caught when it shows up among generated data
    deco = Decontaminator({"alpaca_heldout": texts})
    assert all(deco.check(alpaca_full_text(r)) for r in records)


def test_load_eval_texts_jsonl_shapes(tmp_path):
    moderation = tmp_path / "mod.jsonl"
    moderation.write_text('{"text": "you are awful", "labels": ["insult"]}\n\n{"text": "nice day", "labels": []}\n')
    assert load_eval_texts(moderation) == ["you are awful", "nice day"]

    chat = tmp_path / "chat.jsonl"
    messages = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
    chat.write_text(json.dumps({"messages": messages}) + "\n")
    assert load_eval_texts(chat) == ["Q?", "A."]

    completion = tmp_path / "pc.jsonl"
    completion.write_text(json.dumps({"prompt": "P", "completion": "C"}) + "\n")
    assert load_eval_texts(completion) == ["P", "C"]


def test_load_eval_texts_errors(tmp_path):
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": "oops"\n')
    with pytest.raises(RecordError, match=r"broken\.jsonl:2"):
        load_eval_texts(bad)

    unknown = tmp_path / "odd.jsonl"
    unknown.write_text('{"text": "fine"}\n{"question": "what?"}\n')
    with pytest.raises(RecordError, match=r"odd\.jsonl:2: expected an Alpaca record") as err:
        load_eval_texts(unknown)
    assert "question" in str(err.value)

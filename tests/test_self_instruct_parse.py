"""The self-instruct parser reads tasks however the teacher numbers, separates or decorates them."""

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import CannedTeacher, numbered_answer
from tunelab.generation import self_instruct as si
from tunelab.prompts import load_template
from tunelab.stages import generate
from tunelab.teachers import factory

TASKS = [
    ("Explain why the sky looks blue during the day.", "", "Sunlight scatters off air molecules."),
    ("Classify the sentiment of the following movie review.", "I loved it.", "Positive"),
    ("Give three tips for staying healthy this winter.", "", "Sleep, eat well, move."),
]


def instructions(kept):
    return [t.instruction for t in kept]


def test_one_seed_prompt_continuation_is_parsed_whatever_count_was_configured(project_root):
    seeds = si.load_seed_tasks(project_root / "data/seed_tasks.jsonl")[:1]
    prompt = load_template("self_instruct").render(seeds=[vars(s) for s in seeds])
    assert prompt.endswith("###\n2. Instruction:")
    answer = numbered_answer(2, TASKS)
    for shown in (1, 3):  # 3: the configured num_prompt_instructions, more than the one seed shown
        kept, rejected = si.parse_tasks(answer, shown, "stop")
        assert instructions(kept) == [t[0] for t in TASKS] and rejected == []
        assert [t.input for t in kept] == ["", "I loved it.", ""]


def test_answer_numbered_from_one_keeps_its_tasks():
    # The teacher ignores the continuation and starts its own list on a new line.
    answer = "\n" + "###\n".join(f"{i}. Instruction: {a}\n{i}. Input:\n{b or '<noinput>'}\n{i}. Output:\n{c}\n"
                                 for i, (a, b, c) in enumerate(TASKS, start=1))
    kept, rejected = si.parse_tasks(answer, 3, "stop")
    assert instructions(kept) == [t[0] for t in TASKS] and rejected == []


def test_gaps_restarts_and_repeated_numbers_keep_their_tasks():
    a, b, c = TASKS
    answer = (f" {a[0]}\n4. Input:\n<noinput>\n4. Output:\n{a[2]}\n"
              f"9. Instruction: {b[0]}\n9. Input:\n{b[1]}\n2. Output:\n{b[2]}\n###\n"  # no "###" before it
              f"1. Instruction: {c[0]}\n1. Input:\n<noinput>\n1. Output:\n{c[2]}\n###\n"
              f"1. Instruction: Summarize the story of the novel in two sentences.\n1. Input:\nNone\n"
              "1. Output:\nA boy finds a map and a friend.\n")
    kept, rejected = si.parse_tasks(answer, 3, "stop")
    assert instructions(kept) == [a[0], b[0], c[0], "Summarize the story of the novel in two sentences."]
    assert [t.input for t in kept] == ["", "I loved it.", "", ""] and rejected == []


def test_block_without_output_is_rejected_with_its_reason():
    answer = (" Explain how a bicycle gear works to a child.\n4. Input:\n<noinput>\n###\n"
              "5. Instruction: List three uses of baking soda at home.\n5. Output:\nCleaning, baking, deodorizing.\n")
    kept, rejected = si.parse_tasks(answer, 3, "stop")
    assert instructions(kept) == ["List three uses of baking soda at home."]
    assert kept[0].input == ""  # no Input label: a task without input
    assert [(r.reason, r.detail) for r in rejected] == [
        ("no output", {"instruction": "Explain how a bicycle gear works to a child."})]


def test_markdown_labels_missing_numbers_and_case_are_read():
    answer = (" Explain why the sky looks blue during the day.\n**4. Input:**\n<No Input>\n**4. Output:**\n"
              "Sunlight scatters off air molecules.\n\n"
              "**Instruction:** Classify the sentiment of the following movie review.\n**Input**: I loved it.\n"
              "**Output**: Positive\n\n"
              "### INSTRUCTION: Give three tips for staying healthy this winter.\ninput: n/a\noutput: Sleep, eat well, move.\n"
              "- Instruction: Name the capital city of the country given.\n- Input: France\n- Output: Paris\n")
    kept, rejected = si.parse_tasks(answer, 3, "stop")
    assert instructions(kept) == [t[0] for t in TASKS] + ["Name the capital city of the country given."]
    assert [(t.input, t.output) for t in kept] == [("", TASKS[0][2]), ("I loved it.", "Positive"),
                                                   ("", "Sleep, eat well, move."), ("France", "Paris")]
    assert rejected == []


@pytest.mark.parametrize("no_input", ["<noinput>", "<NoInput>", "noinput", "<no input>", "None", "N/A", "none."])
def test_no_input_spellings_mean_empty_input(no_input):
    kept, _ = si.parse_tasks(f" Explain why the sky looks blue during the day.\n4. Input: {no_input}\n4. Output: Air.",
                             3, "stop")
    assert [t.input for t in kept] == [""]


def test_only_the_unfinished_last_block_is_cut_off():
    kept, rejected = si.parse_tasks(numbered_answer(4, TASKS) + "7. Instruction: Describe the", 3, "length")
    assert len(kept) == 3 and [r.reason for r in rejected] == ["cut off by the length limit"]
    # An answer that ends on its separator lost nothing to the limit.
    kept, rejected = si.parse_tasks(numbered_answer(4, TASKS) + "###", 3, "length")
    assert len(kept) == 3 and rejected == []
    # Without "###" the next Instruction closes a block: only the last one was cut.
    answer = numbered_answer(4, TASKS[:2]).replace("###\n", "") + "6. Instruction: Name three"
    kept, rejected = si.parse_tasks(answer, 3, "length")
    assert len(kept) == 2 and [r.reason for r in rejected] == ["cut off by the length limit"]


def test_alpaca_filters_and_structural_reasons_stay_short_strings():
    answer = ("\n4. Instruction: Draw a picture of a cat sitting on a mat.\n4. Input:\n<noinput>\n4. Output:\n...\n###\n"
              "5. Input: stray input\n5. Output: stray output\n###\n"
              "6. Instruction: Explain how tides work on the coast.\n6. Output: The moon.\n6. Output: Again.\n###\n"
              "Here are some more tasks you may like.\n")
    kept, rejected = si.parse_tasks(answer, 3, "stop")
    assert kept == []
    assert [r.reason for r in rejected] == ["blacklisted keyword", "no instruction", "repeated field",
                                            "not an instruction/input/output block"]


LABELISH = st.sampled_from([
    "###", "4. Instruction:", "5. Input:", "4. Output:", "1. Instruction:", "Instruction:", "Input:", "Output:",
    "**Instruction:**", "**2. Output:**", "- input:", "### Output:", "<noinput>", "None", "\n", " ", "**", "*", "_",
    "Explain the rules of chess to a child.", "12)", "9999.", "{", "}", "é", "\x00", "\r\n"])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=400), st.lists(LABELISH, max_size=40).map("".join)),
       st.integers(min_value=0, max_value=20), st.sampled_from(["stop", "length", None]))
def test_parser_never_raises_and_kept_tasks_are_whole(answer, shown, finish_reason):
    kept, rejected = si.parse_tasks(answer, shown, finish_reason)
    assert all(t.instruction and t.output and si.filter_reason(t.instruction, t.output) is None for t in kept)
    assert all(isinstance(r.reason, str) and 0 < len(r.reason) <= 40 for r in rejected)


@pytest.mark.parametrize("garbage", [" " * 20000, "*" * 20000, "1." * 10000, "_ " * 10000, "\n" * 20000,
                                     "5. " + " " * 20000 + "x", "Instruction" * 3000, "#" * 20000])
def test_pathological_answers_parse_quickly(garbage):
    started = time.monotonic()
    si.parse_tasks(garbage, 3, "stop")
    assert time.monotonic() - started < 1.0


class PromptRecordingTeacher(CannedTeacher):
    def generate_batch(self, requests, params):
        self.prompts = [r.prompt for r in requests]
        return super().generate_batch(requests, params)


def test_generate_with_fewer_seeds_than_configured_and_a_renumbering_teacher_keeps_tasks(project_root, tmp_path,
                                                                                          monkeypatch):
    seed_file = tmp_path / "one_seed.jsonl"
    seed_file.write_text((project_root / "data/seed_tasks.jsonl").read_text().splitlines()[0] + "\n")
    # The teacher finishes the open block, then restarts its numbering at 1 with a skipped number.
    answer = (f" {TASKS[0][0]}\n2. Input:\n<noinput>\n2. Output:\n{TASKS[0][2]}\n###\n"
              f"1. Instruction: {TASKS[1][0]}\n1. Input:\n{TASKS[1][1]}\n1. Output:\n{TASKS[1][2]}\n###\n"
              f"3. Instruction: {TASKS[2][0]}\n3. Input:\n<noinput>\n3. Output:\n{TASKS[2][2]}\n")
    teacher = PromptRecordingTeacher([answer])
    monkeypatch.setitem(factory.BACKENDS, "canned", lambda cfg: teacher)
    stats = generate.generate(["--config", "demo", "--output_dir", str(tmp_path / "g"), "--tasks", "self_instruct",
                               "--teacher_backend", "canned", "--max_requests", "1", "--seed_tasks", str(seed_file),
                               "--num_prompt_instructions", "3"])
    assert teacher.prompts[0].endswith("###\n2. Instruction:")
    kept = json.loads((tmp_path / "g/self_instruct.alpaca.json").read_text())
    assert stats["self_instruct"]["kept"] == 3 and [k["instruction"] for k in kept] == [t[0] for t in TASKS]
    assert stats["self_instruct"]["reject_reasons"] == {}


def test_plural_labels_are_read_as_the_fields():
    """A chat answer heading its list "1. Instructions:" (seen from SmolLM2) is a task, not prose."""
    answer = "\n1. Instructions: Name three primary colors.\n1. Inputs: <noinput>\n1. Outputs: Red, yellow and blue.\n"
    kept, rejected = si.parse_tasks(answer, 3, "stop")
    assert [(t.instruction, t.input, t.output) for t in kept] == [
        ("Name three primary colors.", "", "Red, yellow and blue.")], rejected

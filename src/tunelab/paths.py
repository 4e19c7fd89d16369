"""Where the project's files live, resolved from this file, never from the working directory."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
# An installed wheel carries the shipped files (prompts, data samples, every stage's configs) in
# tunelab/shipped/, laid out as in the checkout (setup.py copies them there); a checkout has them at its
# root, two folders above this file. CHECKOUT is that root, or None when installed from a wheel.
_SHIPPED = _PACKAGE / "shipped"
CHECKOUT: Path | None = None if _SHIPPED.is_dir() else _PACKAGE.parents[1]
PROJECT_ROOT = CHECKOUT or _SHIPPED
PROMPTS_DIR = PROJECT_ROOT / "prompts"
DATA_DIR = PROJECT_ROOT / "data"
STAGE_CONFIG_DIRS = {
    "generate": PROJECT_ROOT / "generate" / "configs",
    "finetune": PROJECT_ROOT / "finetune" / "configs",
    "evaluate": PROJECT_ROOT / "evaluate" / "configs",
    "inference": PROJECT_ROOT / "configs" / "inference",
    "demo": PROJECT_ROOT / "configs",
}


def cache_dir() -> Path:
    """Folder for built-once artifacts (the tiny random models). `TUNELAB_CACHE` overrides it."""
    root = os.environ.get("TUNELAB_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tunelab"
    return Path(root)


def resolve_input(path: str | os.PathLike) -> Path:
    """An input path as given, or, when it is relative and absent from the working directory,
    the same path among the shipped files, so shipped configs run from any directory."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    candidate = PROJECT_ROOT / p
    return candidate if candidate.exists() else p

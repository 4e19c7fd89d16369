"""Models built or converted once into the tunelab cache folder (`TUNELAB_CACHE`, else ~/.cache/tunelab)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .records import honour_umask_tree


def build_once(target: Path, build: Callable[[Path], object]) -> Path:
    """`target`, made by `build(folder)` on first use. The build goes to a temporary folder renamed into place,
    so a killed build is never mistaken for a finished one; two processes building at once keep the first."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        honour_umask_tree(tmp)  # mkdtemp's 0700 and safetensors' 0600: others may read the cache as the umask says
        try:
            os.replace(tmp, target)
        except OSError:  # built concurrently by another process: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target

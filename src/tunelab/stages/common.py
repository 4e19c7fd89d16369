"""What every stage entry point shares: config parsing, user-facing errors, quiet logs."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence

from ..errors import TunelabError


def quiet_libraries() -> None:
    """Keep the console for our own progress bars and summaries."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for name in ("transformers", "datasets", "accelerate", "peft", "trl", "absl", "bitsandbytes"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Deprecation notices inside the libraries themselves, not about anything a user set.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass


def run_main(body: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None) -> int:
    """Run a stage; a `TunelabError` is printed as one clear line (exit 2), not a traceback. The output
    folders it claimed are let go when it ends."""
    from ..runs import release_output_dirs

    try:
        body(argv)
    except TunelabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        release_output_dirs()
    return 0

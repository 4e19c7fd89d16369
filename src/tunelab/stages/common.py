"""What every stage entry point shares: config parsing, user-facing errors, quiet logs."""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from ..console import PLAIN, get_logger, show_progress, verbosity
from ..errors import TunelabError

_log = get_logger("stage")


def quiet_libraries() -> None:
    """Keep the console for our own progress bars and summaries (--verbose: the libraries speak too)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _datasets_progress(show=show_progress())
    if verbosity() == "verbose":
        return
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    # huggingface_hub logs each retry of an unreachable Hub; a failure ends in one line of ours instead.
    for name in ("transformers", "datasets", "accelerate", "peft", "trl", "absl", "bitsandbytes", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Deprecation notices inside the libraries themselves, not about anything a user set.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass


_hidden_here = {"datasets": False}


def _datasets_progress(show: bool) -> None:
    """datasets draws its own bars (tokenizing, packing), which obey only its own switch: --quiet turns it
    off, and the next command in this process turns it back on (never a switch the user set)."""
    if show and not _hidden_here["datasets"]:
        return  # importing datasets costs a second; a stage that needs it imports it itself
    import datasets

    if not show and datasets.is_progress_bar_enabled():
        datasets.disable_progress_bars()
        _hidden_here["datasets"] = True
    elif show and _hidden_here["datasets"]:
        datasets.enable_progress_bars()
        _hidden_here["datasets"] = False


def run_main(body: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None, *,
             interrupted_hint: str = "rerun the same command to continue") -> int:
    """Run a stage. A failure the user can fix (a `TunelabError`, a model the Hub would not give) is printed
    as one line (exit 2); `TUNELAB_DEBUG=1` shows the traceback instead. Ctrl-C or a SIGTERM ends with one
    line saying how to continue. The output folders it claimed are let go when it ends, and folders it
    created are removed if it failed before writing anything into them."""
    from ..runs import release_output_dirs

    failed = True
    debug = os.environ.get("TUNELAB_DEBUG", "").strip() not in ("", "0")
    previous = _stop_on_sigterm()
    try:
        body(argv)
        failed = False
    except KeyboardInterrupt:
        if debug:
            raise
        sys.stderr.write("\n")
        _log.error(f"interrupted; {interrupted_hint}", extra=PLAIN)
        return 130
    except Exception as e:
        message = str(e) if isinstance(e, TunelabError) else hub_failure(e)
        if message is None or debug:
            raise
        _log.error(f"error: {message}", extra=PLAIN)
        return 2
    finally:
        release_output_dirs(failed=failed)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _stop_on_sigterm():
    """A SIGTERM (a queue's cancel, `kill`) stops the stage as Ctrl-C does, so `finally` blocks run: locks are
    let go and nothing half-written is left behind. Returns the handler to restore (None off the main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def hub_failure(error: BaseException) -> str | None:
    """One line on why the Hugging Face Hub did not give a model or file, and what to do; None when the
    error has nothing to do with the Hub."""
    from ..models import HUB_REFERENCES

    ref = HUB_REFERENCES[-1] if HUB_REFERENCES else None
    local = "or give a local folder instead of a hub id"
    if ref is not None:  # it may have been meant as a folder: say there is none
        local += f" (there is no folder {Path(ref).resolve()} here)"
    message = _hub_message(error, local)
    if message is not None and ref is not None:
        message = f"loading {ref!r}: {message}"
    return message


def _hub_message(error: BaseException, local: str) -> str | None:
    from huggingface_hub import errors as hub

    for e in _chain(error):
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, hub.GatedRepoError):
            return (f"{first} -- a gated model: accept its license on its huggingface.co page, then put a token with "
                    f"access in the HF_TOKEN environment variable; {local}")
        if isinstance(e, hub.RepositoryNotFoundError):
            return (f"{first} -- no such model on the Hub, or a private one (set HF_TOKEN); check the spelling, {local}")
        if isinstance(e, (hub.OfflineModeIsEnabled, hub.LocalEntryNotFoundError)):
            return (f"{first} -- not in the hub cache, and downloading is off or failed: check the network (or unset "
                    f"HF_HUB_OFFLINE), {local}")
        if isinstance(e, hub.HfHubHTTPError):
            return f"the Hugging Face Hub refused a request: {first}; check HF_TOKEN and the network, {local}"
    for e in _chain(error):
        if isinstance(e, OSError) and "huggingface.co" in str(e):
            first = str(e).strip().splitlines()[0]
            return (f"{first} -- the Hugging Face Hub could not be reached: check the network or proxy; with "
                    f"HF_HUB_OFFLINE=1 a model already in the hub cache loads without it, {local}")
    return None

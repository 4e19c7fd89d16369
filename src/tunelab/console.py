"""What a command tells the person running it, through `logging`.

Every module logs to a child of the "tunelab" logger (`get_logger("finetune")`); one console handler
writes "finetune: <message>" lines, information to stdout and warnings and errors to stderr, looking
the stream up when it writes (so a redirected stdout gets them). Every command takes --quiet
(warnings and errors only, no progress bars) and --verbose (debug messages, and the libraries'
own warnings); `parse_config` reads them.
"""

from __future__ import annotations

import logging
import sys

ROOT = "tunelab"
LEVELS = {"quiet": logging.WARNING, "normal": logging.INFO, "verbose": logging.DEBUG}
# A message that is a command's result (its JSON summary) is written as it is, without the stage name.
PLAIN = {"plain": True}
_state = {"verbosity": "normal"}


class _Console(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if not getattr(record, "plain", False):
                stage = record.name.split(".")[1] if record.name.count(".") else ROOT
                warning = "warning: " if record.levelno == logging.WARNING else ""
                message = f"{stage}: {warning}{message}"
            stream = sys.stdout if record.levelno < logging.WARNING else sys.stderr
            stream.write(message + "\n")
            stream.flush()
        except Exception:  # a closed stream must not end the run
            self.handleError(record)


def _root() -> logging.Logger:
    root = logging.getLogger(ROOT)
    if not any(isinstance(h, _Console) for h in root.handlers):
        root.addHandler(_Console())
        root.propagate = False  # the libraries' root handlers (if any) would print it twice
        root.setLevel(LEVELS[_state["verbosity"]])
    return root


def get_logger(stage: str) -> logging.Logger:
    """The logger of one part of tunelab; its lines start with `stage`."""
    _root()
    return logging.getLogger(f"{ROOT}.{stage}")


def set_verbosity(verbosity: str) -> None:
    """quiet, normal or verbose, for tunelab's messages and progress bars."""
    if verbosity not in LEVELS:
        raise ValueError(f"verbosity must be one of {', '.join(LEVELS)}, got {verbosity!r}")
    _state["verbosity"] = verbosity
    _root().setLevel(LEVELS[verbosity])


def verbosity() -> str:
    return _state["verbosity"]


def show_progress() -> bool:
    """Whether progress bars are drawn (every bar tunelab draws asks; --quiet hides them)."""
    return _state["verbosity"] != "quiet"

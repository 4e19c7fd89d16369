"""Stage entry points: each parses its typed config, runs the library, and records the run.

`generate/run.py`, `finetune/train.py`, `inference.py` and `evaluate/score.py` call these `main`s;
so does the `tunelab` command.
"""

import logging as _logging


class _OptionalKernelNotice(_logging.Filter):
    """bitsandbytes logs at import, on CPUs with avx512_bf16, that an optional faster kernel package
    is missing; it reads like an error as the first line of every command. Its CPU path works without it."""

    def filter(self, record: _logging.LogRecord) -> bool:
        return "pip install kernels" not in record.getMessage()


# Installed before any stage imports bitsandbytes (through transformers, peft or trl).
_logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_OptionalKernelNotice())

"""The `tunelab` command: the stage scripts as subcommands, plus `demo`.

    tunelab generate --config demo
    tunelab finetune --base meta-llama/Llama-2-7b-chat-hf --data data/alpaca_sample.json
    tunelab merge --model runs/llama2-lora --output_dir runs/llama2-merged
    tunelab inference --config demo
    tunelab evaluate --config demo_text
    tunelab demo
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

SUBCOMMANDS = {
    "generate": ("tunelab.stages.generate", "build instruction data (python generate/run.py)"),
    "finetune": ("tunelab.stages.finetune", "fine-tune a student or classifier (python finetune/train.py)"),
    "merge": ("tunelab.stages.merge", "merge a LoRA student into its base (python finetune/merge.py)"),
    "inference": ("tunelab.stages.infer", "answer a held-aside set (python inference.py)"),
    "evaluate": ("tunelab.stages.evaluate", "score text or a classifier (python evaluate/score.py)"),
    "demo": ("tunelab.stages.demo", "run every stage end to end on the embedded default"),
}
ALIASES = {"train": "finetune", "infer": "inference", "score": "evaluate"}


def usage() -> str:
    lines = ["usage: tunelab <command> [--config NAME] [--key value ...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "`tunelab <command> --help` lists every setting of that command."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name = ALIASES.get(argv[0], argv[0])
    if name not in SUBCOMMANDS:
        print(f"tunelab: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    sys.argv[0] = f"tunelab {name}"
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())

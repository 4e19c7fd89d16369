"""The `tunelab` command: the stage scripts as subcommands, plus `demo`.

    tunelab generate --config demo
    tunelab finetune --base meta-llama/Llama-2-7b-chat-hf --data data/alpaca_sample.json
    tunelab merge --model runs/llama2-lora --output_dir runs/llama2-merged
    tunelab push --model runs/demo/latest/classifier --hub_repo_id me/toxicity-minilm
    tunelab inference --config demo
    tunelab evaluate --config demo_text
    tunelab view runs/generate
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
    "push": ("tunelab.stages.push", "upload a model folder and its card to the Hub (python finetune/push.py)"),
    "inference": ("tunelab.stages.infer", "answer a held-aside set (python inference.py)"),
    "evaluate": ("tunelab.stages.evaluate", "score text or a classifier (python evaluate/score.py)"),
    "view": ("tunelab.report.__main__", "write a page to read a run folder (view.html; report.html for evaluate)"),
    "demo": ("tunelab.stages.demo", "run every stage end to end on the embedded default"),
}
ALIASES = {"train": "finetune", "infer": "inference", "score": "evaluate"}


def usage() -> str:
    lines = ["usage: tunelab <command> [--config NAME] [--key value ...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "`tunelab <command> --help` lists that command's settings by group; `tunelab finetune --help-all`",
              "adds TRL's SFTConfig and the Trainer's. docs/settings.md has them all."]
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
    sys.argv[:] = [f"tunelab {name}", *argv[1:]]  # what the run records and --help show: `tunelab demo`, not `demo demo`
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())

"""docs/settings.md: every setting of every command, from the settings' own help text.

    python -m tunelab.reference          # rewrites docs/settings.md

It reads every `tunelab` subcommand's settings (`CONFIG_TYPES`, `HELP`), so it sits above the stages.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

from .cli import SUBCOMMANDS
from .paths import CHECKOUT
from .settings import HelpLayout, default_text, group_fields, help_text, type_name

# the checkout's docs; installed from a wheel, the working directory's
REFERENCE = (CHECKOUT or Path(".")) / "docs" / "settings.md"
REGENERATE = "python -m tunelab.reference"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def command_layouts() -> list[tuple[str, tuple[type, ...], HelpLayout]]:
    """(name, dataclasses, layout) of every `tunelab` subcommand configured by settings (a module with
    `CONFIG_TYPES` and `HELP`), in the order `tunelab --help` lists them."""
    commands = []
    for name, (module_name, _) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        if hasattr(module, "HELP"):
            commands.append((name, module.CONFIG_TYPES, module.HELP))
    return commands


def reference_markdown() -> str:
    """docs/settings.md: one section per command, one table per group of its settings."""
    lines = ["# Settings reference", "",
             f"Generated from the settings' own help text by `{REGENERATE}`: edit the help in the",
             "dataclasses under `src/tunelab`, then regenerate. Every setting is a key of the YAML file given to",
             "`--config` and a `--flag` on the command line (lists take several values: `--data a.json b.json`;",
             "`none` unsets an optional setting). `--help` prints the same groups.", ""]
    for name, dataclass_types, layout in command_layouts():
        grouped = group_fields(dataclass_types, layout)
        hints = {dtype: typing.get_type_hints(dtype) for dtype in dataclass_types}
        command = f"`python {layout.prog}` or `tunelab {name}`" if layout.prog.endswith(".py") else f"`{layout.prog}`"
        lines += [f"## {name}", "", f"{command}: {layout.description}", ""]
        for key, fields in grouped.groups.items():
            if not fields:
                continue
            lines += [f"### {name}: {layout.groups[key]}", "",
                      "| setting | type | default | help |", "|---|---|---|---|"]
            for f in fields:
                hint = hints[grouped.owners[f.name]][f.name]
                default = default_text(f)
                default = default if default in ("required", "(none)") else f"`{_cell(default)}`"
                lines.append(f"| `{f.name}` | {_cell(type_name(hint))} | {default} | {_cell(help_text(f))} |")
            lines.append("")
        if grouped.library:
            link = f"[{layout.library}]({layout.library_docs})" if layout.library_docs else layout.library
            lines += [f"### {name}: {layout.library}", "",
                      f"{len(grouped.library)} more settings come from {link}, used as they are: "
                      f"`python {layout.prog} --help-all` lists them with the installed version's defaults.", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=REGENERATE, description=(
        "Write docs/settings.md from the settings' help text."))
    parser.add_argument("--output", default=str(REFERENCE), help="Where to write it.")
    args = parser.parse_args(argv)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(reference_markdown(), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

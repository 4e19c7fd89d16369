"""How bench/suite.py sets a bench script's sizes: through the script's own argument parser."""

from __future__ import annotations

import argparse
from typing import Any


def args_with(parser: argparse.ArgumentParser, sizes: dict[str, Any]) -> argparse.Namespace:
    """The parser's arguments with `sizes` ({dest: value}) given as if typed on the command line.

    Going through the parser gives values from the suite the same types (Path, int), choices and
    defaults as the script's own command line. A value of None sets the argument to None (e.g. no limit).
    """
    actions = {action.dest: action for action in parser._actions if action.option_strings and action.dest != "help"}
    argv: list[str] = []
    for dest, value in sizes.items():
        if dest not in actions:
            raise ValueError(f"unknown setting {dest!r}; this benchmark takes {', '.join(sorted(actions))}")
        action = actions[dest]
        flag = next(s for s in action.option_strings if s.startswith("--"))
        if value is None:
            continue
        if action.nargs == 0:  # a store_true flag
            if value:
                argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    parser.exit_on_error = False  # a bad value raises ArgumentError for the suite to record, not SystemExit
    args = parser.parse_args(argv)
    for dest, value in sizes.items():
        if value is None:
            setattr(args, dest, None)
    return args

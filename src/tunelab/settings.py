"""How a command's settings are grouped and described: its `--help` and docs/settings.md.

A command declares a `HelpLayout`: its group titles, the group of each of its dataclasses, and
which settings of a library dataclass it builds on (TRL's `SFTConfig`) it shows beside its own.
A field that sits in a different group from the rest of its dataclass says so in its metadata
(`metadata={"help": ..., "group": "lora"}`). `--help` lists the project's settings by group and
counts the library's; `--help-all` lists those too. `tunelab.reference` writes docs/settings.md from
the same help.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import inspect
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

HELP_FLAGS = ("-h", "--help", "--help-all")


@dataclasses.dataclass
class HelpLayout:
    """How one command's `--help` and its section of docs/settings.md group its settings.

    A setting's group is its field's `metadata["group"]`, else the group `defaults` gives its
    dataclass; a group the layout does not name (or none) is the first group. Fields a library
    declares (in a parent of a project dataclass: TRL's SFTConfig, the Trainer's arguments) are
    listed by `--help-all` only, except those named in `surfaced`, which join the group given there.
    """

    prog: str
    description: str
    groups: dict[str, str]  # group key -> title, in the order shown
    defaults: dict[type, str] = dataclasses.field(default_factory=dict)  # dataclass -> group of its fields
    surfaced: dict[str, str] = dataclasses.field(default_factory=dict)  # library setting -> group
    library: str = "library settings"  # what the library's other settings are called
    library_docs: str | None = None  # where the library documents them


@dataclasses.dataclass
class Grouped:
    """A command's fields in the order `--help` shows them."""

    groups: dict[str, list[dataclasses.Field]]  # group key -> fields, project's and surfaced
    library: list[dataclasses.Field]  # the library's other fields
    owners: dict[str, type]  # field name -> the dataclass it was parsed into


def declared_by_project(dtype: type, name: str) -> bool:
    """Whether field `name` of `dtype` is declared in `dtype`'s own package rather than in a library
    class it inherits from (TrainConfig's own fields, not SFTConfig's)."""
    package = dtype.__module__.split(".")[0]
    for cls in dtype.__mro__:
        if name in inspect.get_annotations(cls):
            return cls.__module__.split(".")[0] == package
    return True


def group_fields(dataclass_types: Sequence[type], layout: HelpLayout) -> Grouped:
    """Every init field of `dataclass_types` in its group, or among the library's unlisted ones.

    In a group, fields keep the order of their dataclasses; a dataclass's surfaced library fields come
    before its own, in the order `layout.surfaced` lists them."""
    groups: dict[str, list[dataclasses.Field]] = {key: [] for key in layout.groups}
    library, owners = [], {}
    first = next(iter(layout.groups))
    order = list(layout.surfaced)
    for dtype in dataclass_types:
        fields = [f for f in dataclasses.fields(dtype) if f.init]
        owners.update((f.name, dtype) for f in fields)
        own = [f for f in fields if declared_by_project(dtype, f.name)]
        library += [f for f in fields if f not in own and f.name not in layout.surfaced]
        for f in sorted((f for f in fields if f not in own and f.name in layout.surfaced),
                        key=lambda f: order.index(f.name)):
            groups[_known(layout, layout.surfaced[f.name])].append(f)
        for f in own:
            groups[_known(layout, f.metadata.get("group") or layout.defaults.get(dtype, first))].append(f)
    missing = set(layout.surfaced) - set(owners)
    if missing:
        raise ValueError(f"{layout.prog}: surfaced settings that no dataclass has: {sorted(missing)}")
    return Grouped(groups, library, owners)


def _known(layout: HelpLayout, key: str) -> str:
    return key if key in layout.groups else next(iter(layout.groups))


# --- --help -----------------------------------------------------------------------------------


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's layout, shorter: one spelling per option (`--max_length`, not also `--max-length`),
    the value's type as its placeholder, and no `(default: None)`."""

    METAVARS = {"int": "INT", "float": "FLOAT", "str": "TEXT", "string_to_bool": "BOOL"}

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=30)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        underscored = set(action.option_strings)
        strings = [s for s in action.option_strings  # --max-length is a second spelling of --max_length
                   if not (s.startswith("--") and "-" in s[2:] and "--" + s[2:].replace("-", "_") in underscored)]
        if not strings or action.nargs == 0:
            return ", ".join(strings) or super()._format_action_invocation(action)
        return f"{strings[0]} {self._format_args(action, self._get_default_metavar_for_optional(action))}"

    def _get_default_metavar_for_optional(self, action: argparse.Action) -> str:
        return self.METAVARS.get(getattr(action.type, "__name__", ""), action.dest.upper())

    def _metavar_formatter(self, action: argparse.Action, default_metavar: str):
        if action.metavar is None and _long_choices(action):
            return lambda size: ("NAME",) * size  # the choices follow the help instead
        return super()._metavar_formatter(action, default_metavar)

    def _get_help_string(self, action: argparse.Action) -> str:
        if isinstance(action, argparse._StoreFalseAction) and action.option_strings[0].startswith("--no_"):
            return f"Sets {action.dest} false."
        help_ = action.help or ""
        if action.metavar is None and _long_choices(action):
            help_ += f" One of: {', '.join(map(str, action.choices))}."
        if action.default in (None, [], argparse.SUPPRESS) or "%(default)" in help_ or action.nargs == 0:
            return help_
        return f"{help_} (default: {value_text(action.default).replace('%', '%%')})"


def _long_choices(action: argparse.Action) -> bool:
    return action.choices is not None and len(",".join(map(str, action.choices))) > 30


class _HelpAction(argparse.Action):
    """`--help` / `--help-all`: print the text `render` returns, then exit 0."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None,
                 render: Callable[[], str] = str):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)
        self.render = render

    def __call__(self, parser, namespace, values, option_string=None):
        parser._print_message(self.render(), sys.stdout)
        parser.exit()


def add_help(parser: argparse.ArgumentParser, dataclass_types: Sequence[type], layout: HelpLayout) -> None:
    """Give `parser` (built without argparse's own help) the grouped `-h/--help`, plus `--help-all`
    when a library's settings are left out of it. Parsing is unchanged: only the text is arranged."""
    grouped = group_fields(dataclass_types, layout)
    n_library = len(grouped.library)
    parser.add_argument("-h", "--help", action=_HelpAction, help="Show the settings, by group, and exit.",
                        render=lambda: format_help(parser, grouped, layout, everything=False))
    if n_library:
        parser.add_argument("--help-all", action=_HelpAction,
                            help=f"Show every setting, the {n_library} of {layout.library} included, and exit.",
                            render=lambda: format_help(parser, grouped, layout, everything=True))


def format_help(parser: argparse.ArgumentParser, grouped: Grouped, layout: HelpLayout, everything: bool) -> str:
    """The help text: usage, description, `--config` and the help flags, then one section per group
    (and the library's settings, `everything` only), closing with what was left out."""
    by_dest: dict[str, list[argparse.Action]] = {}
    for action in parser._actions:
        by_dest.setdefault(action.dest, []).append(action)
    general = [a for a in parser._actions if a.dest not in grouped.owners]
    general.sort(key=lambda a: bool(set(a.option_strings) & set(HELP_FLAGS)))  # --config first, then the help flags

    def actions(fields):
        return [a for f in fields for a in by_dest.get(f.name, [])]

    formatter = parser._get_formatter()
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    formatter.add_text(parser.description)
    sections = [("options", None, general)]
    sections += [(layout.groups[key], None, actions(fields)) for key, fields in grouped.groups.items() if fields]
    if everything and grouped.library:
        docs = f" Documented at {layout.library_docs}." if layout.library_docs else ""
        sections.append((layout.library, f"Used as they are.{docs}", actions(grouped.library)))
    for title, text, items in sections:
        formatter.start_section(title)
        formatter.add_text(text)
        formatter.add_arguments(items)
        formatter.end_section()
    if grouped.library and not everything:
        formatter.add_text(f"plus {len(grouped.library)} settings of {layout.library}: --help-all lists them. "
                           "Every setting is also a key of the --config YAML file.")
    else:
        formatter.add_text("Every setting is also a key of the --config YAML file.")
    return formatter.format_help()


# --- docs/settings.md ---------------------------------------------------------------------------


def type_name(hint: Any) -> str:
    """A type hint as the reference shows it: `int | None`, `list[str]`; an enum is its values' type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(dict.fromkeys(type_name(a) for a in args))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (list, tuple, dict):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]" if args else origin.__name__
    if hint is type(None):
        return "None"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "str"
    return getattr(hint, "__name__", str(hint))


def default_text(f: dataclasses.Field) -> str:
    """A field's default as it is spelled on the command line."""
    if f.default_factory is not dataclasses.MISSING:
        return value_text(f.default_factory())
    return "required" if f.default is dataclasses.MISSING else value_text(f.default)


def value_text(value: Any) -> str:
    """A setting's value as it is spelled on the command line (a list: its values, space-separated)."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) if value else "(none)"
    if value is None:
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def help_text(f: dataclasses.Field) -> str:
    text = " ".join(str(f.metadata.get("help", "")).split()).replace("%%", "%")
    return f"{text} Range: {range_text(f)}." if "range" in f.metadata else text


def range_text(f: dataclasses.Field) -> str:
    """A field's declared range as an interval, e.g. [1, inf) or (0, 1]."""
    low, high = f.metadata["range"]
    return interval_text(low, high, f.metadata.get("range_open", ""))


def interval_text(low, high, open_end: str = "") -> str:
    left = "(" if low is None or open_end in ("low", "both") else "["
    right = ")" if high is None or open_end in ("high", "both") else "]"
    return f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"

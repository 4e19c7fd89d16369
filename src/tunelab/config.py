"""Typed configs: dataclasses filled from a YAML file, then from command-line overrides.

`parse_config` builds one `transformers.HfArgumentParser` over a stage's dataclasses (so the
finetune stage can reuse `trl.SFTConfig` whole). A YAML file sets defaults, the command line
overrides them, and an unknown key in either is an error that names it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .console import set_verbosity
from .errors import ConfigError
from .settings import HelpFormatter, HelpLayout, add_help, interval_text


def find_config(name: str, configs_dir: Path | None) -> Path:
    """A config path as given, or a bare name (`demo`) looked up in the stage's configs folder."""
    path = Path(name).expanduser()
    if path.exists():
        return path
    if configs_dir is not None:
        for candidate in (configs_dir / name, configs_dir / f"{name}.yaml"):
            if candidate.exists():
                return candidate
    known = sorted(p.stem for p in configs_dir.glob("*.yaml")) if configs_dir and configs_dir.is_dir() else []
    raise ConfigError(f"config {name!r} not found" + (f"; shipped configs: {', '.join(known)}" if known else ""))


def load_yaml(path: Path) -> dict[str, Any]:
    return load_yaml_with_lines(path)[0]


def load_yaml_with_lines(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """A YAML mapping and the line of each top-level key, so an error can say where to look."""
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = " ".join(str(x) for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or str(e)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot be read: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    lines = {}
    if isinstance(root, yaml.MappingNode):
        for key_node, _ in root.value:
            lines[str(key_node.value)] = key_node.start_mark.line + 1
    return data, lines


def _coerce(action: argparse.Action, key: str, value: Any, source: str, takes_mapping: bool) -> Any:
    """Check a YAML value the way argparse would check the same value typed on the command line.
    `source` names the file and line of the key."""
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and action.nargs not in ("+", "*"):
        raise ConfigError(f"{source}: key '{key}' takes one value, got a list")
    converted = []
    for v in values:
        if isinstance(v, dict):
            if not takes_mapping:
                raise ConfigError(f"{source}: key '{key}' takes a value, got a mapping {v!r} "
                                  "(a 'key: value' pair or {...} where a plain value belongs)")
            converted.append(v)  # dict-valued fields (e.g. model_init_kwargs) are parsed by the dataclass itself
            continue
        if isinstance(v, list):
            raise ConfigError(f"{source}: key '{key}' takes a list of values, got a nested list")
        if action.type is not None and callable(action.type):
            try:
                v = action.type(v if isinstance(v, str) else str(v))
            except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
                raise ConfigError(f"{source}: key '{key}' has an invalid value {v!r}: {e}") from None
        if action.choices is not None and v not in action.choices:
            raise ConfigError(f"{source}: key '{key}' must be one of {list(action.choices)}, got {v!r}")
        converted.append(v)
    return converted if isinstance(value, list) else converted[0]


def _mapping_fields(dataclass_types: Sequence[type]) -> set[str]:
    """Names of the fields that take a mapping (`dict`, `dict | str | None`, ...)."""
    import typing

    names = set()
    for dtype in dataclass_types:
        hints = typing.get_type_hints(dtype)
        for f in dataclasses.fields(dtype):
            hint = hints.get(f.name)
            if dict in (typing.get_origin(hint), hint, *map(typing.get_origin, typing.get_args(hint)),
                        *typing.get_args(hint)):
                names.add(f.name)
    return names


NONE_SPELLINGS = ("none", "null")


def _optional_fields(dataclass_types: Sequence[type]) -> set[str]:
    """Names of the fields whose type admits None (`int | None`, `Optional[str]`, ...)."""
    import typing

    names = set()
    for dtype in dataclass_types:
        hints = typing.get_type_hints(dtype)
        for f in dataclasses.fields(dtype):
            # a default spelled "none" is a value, not a missing one (argparse parses string defaults too)
            spelled_none = isinstance(f.default, str) and f.default.lower() in NONE_SPELLINGS
            if type(None) in typing.get_args(hints.get(f.name)) and not spelled_none:
                names.add(f.name)
    return names


def _none_or(parse):
    """`parse`, except that `none` / `null` mean None: an optional setting a config file sets (a
    subset, a limit) can then be unset from the command line, as `null` unsets it in YAML."""
    def parse_or_none(text):
        if isinstance(text, str) and text.lower() in NONE_SPELLINGS:
            return None
        return parse(text) if parse is not None else text

    parse_or_none.__name__ = getattr(parse, "__name__", "str")  # argparse names it in "invalid int value"
    return parse_or_none


PROJECT_METADATA = ("group", "range", "range_open")  # read by tunelab, not by argparse


def _settings_parser() -> type:
    """`transformers.HfArgumentParser`, reading a field's metadata except the keys tunelab reads itself
    (argparse would take every metadata key as an argument of `add_argument`)."""
    from transformers import HfArgumentParser

    class SettingsParser(HfArgumentParser):
        @staticmethod
        def _parse_dataclass_field(parser, field):
            if any(key in field.metadata for key in PROJECT_METADATA):
                field = copy.copy(field)
                field.metadata = types.MappingProxyType({k: v for k, v in field.metadata.items()
                                                         if k not in PROJECT_METADATA})
            str_or_bool = _str_or_bool_field(field)  # before the call below, which narrows field.type to bool
            HfArgumentParser._parse_dataclass_field(parser, field)
            if str_or_bool:
                # HfArgumentParser reads `str | bool` as a bool, so a named value (include_num_input_tokens_seen
                # non_padding) could not be given at all: true/false stay booleans, any other word is itself
                action = next(a for a in parser._actions if f"--{field.name}" in a.option_strings)  # not --no_<name>
                action.type = _str_or_bool

    return SettingsParser


def _str_or_bool_field(field) -> bool:
    import typing

    kind = field.type
    if isinstance(kind, str):  # postponed annotations
        return kind.replace(" ", "") in ("str|bool", "bool|str", "Union[str,bool]", "Union[bool,str]")
    return set(typing.get_args(kind)) == {str, bool}


def _str_or_bool(text: str) -> str | bool:
    from transformers.hf_argparser import string_to_bool

    try:
        return string_to_bool(text)
    except argparse.ArgumentTypeError:
        return text


def parse_config(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None = None,
    *,
    configs_dir: Path | None = None,
    prog: str | None = None,
    description: str | None = None,
    layout: HelpLayout | None = None,
    ranges: dict[str, tuple] | None = None,
) -> tuple[list[Any], Path | None]:
    """Parse `--config FILE` plus overrides into instances of `dataclass_types`.

    `layout` groups the settings in `--help` (and names prog and description); without one they are
    listed in one group. `ranges` declares (low, high[, open end]) for fields of library dataclasses whose
    metadata tunelab does not write (TRL's). Returns the dataclass instances and the config file used (None
    when there was none).
    """
    layout = layout or HelpLayout(prog or "", description or "", {"settings": "settings"})
    argv = list(sys.argv[1:] if argv is None else argv)
    if sys.argv and sys.argv[0].startswith("tunelab "):  # run as `tunelab generate`: usage says so
        prog = sys.argv[0]
    parser = _settings_parser()(dataclass_types, prog=prog or layout.prog or None,
                                description=description or layout.description or None,
                                usage="%(prog)s [--config FILE] [--SETTING VALUE ...]", add_help=False,
                                formatter_class=HelpFormatter)
    _add_general_flags(parser, configs_dir)
    add_help(parser, dataclass_types, layout)
    optional = _optional_fields(dataclass_types)
    for action in parser._actions:
        if action.dest in optional and action.nargs not in ("+", "*"):
            action.type = _none_or(action.type)

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    config_path, lines = None, {}
    typed = {a.dest for flag in _flags(argv) if (a := parser._option_string_actions.get(flag)) is not None}

    def where(key: str) -> str:
        """Where a setting's value came from, for errors: the command line, else the config's line."""
        if key in typed:
            return "command line"
        return f"{config_path}:{lines[key]}" if key in lines else str(config_path or "defaults")

    if known.config:
        config_path = find_config(known.config, configs_dir)
        values, lines = load_yaml_with_lines(config_path)
        actions = {a.dest: a for a in parser._actions}
        field_names = {f.name for t in dataclass_types for f in dataclasses.fields(t)}

        for key in values:
            if key not in field_names:
                close = difflib.get_close_matches(key, sorted(field_names), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(f"{where(key)}: unknown key '{key}'{hint}")
        takes_mapping = _mapping_fields(dataclass_types)
        defaults = {key: _coerce(actions[key], key, value, where(key), key in takes_mapping)
                    for key, value in values.items()}
        parser.set_defaults(**defaults)
        for key in defaults:
            actions[key].required = False  # the YAML supplied it

    namespace, remaining = parser.parse_known_args(argv)
    if remaining:
        flags = [r for r in remaining if r.startswith("-")] or remaining
        parser.error(f"unknown argument(s): {' '.join(flags)}")
    _set_verbosity(namespace)
    outputs = []
    for dtype in dataclass_types:
        names = {f.name for f in dataclasses.fields(dtype) if f.init}
        kwargs = {k: v for k, v in vars(namespace).items() if k in names}
        check_ranges(dtype, kwargs, where, ranges or {})
        try:
            outputs.append(dtype(**kwargs))
        except (ValueError, TypeError) as e:
            source = f" ({config_path} and the command line)" if config_path else ""
            raise ConfigError(f"invalid settings{source}: {e}") from None
    return outputs, config_path


def _add_general_flags(parser: argparse.ArgumentParser, configs_dir: Path | None) -> None:
    """--config, naming the shipped configs, and --quiet / --verbose."""
    shipped = (f" (shipped: {', '.join(sorted(p.stem for p in configs_dir.glob('*.yaml')))})"
               if configs_dir and configs_dir.is_dir() else "")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help=f"YAML file, or the name of a shipped config{shipped}")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="Warnings and errors only: no progress bars, messages or summary.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="Also debug messages, and the libraries' own warnings.")


def _set_verbosity(namespace: argparse.Namespace) -> None:
    """Every command's --quiet / --verbose (absent: normal, also after an earlier command in this process)."""
    if namespace.quiet and namespace.verbose:
        raise ConfigError("give --quiet or --verbose, not both")
    set_verbosity("quiet" if namespace.quiet else "verbose" if namespace.verbose else "normal")


def _flags(argv: Sequence[str]) -> list[str]:
    """The option strings typed in `argv` (`--lr 1` and `--lr=1` alike)."""
    return [arg.split("=", 1)[0] for arg in argv if arg.startswith("--")]


def field_range(f: dataclasses.Field, ranges: dict[str, tuple]) -> tuple | None:
    """(low, high, open end) of a field: its metadata's `range` and `range_open`, else `ranges[name]`."""
    if "range" in f.metadata:
        return (*f.metadata["range"], f.metadata.get("range_open", ""))
    if f.name in ranges:
        low, high, *open_end = ranges[f.name]
        return low, high, (open_end[0] if open_end else "")
    return None


def check_ranges(dtype: type, values: dict[str, Any], where=lambda key: "settings", ranges=None) -> None:
    """Refuse a number no setting can mean (nan, inf) and one outside its field's declared range, naming where
    the value came from (`where(name)`: the command line, or a config file's line).

    A range is (low, high), either end None for open; a number at an end is allowed unless the open end is
    named ("low", "high" or "both"): `range`/`range_open` in a field's metadata, or `ranges` for fields of
    library dataclasses.
    """
    import math

    for f in dataclasses.fields(dtype):
        if f.name not in values:
            continue
        value = values[f.name]
        numbers = [v for v in (value if isinstance(value, list) else [value])
                   if isinstance(v, (int, float)) and not isinstance(v, bool)]
        low, high, open_end = field_range(f, ranges or {}) or (None, None, "")
        for v in numbers:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{where(f.name)}: {f.name} must be a finite number, got {v}")
            below = low is not None and (v < low or (v == low and open_end in ("low", "both")))
            above = high is not None and (v > high or (v == high and open_end in ("high", "both")))
            if below or above:
                raise ConfigError(f"{where(f.name)}: {f.name} must be in {interval_text(low, high, open_end)}, "
                                  f"got {v}")


def to_plain(obj: Any) -> Any:
    """A dataclass (or nested values) as YAML-safe plain data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "to_dict"):  # TrainingArguments/SFTConfig: drops tokens, serialises enums
            return to_plain(obj.to_dict())
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "value") and not isinstance(obj, (str, int, float, bool)):  # enums
        return obj.value
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)

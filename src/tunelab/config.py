"""Typed configs: dataclasses filled from a YAML file, then from command-line overrides.

`parse_config` builds one `transformers.HfArgumentParser` over a stage's dataclasses (so the
finetune stage can reuse `trl.SFTConfig` whole). A YAML file sets defaults, the command line
overrides them, and an unknown key in either is an error that names it.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


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
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def _coerce(action: argparse.Action, key: str, value: Any, source: Path) -> Any:
    """Check a YAML value the way argparse would check the same value typed on the command line."""
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and action.nargs not in ("+", "*"):
        raise ConfigError(f"{source}: key '{key}' takes one value, got a list")
    converted = []
    for v in values:
        if isinstance(v, dict):
            # dict-valued fields (e.g. model_init_kwargs) are parsed by the dataclass itself
            converted.append(v)
            continue
        if action.type is not None and callable(action.type):
            try:
                v = action.type(v if isinstance(v, str) else str(v))
            except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
                raise ConfigError(f"{source}: key '{key}' has an invalid value {v!r}: {e}") from None
        if action.choices is not None and v not in action.choices:
            raise ConfigError(f"{source}: key '{key}' must be one of {list(action.choices)}, got {v!r}")
        converted.append(v)
    return converted if isinstance(value, list) else converted[0]


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


def parse_config(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None = None,
    *,
    configs_dir: Path | None = None,
    prog: str | None = None,
    description: str | None = None,
) -> tuple[list[Any], Path | None]:
    """Parse `--config FILE` plus overrides into instances of `dataclass_types`.

    Returns the dataclass instances and the config file used (None when there was none).
    """
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types, prog=prog, description=description)
    shipped = f" (shipped: {', '.join(sorted(p.stem for p in configs_dir.glob('*.yaml')))})" if configs_dir and configs_dir.is_dir() else ""
    parser.add_argument("--config", default=None, help=f"YAML file, or the name of a shipped config{shipped}")
    optional = _optional_fields(dataclass_types)
    for action in parser._actions:
        if action.dest in optional and action.nargs not in ("+", "*"):
            action.type = _none_or(action.type)

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    config_path = None
    if known.config:
        config_path = find_config(known.config, configs_dir)
        values = load_yaml(config_path)
        actions = {a.dest: a for a in parser._actions}
        field_names = {f.name for t in dataclass_types for f in dataclasses.fields(t)}
        for key in values:
            if key not in field_names:
                close = difflib.get_close_matches(key, sorted(field_names), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(f"{config_path}: unknown key '{key}'{hint}")
        defaults = {key: _coerce(actions[key], key, value, config_path) for key, value in values.items()}
        parser.set_defaults(**defaults)
        for key in defaults:
            actions[key].required = False  # the YAML supplied it

    namespace, remaining = parser.parse_known_args(argv)
    if remaining:
        flags = [r for r in remaining if r.startswith("-")] or remaining
        parser.error(f"unknown argument(s): {' '.join(flags)}")
    outputs = []
    for dtype in dataclass_types:
        names = {f.name for f in dataclasses.fields(dtype) if f.init}
        kwargs = {k: v for k, v in vars(namespace).items() if k in names}
        try:
            outputs.append(dtype(**kwargs))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{config_path or 'command line'}: {e}") from None
    return outputs, config_path


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

"""A declared label taxonomy (YAML): the labels a moderation record may carry, with descriptions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import load_yaml
from .errors import ConfigError
from .paths import DATA_DIR, resolve_input


@dataclass(frozen=True)
class Taxonomy:
    name: str
    labels: tuple[str, ...]
    descriptions: dict
    none_label: str = "none"
    path: Path | None = None


def load_taxonomy(name_or_path: str | Path) -> Taxonomy:
    """`jigsaw` (from data/taxonomies/) or a path to a taxonomy YAML file."""
    path = resolve_input(name_or_path)
    if not path.exists():
        path = DATA_DIR / "taxonomies" / f"{name_or_path}.yaml"
    if not path.exists():
        raise ConfigError(f"taxonomy {name_or_path!r} not found (a YAML file, or a name in {DATA_DIR / 'taxonomies'})")
    data = load_yaml(path)
    entries = data.get("labels")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: 'labels' must be a non-empty list")
    labels, descriptions = [], {}
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else entry
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{path}: label {i} has no name")
        labels.append(name)
        descriptions[name] = entry.get("description", "") if isinstance(entry, dict) else ""
    none_label = data.get("none_label", "none")
    if none_label in labels or len(set(labels)) != len(labels):
        raise ConfigError(f"{path}: label names must be unique and differ from none_label {none_label!r}")
    return Taxonomy(data.get("name", path.stem), tuple(labels), descriptions, none_label, path)

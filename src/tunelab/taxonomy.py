"""A declared label taxonomy (YAML): the labels a moderation record may carry, with descriptions.

A taxonomy may also declare `sources`: how other corpora's own labels map onto its labels, so
several corpora can be read into one label set (see data/taxonomies/moderation.yaml and
tunelab.generation.corpora, which holds the reader for each corpus layout).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import load_yaml
from .errors import ConfigError
from .paths import DATA_DIR, resolve_input


@dataclass(frozen=True)
class SourceMapping:
    """How one corpus's own labels map onto the taxonomy.

    `map`: source label -> the taxonomy labels it implies (() for none); a row carrying several
    source labels (Jigsaw's 0/1 columns) gets the union. `skip`: source labels whose rows are left
    out, with the reason (HateXplain's posts without a majority).
    """

    name: str
    reader: str
    map: dict[str, tuple[str, ...]]
    skip: dict[str, str] = field(default_factory=dict)
    description: str = ""

    def as_dict(self) -> dict:
        return {"reader": self.reader, "description": self.description,
                "map": {k: list(v) for k, v in self.map.items()}, "skip": dict(self.skip)}


@dataclass(frozen=True)
class Taxonomy:
    name: str
    labels: tuple[str, ...]
    descriptions: dict
    none_label: str = "none"
    path: Path | None = None
    sources: dict[str, SourceMapping] = field(default_factory=dict)


def _parse_sources(path: Path, data, labels: list[str], none_label: str) -> dict[str, SourceMapping]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: 'sources' must map corpus names to their mappings")
    sources = {}
    for name, entry in data.items():
        where = f"{path}: source {name!r}"
        if not isinstance(entry, dict) or not isinstance(entry.get("map"), dict) or not entry["map"]:
            raise ConfigError(f"{where} needs a 'map' of its labels to taxonomy labels")
        unknown_keys = set(entry) - {"reader", "description", "map", "skip"}
        if unknown_keys:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown_keys)} (reader, description, map, skip)")
        mapping = {}
        for source_label, targets in entry["map"].items():
            # `none` (the none_label), [] or null: the source label means no taxonomy label applies
            if targets is None or targets == none_label:
                targets = []
            targets = [targets] if isinstance(targets, str) else targets
            if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
                raise ConfigError(f"{where}: {source_label!r} must map to a label name or a list of them")
            outside = [t for t in targets if t not in labels]
            if outside:
                raise ConfigError(f"{where}: {source_label!r} maps to {outside}, not labels of this taxonomy "
                                  f"{labels} (or {none_label!r})")
            mapping[str(source_label)] = tuple(dict.fromkeys(targets))
        skip = entry.get("skip") or {}
        if not isinstance(skip, dict) or not all(isinstance(r, str) and r for r in skip.values()):
            raise ConfigError(f"{where}: 'skip' must map source labels to the reason their rows are left out")
        both = set(map(str, skip)) & set(mapping)
        if both:
            raise ConfigError(f"{where}: {sorted(both)} are both mapped and skipped")
        sources[str(name)] = SourceMapping(str(name), str(entry.get("reader", name)), mapping,
                                           {str(k): v for k, v in skip.items()}, str(entry.get("description", "")))
    return sources


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
    sources = _parse_sources(path, data.get("sources"), labels, none_label)
    return Taxonomy(data.get("name", path.stem), tuple(labels), descriptions, none_label, path, sources)

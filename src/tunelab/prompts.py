"""Prompt templates are files (prompts/*.jinja2); a template is named by file name or given as a path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2

from .errors import ConfigError
from .paths import PROMPTS_DIR
from .runs import sha256_text


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    source: str

    @property
    def sha256(self) -> str:
        return sha256_text(self.source)

    @property
    def version(self) -> str:
        """Short content hash: part of every teacher request key and every record's provenance."""
        return self.sha256[:12]

    def render(self, **variables) -> str:
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
        try:
            return env.from_string(self.source).render(**variables)
        except jinja2.UndefinedError as e:
            raise ConfigError(f"template {self.path}: {e.message}") from None


def load_template(name_or_path: str | Path) -> Template:
    """`alpaca_student` (from prompts/), `alpaca_student.jinja2`, or a path to a template file."""
    path = Path(name_or_path).expanduser()
    if not path.exists():
        for candidate in (PROMPTS_DIR / str(name_or_path), PROMPTS_DIR / f"{name_or_path}.jinja2"):
            if candidate.exists():
                path = candidate
                break
        else:
            known = ", ".join(sorted(p.stem for p in PROMPTS_DIR.glob("*.jinja2")))
            raise ConfigError(f"prompt template {name_or_path!r} not found (shipped: {known})")
    return Template(path.stem, path, path.read_text(encoding="utf-8"))

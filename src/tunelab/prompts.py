"""Prompt templates are files (prompts/*.jinja2); a template is named by file name or given as a path."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import jinja2

from .errors import ConfigError
from .paths import PROMPTS_DIR
from .runs import sha256_text


@functools.lru_cache(maxsize=64)
def _compiled(source: str) -> jinja2.Template:
    """Compile a template once: rendering 52k Alpaca records must not recompile it 52k times."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    return env.from_string(source)


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
        try:
            return _compiled(self.source).render(**variables)
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


CHAT = "chat"


@dataclass(frozen=True)
class StudentPrompt:
    """How a student sees an instruction: its tokenizer's chat template, or a template file.

    Training and inference share one of these (saved with the model), so the student is asked
    at inference exactly the way it was taught.
    """

    kind: str  # "chat" or "template"
    template: Template | None = None

    @property
    def is_chat(self) -> bool:
        return self.kind == CHAT

    @property
    def name(self) -> str:
        return CHAT if self.is_chat else self.template.name

    def user_text(self, instruction: str, input_text: str = "") -> str:
        return instruction if not input_text else f"{instruction}\n\n{input_text}"

    def messages(self, instruction: str, input_text: str = "") -> list[dict]:
        return [{"role": "user", "content": self.user_text(instruction, input_text)}]

    def render(self, tokenizer, instruction: str, input_text: str = "") -> str:
        """The prompt text, up to where the answer starts.

        A chat template writes its own special tokens (Llama-2's `<s>`), so tokenize the result
        with `add_special_tokens=self.tokenize_with_special_tokens`.
        """
        if self.is_chat:
            return tokenizer.apply_chat_template(self.messages(instruction, input_text), tokenize=False,
                                                 add_generation_prompt=True)
        return self.template.render(instruction=instruction, input=input_text)

    @property
    def tokenize_with_special_tokens(self) -> bool:
        return not self.is_chat


def student_prompt(name: str, tokenizer=None) -> StudentPrompt:
    """`chat` (the tokenizer's chat template), `auto` (chat if the tokenizer has one, else
    alpaca_student), or a template in prompts/ or a path."""
    has_chat = tokenizer is not None and getattr(tokenizer, "chat_template", None)
    if name == "auto":
        name = CHAT if has_chat else "alpaca_student"
    if name == CHAT:
        if not has_chat:
            raise ConfigError("template chat needs a tokenizer with a chat template; this model's has none "
                              "(use template alpaca_student)")
        return StudentPrompt(CHAT)
    return StudentPrompt("template", load_template(name))

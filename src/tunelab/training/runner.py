"""What every finetune recipe shares: the run context, the recipe skeleton, resuming, training, saving and the
curves.

A recipe (causal SFT, vision SFT, classify) is a `FinetuneRecipe`: it loads its data and builds a stock
trainer; `run` does the rest in one order (torchtune's setup -> train -> cleanup): the base is recorded, the
records left out are listed once data and model have loaded, `train_and_save` resumes from the run folder's
last checkpoint when asked, trains, saves the final model and draws the loss / learning-rate / grad-norm
curves, and the recipe writes what its folder is.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..console import get_logger, show_progress
from .classify.config import ClassifierConfig
from ..errors import ConfigError
from ..paths import resolve_input
from ..records import honour_umask_tree, write_json, write_jsonl
from ..runs import RunRecord, clear_earlier_run
from .arguments import DataConfig, ModelConfig, PreferenceConfig, TrainConfig, VisionConfig

_log = get_logger("finetune")

TRAIN_LOG = "train_log.json"
CURVES_PNG = "training_curves.png"
# in each checkpoint: training seconds up to it over every sitting, so a resumed run reports its whole time
TRAIN_TIME = "tunelab_train_time.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class FinetuneContext:
    """One finetune run: its settings (model, data, classifier, vision, train), run folder and record."""

    model: ModelConfig
    data: DataConfig
    classifier: ClassifierConfig
    vision: VisionConfig
    train: TrainConfig
    out: Path
    record: RunRecord
    preference: PreferenceConfig | None = None  # task dpo
    callbacks: list = field(default_factory=list)
    writing: bool = False  # set by begin_writing(): the first file of this run is about to be written

    def begin_writing(self) -> None:
        """Called before this run writes its first file. With --overwrite, the earlier run's files go now, once
        the data and model have loaded: a replacement that fails on its inputs leaves the earlier run as it
        was, and one that fails later never leaves files of two runs side by side."""
        if self.writing:
            return
        self.writing = True
        if self.model.overwrite and not self.model.resume and is_main_process():
            clear_run_folder(self.out)

    def write_skipped(self, skipped: list[dict]) -> None:
        """List the records left out (bad or over-long) in skipped_records.jsonl, with file and line."""
        if not skipped or not is_main_process():
            return
        self.begin_writing()
        write_jsonl(self.out / SKIPPED_RECORDS, skipped)
        self.record.add_output("skipped_records", self.out / SKIPPED_RECORDS)
        _log.info(f"{len(skipped)} record(s) left out; see {self.out / SKIPPED_RECORDS}")


SKIPPED_RECORDS = "skipped_records.jsonl"
RUN_FOLDER_MARKS = ("config.yaml", "provenance.json")


def clear_run_folder(out: Path) -> None:
    """Empty a finetune run folder for the run replacing it. A folder that holds no run record is left alone:
    it is not one of ours to empty."""
    if any((Path(out) / mark).exists() for mark in RUN_FOLDER_MARKS):
        clear_earlier_run(out)


def is_main_process() -> bool:
    """True on the process that writes run files (rank 0 under accelerate/torchrun; always alone)."""
    from accelerate import PartialState

    return PartialState().is_main_process


def last_checkpoint(out: Path) -> Path | None:
    """The newest complete `checkpoint-N` folder (one with trainer_state.json), or None."""
    found = []
    for p in Path(out).glob("checkpoint-*"):
        m = _CHECKPOINT.match(p.name)
        if m and p.is_dir() and (p / "trainer_state.json").exists():
            found.append((int(m.group(1)), p))
    return max(found)[1] if found else None


def early_stopping_callbacks(args) -> list:
    """EarlyStoppingCallback when `early_stopping_patience` is set (the config checks it has an eval set)."""
    if not getattr(args, "early_stopping_patience", None):
        return []
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience,
                                  early_stopping_threshold=args.early_stopping_threshold)]


def _train_time_callback(seconds_before: float | None, sittings_before: int | None):
    """A callback that writes the time in training so far (this sitting's plus the earlier ones' up to
    the checkpoint it resumed from) into each checkpoint the Trainer saves. Steps redone after a kill
    are counted once; loading is not counted. Unknown earlier time stays unknown (None) in every later
    checkpoint rather than turning into a short total."""
    from transformers import TrainerCallback

    class TrainTimeCallback(TrainerCallback):
        def __init__(self):
            self.started = time.monotonic()

        def total_seconds(self) -> float | None:
            return None if seconds_before is None else seconds_before + time.monotonic() - self.started

        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if args.should_save and folder.is_dir():
                total = self.total_seconds()
                write_json(folder / TRAIN_TIME, {
                    "seconds": None if total is None else round(total, 1),
                    "sittings": None if sittings_before is None else sittings_before + 1})
                drop_pickled_args(folder)
                (folder / "README.md").unlink(missing_ok=True)  # peft's blank card; the run's own comes at the end
                honour_umask_tree(folder)

    return TrainTimeCallback()


TRAINING_ARGS_PICKLE = "training_args.bin"


def drop_pickled_args(folder: Path) -> None:
    """The Trainer pickles its arguments into every save. A pickle runs code when loaded and can carry
    credentials; config.yaml already holds the same settings, readable and redacted."""
    (Path(folder) / TRAINING_ARGS_PICKLE).unlink(missing_ok=True)


def _time_before(checkpoint: Path | None) -> tuple[float | None, int | None]:
    """Training seconds and sittings recorded in a checkpoint: (0, 0) for a fresh start, None for
    what is unknown (a checkpoint saved without the record, or after resuming from one)."""
    if checkpoint is None:
        return 0.0, 0
    path = checkpoint / TRAIN_TIME
    if not path.exists():
        _log.info(f"{checkpoint} has no record of the training time before it; this run's total "
                  "training time will be unknown (its own sitting is still timed)")
        return None, None
    try:
        saved = json.loads(path.read_text())
        seconds, sittings = saved["seconds"], saved["sittings"]
        return (None if seconds is None else float(seconds)), (None if sittings is None else int(sittings))
    except (OSError, ValueError, KeyError, TypeError) as e:
        # Only the reported time depends on this file; training resumes regardless.
        _log.warning(f"{path} is unreadable ({e!r}); this run's total training time will be "
                     "unknown")
        return None, None


def train_and_save(trainer, ctx: FinetuneContext) -> dict:
    """Train (resuming when `resume` is set and a checkpoint exists), save the model, log and plot.

    Returns the summary every task reports: steps, losses, where it resumed from.
    """
    from .curves import plot_training_curves

    resume_from = None
    if ctx.train.resume_from_checkpoint:
        resume_from = Path(ctx.train.resume_from_checkpoint)
        if not (resume_from / "trainer_state.json").exists():
            raise ConfigError(f"resume_from_checkpoint {resume_from} is not a checkpoint folder (no trainer_state.json)")
    elif ctx.model.resume:
        resume_from = last_checkpoint(ctx.out)
        if resume_from is None:
            _log.info(f"no checkpoint in {ctx.out} yet; starting from the first step")
        else:
            _log.info(f"resuming from {resume_from}")
    seconds_before, sittings_before = _time_before(resume_from)
    timer = _train_time_callback(seconds_before, sittings_before)
    trainer.add_callback(timer)
    if not show_progress():  # --quiet: the Trainer's bar goes too (disable_tqdm would be saved as a setting)
        from transformers.trainer_callback import ProgressCallback

        trainer.remove_callback(ProgressCallback)
    main = trainer.is_world_process_zero()
    if main:
        ctx.begin_writing()
        ctx.record.write_config()  # before the first step, so an interrupted run can be resumed with its settings
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_seconds = timer.total_seconds()
    trainer.save_model(str(ctx.out))
    history = trainer.state.log_history
    if main:
        drop_pickled_args(ctx.out)
        write_json(ctx.out / TRAIN_LOG, {"log_history": history})
        ctx.record.add_output("train_log", ctx.out / TRAIN_LOG)
        if plot_training_curves(history, ctx.out / CURVES_PNG):
            ctx.record.add_output("curves", ctx.out / CURVES_PNG)
    losses = [e["loss"] for e in history if "loss" in e]
    summary = {"steps": result.global_step, "train_loss": result.training_loss,
               "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
               "resumed_from": str(resume_from) if resume_from else None,
               # None when an earlier sitting's time is unknown (its checkpoint predates the record)
               "train_seconds": None if train_seconds is None else round(train_seconds, 1),
               "sittings": None if sittings_before is None else sittings_before + 1}
    evals = [e for e in history if "eval_loss" in e]
    if evals:
        summary["best_eval_loss"] = min(e["eval_loss"] for e in evals)
        if trainer.state.best_model_checkpoint:
            summary["best_checkpoint"] = trainer.state.best_model_checkpoint
    return summary


class FinetuneRecipe:
    """One finetune run, start to end. A recipe overrides `setup_data` (its rows), `setup_trainer` (its model
    and stock trainer), `data_summary` and `save` (what its folder is); the order is kept here."""

    def __init__(self, ctx: FinetuneContext):
        self.ctx = ctx
        self.skipped: list[dict] = []  # records left out (bad, over-long, repeating held-out rows), in order
        self.base = ""

    @property
    def seed(self) -> int:
        """The seed of data splits and draws: data_seed, else the training seed."""
        args = self.ctx.train
        return args.data_seed if args.data_seed is not None else args.seed

    def run(self) -> dict:
        from ..models import resolve_model

        ctx = self.ctx
        self.base = resolve_model(ctx.model.base)
        ctx.record.models["base"] = ctx.model.base
        self.setup_data()
        trainer = self.setup_trainer()
        ctx.begin_writing()  # once data and model have loaded: an earlier run's files go, this run's come
        ctx.write_skipped(self.skipped)
        if is_main_process():
            self.write_data_record()
        summary = self.data_summary(trainer)
        summary.update(train_and_save(trainer, ctx))
        self.after_training(trainer, summary)
        if is_main_process():  # one writer under accelerate / torchrun
            self.save()
        return summary

    def setup_data(self) -> None:
        raise NotImplementedError

    def setup_trainer(self):
        raise NotImplementedError

    def write_data_record(self) -> None:
        """Files that say which rows the run trains on, written before training (classify: data_splits.json)."""

    def data_summary(self, trainer) -> dict:
        raise NotImplementedError

    def after_training(self, trainer, summary: dict) -> None:
        """Work on the trained model before saving (classify: score the eval set, tune thresholds)."""

    def save(self) -> None:
        raise NotImplementedError

    def input_paths(self, setting: str, refs: list[str]) -> list[Path]:
        """The files of a data setting, resolved and recorded as the run's inputs (`data[0]`, ...)."""
        paths = [resolve_input(p) for p in refs]  # hub ids come back unchanged
        for i, p in enumerate(paths):
            self.ctx.record.add_input(f"{setting}[{i}]", p)
        return paths

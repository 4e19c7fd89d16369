"""inference: a (tuned) model answers a held-aside set; one JSONL row per example, for people to read.

    python inference.py --config demo
    python inference.py --model runs/llama2-lora --data data/alpaca_heldout.json --temperature 0.7 --top_k 50
    python inference.py --config sweep --temperature 0 0.7 --top_k 0 50 --num_beams 1 4
    python inference.py --model meta-llama/Llama-2-7b-chat-hf --backend openai --base_url http://localhost:8000/v1
    python inference.py --model runs/llava-student --data heldout.chat.jsonl --images_root images/

The data is Alpaca records (an `image` field for image-plus-text records) or chat JSONL (one user
turn, whose image_url parts hold image paths, then the answer). A LLaVA student (finetune or merge
folder, or a LLaVA base) answers them with the images, through the same generation code as the
generate stage's LLaVA teacher; rows keep each record's image reference as given.

Decoding settings take lists; their grid is expanded into settings, each answered into its own
file with the setting in every row. One setting writes `predictions.jsonl`; a sweep writes
`predictions/<setting>.jsonl`, and either writes `sweep.json` (the index). Rows are appended,
fsynced, as each batch finishes; a rerun of an unfinished run (or `--resume`) skips the ids
already answered, and refuses when the settings differ. A finished file is rewritten in data order.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence

from ..console import PLAIN, get_logger
from ..inference.backend import make_backend
from ..inference.examples import read_examples
from ..inference.few_shot import draw_for_run
from ..inference.files import PREDICTIONS, SWEEP_DIR, SWEEP_INDEX, id_key
from ..inference.outputs import (answer_setting, check_same_data, clear_outputs, file_stats, load_done, lock_folder,
                                 prediction_path, prepare_output, sweep_index)
from ..inference.settings import InferenceConfig, expand_grid
from ..paths import STAGE_CONFIG_DIRS
from ..records import write_json, write_jsonl
from ..runs import RunRecord
from ..settings import HelpLayout
from .common import quiet_libraries, run_main

_log = get_logger("inference")

CONFIG_TYPES = (InferenceConfig,)
HELP = HelpLayout(
    prog="inference.py",
    description="Answer a held-aside set with a (tuned) model and chosen decoding settings; lists of settings "
                "sweep their grid.",
    groups={"model": "model", "data": "data", "decoding": "decoding (several values: a sweep over their grid)",
            "backend": "backend and batching", "output": "output"},
    defaults={InferenceConfig: "model"},
)


def infer(argv: Sequence[str] | None = None) -> dict:
    from ..config import parse_config
    from ..models import is_tiny_random
    from ..report.view import VIEW_NAME, write_view
    from ..teachers.base import TeacherError
    from ..teachers.cache import RequestProgress

    (cfg,), config_file = parse_config(CONFIG_TYPES, argv, configs_dir=STAGE_CONFIG_DIRS["inference"], layout=HELP)
    settings, skipped = expand_grid(cfg)
    quiet_libraries()
    data_path, examples = read_examples(cfg)
    record = RunRecord(cfg.output_dir, "inference", [cfg], config_file)
    record.add_input("data", data_path)
    out, resuming = prepare_output(cfg, record)
    shots = draw_for_run(cfg, record, examples)  # before the model loads: a bad shots file fails first
    backend = make_backend(cfg, record, examples, data_path)
    backend.shots = shots
    out.mkdir(parents=True, exist_ok=True)
    lock = lock_folder(out)
    try:
        if not resuming:
            clear_outputs(out)
        else:
            check_same_data(out, record.inputs["data"])
        record.write_config()  # first, so a killed run is recognised (and its settings checked) on rerun
        sweep = len(settings) > 1
        known = {id_key(e["id"]) for e in examples}
        requests = [backend.request(e) for e in examples]
        done = {s.name: load_done(prediction_path(out, s, sweep), s, known) for s in settings}
        resumed = sum(len(d) for d in done.values())
        index = sweep_index(cfg, backend, record.inputs["data"], len(examples), settings, skipped, done, out, sweep)
        write_json(out / SWEEP_INDEX, index)
        progress = RequestProgress(len(settings) * len(examples), "inference")
        progress.bar.update(resumed)
        try:
            for s, entry in zip(settings, index["settings"], strict=True):
                path = prediction_path(out, s, sweep)
                rows = done[s.name]
                progress.counts.update(setting=s.name, empty=progress.counts.get("empty", 0))
                started = time.monotonic()
                answer_setting(backend, s, examples, requests, rows, path, progress)
                # Complete: rewritten in data order, so a resumed run's file equals an uninterrupted one's.
                ordered = [rows[id_key(e["id"])] for e in examples]
                write_jsonl(path, ordered)
                entry.update(complete=True, seconds=round(time.monotonic() - started, 2), **file_stats(ordered))
                write_json(out / SWEEP_INDEX, index)
                record.add_output(s.name if sweep else "predictions", path)
        except TeacherError as e:
            saved = sum(len(d) for d in done.values())
            raise TeacherError(f"{e}\n{saved} answers are saved in {out}; rerun the same command to continue") from e
        finally:
            progress.close()
        record.add_output("sweep", out / SWEEP_INDEX)
        record.add_output("view", out / VIEW_NAME)
        tiny = bool(backend.local_path) and is_tiny_random(backend.local_path)
        if tiny:
            record.notes["model"] = "tiny random model: its answers are noise"
        if retries := getattr(backend.teacher, "retries", None):
            record.notes["retries"] = dict(retries)
        summary = {
            "examples": len(examples), "settings": len(settings), "skipped_settings": len(skipped),
            **{k: sum(e[k] for e in index["settings"]) for k in ("rows", "empty_predictions", "cut_by_length", "errors")},
            "resumed_rows": resumed, "tiny_random_model": tiny,
            "per_setting": {e["name"]: {k: e[k] for k in ("file", "empty_predictions", "cut_by_length", "errors")}
                            for e in index["settings"]},
        }
        record.notes["summary"] = {k: v for k, v in summary.items() if k != "per_setting"}
        record.write()  # last: its presence marks the run finished
        view = write_view(out)  # a page for reading the answers, derived from the folder (`tunelab view` rewrites it)
    finally:
        os.close(lock)
    _log.info(json.dumps(summary, indent=2), extra=PLAIN)
    where = out / SWEEP_DIR if sweep else out / PREDICTIONS
    _log.info(f"{len(settings)} setting(s), answers in {where}" + (f" (index: {out / SWEEP_INDEX})" if sweep else "")
              + f"; to read them: {view}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(infer, argv)

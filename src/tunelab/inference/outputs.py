"""The files an inference run writes and how they are kept: one setting's predictions.jsonl, or a sweep's
predictions/ folder (one file per decoding setting), with the sweep.json index; rows appended as each batch
finishes, so a rerun continues where a killed one stopped. Evaluate, the view page and the demo read them."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, OutputExistsError, RecordError
from ..records import append_jsonl, drop_partial_last_line, iter_json_objects
from ..runs import RunRecord, check_resumable_run, claim_output_dir
from .backend import LABEL_PROBS_METHOD, Backend
from .files import PREDICTIONS, SWEEP_DIR, SWEEP_INDEX, id_key, prediction_files
from .settings import GRID_FIELDS, OPERATIONAL_FIELDS, InferenceConfig, Setting

def prediction_path(out: Path, setting: Setting, sweep: bool) -> Path:
    return out / SWEEP_DIR / f"{setting.name}.jsonl" if sweep else out / PREDICTIONS


def prepare_output(cfg: InferenceConfig, record: RunRecord) -> tuple[Path, bool]:
    """Check output_dir before any slow work; returns (folder, whether earlier rows will be kept).

    Fresh or empty: start. --overwrite: the earlier outputs go. A folder with rows and a
    config.yaml is continued when the run never finished (no provenance.json) or with --resume,
    and refused when its settings differ. A run that died before its first row starts over.
    """
    out = Path(cfg.output_dir)
    claim_output_dir(out)  # another live run writing here is refused, whatever the folder holds
    if not out.exists() or not any(out.iterdir()):
        return out, False
    if cfg.overwrite:
        return out, False  # cleared once the model has loaded, so a failed start costs nothing
    finished = (out / "provenance.json").exists()
    has_rows = any(p.stat().st_size for p in prediction_files(out))
    if (out / "config.yaml").exists() and not finished and not has_rows:
        return out, False  # died before answering anything: nothing to keep
    if finished and not cfg.resume:
        raise OutputExistsError(f"output folder {out} holds a finished run; pass --overwrite to replace its outputs "
                                "(or --resume to check it and fill in anything missing)")
    if not (out / "config.yaml").exists() and not cfg.resume:
        raise OutputExistsError(f"output folder {out} already exists and is not empty; pass --overwrite to replace "
                                "its outputs")
    check_resumable_run(out, record, ignore=OPERATIONAL_FIELDS)
    return out, True


def clear_outputs(out: Path) -> None:
    """Remove what an earlier run of this stage wrote here (and nothing else)."""
    for path in [*prediction_files(out), out / SWEEP_INDEX, out / "provenance.json", out / "config.yaml"]:
        path.unlink(missing_ok=True)
    if (out / SWEEP_DIR).is_dir() and not any((out / SWEEP_DIR).iterdir()):
        (out / SWEEP_DIR).rmdir()


def lock_folder(out: Path) -> int:
    """An exclusive lock on the folder itself (no lock file): two runs appending to one file would duplicate rows."""
    import fcntl

    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"another inference run is writing to {out}; wait for it or use another output_dir") from None
    return fd


def load_done(path: Path, setting: Setting, known: set[str]) -> dict[str, dict]:
    """Rows already in a predictions file, by id; a row made with other settings is refused."""
    done: dict[str, dict] = {}
    if not path.exists():
        return done
    drop_partial_last_line(path)  # a row cut by a kill mid-write: that example is answered again
    expected = setting.decoding
    for line, row in iter_json_objects(path):
        if not isinstance(row, dict) or "id" not in row or "prediction" not in row:
            raise RecordError(path, line, "not a predictions row (needs id and prediction); remove the line or "
                                          "rerun with --overwrite")
        if row.get("decoding") != expected:
            raise RecordError(path, line, f"row {row['id']!r} was made with other decoding settings "
                                          f"({row.get('decoding')}, this run: {expected}); use another output_dir "
                                          "or --overwrite")
        key = id_key(row["id"])
        if key not in known:
            raise RecordError(path, line, f"row {row['id']!r} answers an id that is not in the data; the data or "
                                          "--limit changed: use another output_dir or --overwrite")
        done.setdefault(key, row)
    return done


def file_stats(rows: Sequence[dict]) -> dict:
    return {"rows": len(rows), "empty_predictions": sum(bool(r.get("empty")) for r in rows),
            "cut_by_length": sum(r.get("finish_reason") == "length" for r in rows),
            "errors": sum(r.get("finish_reason") == "error" for r in rows)}


def check_same_data(out: Path, data: str) -> None:
    """A resumed folder's rows answer the same data: the same path is not the same data, the index holds its hash."""
    if (out / SWEEP_INDEX).exists():
        then = json.loads((out / SWEEP_INDEX).read_text(encoding="utf-8")).get("data")
        if then != data:
            raise ConfigError(f"cannot resume {out}: the data changed since its rows were written ({then} then, "
                              f"{data} now); use another output_dir or --overwrite")


def sweep_index(cfg: InferenceConfig, backend: Backend, data: str, examples: int, settings: list[Setting],
                skipped: list, done: dict[str, dict], out: Path, sweep: bool) -> dict:
    """sweep.json: what answered which data, and each setting's file, decoding and progress."""
    index = {
        "backend": cfg.backend, "model": backend.model, "adapter": backend.adapter, "data": data,
        "examples": examples, "prompt_format": backend.prompt.name,
        "grid": {f: getattr(cfg, f) for f in GRID_FIELDS} | {"seed": cfg.seed},
        "settings": [{"name": s.name, "file": str(prediction_path(out, s, sweep).relative_to(out)),
                      "decoding": s.decoding, "complete": False, **file_stats(list(done[s.name].values()))}
                     for s in settings],
        "skipped": skipped,
    }
    if backend.labels:
        index["label_probs"] = {"labels": list(backend.labels), "method": LABEL_PROBS_METHOD}
    return index


def answer_setting(backend: Backend, setting: Setting, examples: list[dict], requests: list, rows: dict,
                   path: Path, progress) -> None:
    """Answer the examples `rows` lacks under one setting, appending each batch to `path` as it finishes."""
    from ..teachers.base import request_seed

    todo = [i for i, e in enumerate(examples) if id_key(e["id"]) not in rows]
    if not todo:
        return
    for group in backend.teacher.answer([requests[i] for i in todo], setting.params):
        new = [make_row(examples[todo[j]], response, setting, backend, request_seed(requests[todo[j]], setting.params))
               for j, response in group]
        if backend.labels:
            asked = [requests[todo[j]] for j, _ in group]
            for row, p in zip(new, backend.label_probs(asked, [r["prediction"] for r in new])):
                row["label_probs"] = p
        append_jsonl(path, new)  # fsynced: a kill loses only the batch in flight
        for row in new:
            rows[id_key(row["id"])] = row
        progress.counts["empty"] += sum(r["empty"] for r in new)
        progress.update(len(new), sum(r["completion_tokens"] for r in new), getattr(backend.teacher, "in_flight", 0))


def make_row(example: dict, response, setting: Setting, backend: Backend, seed: int) -> dict:
    """One answer for people to read, with everything that made it. An empty answer is flagged, not an error."""
    row = {
        "id": example["id"], "instruction": example["instruction"], "input": example["input"],
        "reference": example["output"], "prediction": response.text, "empty": not response.text.strip(),
        "finish_reason": response.finish_reason, "prompt_tokens": response.prompt_tokens,
        "completion_tokens": response.completion_tokens, "model": backend.model, "adapter": backend.adapter,
        "setting": setting.name, "seed": seed, "decoding": setting.decoding,
    }
    refs = example.get("image_refs") or []
    if refs:  # the record's own reference(s), as given: relative to the images root, like the data
        row.update({"image": refs[0]} if len(refs) == 1 else {"images": refs})
    if response.error:  # the server refused this one request (e.g. prompt too long): kept, and counted
        row["error"] = response.error
    return row

"""Text scores: BLEU, ROUGE-L and BERTScore of one or more runs of predictions against their references."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, RecordError
from ..metrics.scores import TextScores
from ..paths import resolve_input
from ..records import iter_json_objects, write_jsonl
from ..runs import RunRecord
from .settings import JudgeScoreConfig, ScoreRunConfig, TextConfig


def _read_prediction_lines(path, allow_empty: bool) -> list[tuple[int, dict]]:
    rows = []
    for line, obj in iter_json_objects(path):
        for key in ("prediction", "reference"):
            if not isinstance(obj, dict) or not isinstance(obj.get(key), str):
                raise RecordError(path, line, f"row needs a string '{key}'")
        if not obj["reference"].strip():
            raise RecordError(path, line, f"record {obj.get('id', line)}: empty reference")
        if not obj["prediction"].strip() and not allow_empty:
            raise RecordError(path, line, f"record {obj.get('id', line)}: empty prediction "
                              "(pass --allow_empty_predictions to score it 0)")
        rows.append((line, obj))
    if not rows:
        raise RecordError(path, None, "holds no predictions")
    return rows


def align_runs(paths: Sequence, runs: Sequence[Sequence[tuple[int, dict]]]) -> list[list[dict]]:
    """The rows of every run, in the first run's order, matched by id. Runs are compared on the same
    examples: each file must hold exactly the first file's ids, once each, with the same references;
    otherwise a RecordError names the file, the line and the id."""
    if len(runs) == 1:  # ids are optional for one run, but an id twice means two answers to one example
        seen: dict = {}
        for line, obj in runs[0]:
            rid = obj.get("id")
            if isinstance(rid, (str, int)) and not isinstance(rid, bool):
                if rid in seen:
                    raise RecordError(paths[0], line, f"record {rid}: id already on line {seen[rid]}")
                seen[rid] = line
        return [[obj for _, obj in runs[0]]]
    index = []
    for path, rows in zip(paths, runs, strict=True):
        by_id: dict = {}
        for line, obj in rows:
            rid = obj.get("id")
            if not isinstance(rid, (str, int)) or isinstance(rid, bool):
                raise RecordError(path, line, "row has no 'id' (a string or number): runs are matched by id")
            if rid in by_id:
                raise RecordError(path, line, f"record {rid}: id already on line {by_id[rid][0]}")
            by_id[rid] = (line, obj)
        index.append(by_id)
    base_path, base = paths[0], index[0]
    for path, by_id in zip(paths[1:], index[1:]):
        for rid, (line, obj) in by_id.items():
            if rid not in base:
                raise RecordError(path, line, f"record {rid}: not in {base_path}; runs are compared on the same "
                                  f"examples ({len(by_id)} records here, {len(base)} there)")
            if obj["reference"] != base[rid][1]["reference"]:
                raise RecordError(path, line,
                                  f"record {rid}: reference differs from line {base[rid][0]} of {base_path}")
        missing = [rid for rid in base if rid not in by_id]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise RecordError(path, None, f"has no record {missing[0]}{more}, which {base_path} holds on line "
                              f"{base[missing[0]][0]}; runs are compared on the same examples "
                              f"({len(by_id)} records here, {len(base)} there)")
    return [[by_id[rid][1] for rid in base] for by_id in index]


def run_names(paths: Sequence, given: Sequence[str]) -> list[str]:
    """--run_names, or the shortest distinguishing name: each file's folder, its file name, or more folders."""
    if given:
        if len(given) != len(paths):
            raise ConfigError(f"--run_names gives {len(given)} names for {len(paths)} prediction files "
                              "(--predictions, then each --compare)")
        if any(not n or "." in n for n in given) or len(set(given)) != len(given):
            raise ConfigError(f"--run_names must be distinct, non-empty and without '.' (per-example keys are "
                              f"'<name>.prediction'): {list(given)}")
        return list(given)
    paths = [Path(p).resolve() for p in paths]
    # A file named predictions.jsonl is named by its folder; a sweep's files (t0.7_k50_b1.jsonl) by themselves.
    ways = [lambda p: p.parent.name if p.stem == "predictions" else p.stem, lambda p: p.parent.name,
            lambda p: p.stem] + [
        (lambda p, d=d: "/".join(p.parent.parts[-d:])) for d in range(2, max(len(p.parts) for p in paths))]
    for way in ways:
        names = [way(p).replace(".", "_") or f"run{i}" for i, p in enumerate(paths)]
        if len(set(names)) == len(names):
            return names
    raise ConfigError("the same predictions file is given twice; name the runs with --run_names")


def score_text(run: ScoreRunConfig, text: TextConfig, record: RunRecord, out: Path,
               judge: JudgeScoreConfig | None = None) -> TextScores:
    """BLEU, ROUGE-L and BERTScore of --predictions and each --compare run, with bootstrap intervals and
    paired deltas against the first. Writes per_example.jsonl: the examples with every run's answer and
    scores side by side ('<run>.prediction', '<run>.bleu', ...; unprefixed for a single run)."""
    from ..metrics.bootstrap import Bootstrap
    from ..metrics.text import METRICS, BERTScore, BERTScoreSettings, resolve_dtype, score_runs
    from ..models import resolve_model

    try:
        dtype = resolve_dtype(text.bertscore_dtype)
        boot = Bootstrap(run.bootstrap_resamples, run.bootstrap_seed)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    paths = [resolve_input(p) for p in (run.predictions, *text.compare)]
    names = run_names(paths, text.run_names)
    for name, path in zip(names, paths):
        record.add_input("predictions" if len(paths) == 1 else f"predictions {name}", path)
    runs = align_runs(paths, [_read_prediction_lines(p, run.allow_empty_predictions) for p in paths])
    if judge is not None and judge.judge:
        from .judged import check_judged_rows

        check_judged_rows(paths, runs)  # before BERTScore loads
    record.models["bertscore"] = text.bertscore_model
    bertscore = BERTScore(BERTScoreSettings(resolve_model(text.bertscore_model), text.bertscore_num_layers,
                                            text.bertscore_batch_size, dtype=dtype))
    result = score_runs({name: [row["prediction"] for row in rows] for name, rows in zip(names, runs)},
                        [row["reference"] for row in runs[0]], bertscore, boot)
    empty = [sum(not row["prediction"].strip() for row in rows) for rows in runs]
    first = result["runs"][0]
    scores = {"source": TextScores.source, "examples": len(runs[0]), "empty_predictions": empty[0],
              # the first run's values stay at the top level, as a single run's scores always were
              **{m: first[m]["value"] for m in METRICS}, "bleu_signature": result["bleu_signature"],
              "bertscore_model": text.bertscore_model, "bertscore_num_layers": text.bertscore_num_layers,
              "bertscore_dtype": dtype, "baseline": names[0], "bootstrap": boot.describe(),
              "runs": [{"name": r["name"], "predictions": str(path), "empty_predictions": e,
                        **{m: r[m] for m in METRICS}} for r, path, e in zip(result["runs"], paths, empty)],
              "comparisons": result["comparisons"]}
    rows = _side_by_side(names, runs, result["per_example"])
    if judge is not None and judge.judge:
        from .judged import judge_runs

        scores["judge"], columns = judge_runs(judge, names, runs, boot, record, out)
        rows = [row | extra for row, extra in zip(rows, columns, strict=True)]
    write_jsonl(out / "per_example.jsonl", rows)
    record.add_output("per_example", out / "per_example.jsonl")
    return TextScores(scores)


def _side_by_side(names: list[str], runs: list[list[dict]], per_example: dict) -> list[dict]:
    from ..metrics.text import METRICS

    rows = []
    for i, row in enumerate(runs[0]):
        item = {"id": row.get("id"), **{k: row[k] for k in ("instruction", "input") if k in row},
                "reference": row["reference"]}
        for name, run in zip(names, runs):
            prefix = f"{name}." if len(names) > 1 else ""
            item[f"{prefix}prediction"] = run[i]["prediction"]
            item |= {f"{prefix}{m}": per_example[name][m][i] for m in METRICS}
        rows.append(item)
    return rows

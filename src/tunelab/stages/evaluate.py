"""evaluate: scores for generated text and for classifiers.

    python evaluate/score.py --config demo_text
    python evaluate/score.py --config demo_classifier

The stage parses, checks and records; the scoring is in `tunelab.scoring` (one module per thing scored).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..console import PLAIN, get_logger
from ..metrics.scores import ClassifierScores, Scores
from ..paths import STAGE_CONFIG_DIRS
from ..records import write_json
from ..runs import RunRecord, drop_finished_record, ensure_output_dir
from ..scoring.settings import CONFIG_TYPES, HELP, ScoreSettings, check_settings
from .common import quiet_libraries, run_main

_log = get_logger("evaluate")

__all__ = ["CONFIG_TYPES", "HELP", "main", "score"]


def _score(settings: ScoreSettings, record: RunRecord, out) -> Scores:
    run = settings.run
    if settings.kind == "text":
        from ..scoring.text import score_text

        return score_text(run, settings.text, record, out, settings.judge)
    if settings.kind == "classifier":
        from ..scoring.answers import label_set
        from ..scoring.classifier import score_classifier

        scores: ClassifierScores = score_classifier(run, settings.classifier, record, out)
        scored_references, scored_model = None, settings.classifier.model
        labels = settings.label_set
        none_label = label_set(labels, record)[1] if labels.taxonomy or labels.labels else labels.none_label
    else:
        from ..scoring.answers import score_answers_file

        scores, scored_references = score_answers_file(run, settings.label_set, record, out)
        scored_model, none_label = run.predictions, scores.data["none_label"]
    if settings.baseline.baselines:
        from ..scoring.baselines import add_baselines

        add_baselines(settings.baseline.baselines, scored_model, record, out, scores, none_label,
                      scored_references=scored_references, allow_empty=run.allow_empty_predictions)
    return scores


def score(argv: Sequence[str] | None = None) -> dict:
    """Score as the settings say; returns scores.json's content."""
    from ..config import parse_config

    configs, config_file = parse_config(CONFIG_TYPES, argv, configs_dir=STAGE_CONFIG_DIRS["evaluate"], layout=HELP)
    settings = ScoreSettings(*configs)
    check_settings(settings)
    quiet_libraries()
    out = ensure_output_dir(settings.run.output_dir, settings.run.overwrite)
    drop_finished_record(out)  # an overwritten run that fails must not leave the older run's record as finished
    record = RunRecord(out, "evaluate", configs, config_file)
    scores = _score(settings, record, out)
    write_json(out / "scores.json", scores.data)
    record.add_output("scores", out / "scores.json")
    record.write()
    from ..report import write_report

    report = write_report(out)  # derived from the files above; rewritten by `python -m tunelab.report`
    _log.info(json.dumps(scores.summary(), indent=2), extra=PLAIN)
    _log.info(f"scores in {out / 'scores.json'}; report for people in {report}")
    return scores.data


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(score, argv, interrupted_hint="rerun the same command with --overwrite")

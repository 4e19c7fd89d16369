"""A base model's zero- and k-shot answers to the eval set, beside the scored model's, and the table
that compares them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError, RecordError
from ..metrics.scores import ClassifierScores
from ..paths import resolve_input
from ..records import read_records, write_jsonl
from ..runs import RunRecord
from .few_shot import few_shot_prompt, kshot_baselines
from .settings import BaselineConfig

_COMPARED = ("refusal_rate", "micro_f1", "macro_f1", "macro_f1_refusals_excluded")


def add_baselines(cfg: BaselineConfig, scored_model: str, record: RunRecord, out: Path, scores: ClassifierScores,
                  eval_rows: list[dict] | None, none_label: str, *, source: str) -> None:
    """Zero/k-shot answers of cfg.baseline_model on the eval set, once per seed: their answers in
    out/baselines/, their scores in scores["baselines"], and scores["comparison"] beside the scored model."""
    from ..metrics.llm_answers import label_parser
    from ..models import is_tiny_random

    labels = tuple(scores.labels)
    parser = label_parser(labels, none_label)
    if cfg.baseline_data:
        eval_rows = _read_eval_rows(cfg, record, parser, scores.problem_type, none_label)
    elif not all(r["instruction"] for r in eval_rows):
        raise ConfigError(f"{source}: rows carry no 'instruction' to ask the baseline; give --baseline_data")
    pool = []
    if cfg.shots_data:
        shots_path = resolve_input(cfg.shots_data)
        record.add_input("shots_data", shots_path)
        pool = [dict(r.data) for r in read_records(shots_path, "alpaca")]
    model = _BaselineModel(cfg, record, eval_rows, labels)
    by_shots, examples = kshot_baselines(
        model.answer, eval_rows, pool, list(cfg.shots), list(cfg.seeds), labels, none_label, scores.problem_type,
        deterministic=cfg.baseline_temperature == 0,
        label_scores_fn=model.label_scores if cfg.baseline_label_probs else None)
    (out / "baselines").mkdir(exist_ok=True)
    for (k, seed), rows in examples.items():
        path = write_jsonl(out / "baselines" / f"{k}shot_seed{seed}.jsonl", rows)
        record.add_output(f"baseline_{k}shot_seed{seed}", path)
    scores.data["baselines"] = {
        "model": cfg.baseline_model, "template": model.prompt.name, "examples": len(eval_rows),
        "eval_data": str(cfg.baseline_data or source), "shots_data": cfg.shots_data,
        "decoding": {"max_new_tokens": cfg.baseline_max_new_tokens, "temperature": cfg.baseline_temperature},
        "spread": "mean and sample standard deviation (ddof 1) over seeds; each seed draws its own shots",
        **({"note": "tiny random model: its answers are noise"} if is_tiny_random(model.base) else {}),
        "by_shots": by_shots}
    scores.data["comparison"] = comparison_rows(scores, scored_model, cfg.baseline_model)


def _read_eval_rows(cfg: BaselineConfig, record: RunRecord, parser, problem_type: str, none_label: str) -> list[dict]:
    """--baseline_data's alpaca records as an eval set: {id, instruction, input, reference labels}."""
    eval_path = resolve_input(cfg.baseline_data)
    record.add_input("baseline_data", eval_path)
    eval_rows = []
    for i, r in enumerate(read_records(eval_path, "alpaca")):
        rid = str(r.get("id", i))
        reference = parser.read_reference(r["output"])
        if isinstance(reference, str):
            raise RecordError(eval_path, None, f"record {rid}: output {reference}")
        if problem_type == "single_label" and len(reference) != 1:
            raise RecordError(eval_path, None, f"record {rid}: a single_label reference holds exactly one label, "
                                               f"this one {list(reference) or none_label!r}")
        eval_rows.append({"id": rid, "instruction": r["instruction"], "input": r["input"], "reference": reference})
    return eval_rows


class _BaselineModel:
    """The base model, its prompt format, and its answers and label probabilities for a draw of shots."""

    def __init__(self, cfg: BaselineConfig, record: RunRecord, eval_rows: list[dict], labels: tuple[str, ...]):
        from ..inference.backend import resolve_student
        from ..models import load_causal_lm_with_adapter, load_tokenizer
        from ..prompts import student_prompt

        self.cfg, self.eval_rows, self.labels = cfg, eval_rows, labels
        self.base, adapter, _ = resolve_student(cfg.baseline_model)
        self.tokenizer = load_tokenizer(adapter or self.base)
        self.prompt = student_prompt(cfg.baseline_template, self.tokenizer)
        record.models["baseline"] = cfg.baseline_model
        record.add_template(f"baseline_{self.prompt.name}",
                            self.tokenizer.chat_template if self.prompt.is_chat else self.prompt.template.source)
        self.model = load_causal_lm_with_adapter(self.base, adapter, dtype=cfg.baseline_dtype)
        self.model.eval()

    def prompts_for(self, shots: list[dict]) -> list[str]:
        return [few_shot_prompt(self.prompt, self.tokenizer, shots, r["instruction"], r["input"])
                for r in self.eval_rows]

    def answer(self, shots: list[dict], seed: int) -> list[str]:
        from ..teachers.base import SamplingParams
        from ..teachers.decoding import generate_texts

        cfg, prompts = self.cfg, self.prompts_for(shots)
        params = SamplingParams(max_new_tokens=cfg.baseline_max_new_tokens, temperature=cfg.baseline_temperature,
                                seed=seed)
        sampled = cfg.baseline_temperature > 0
        generations = generate_texts(self.model, self.tokenizer, prompts, params, batch_size=cfg.baseline_batch_size,
                                     add_special_tokens=self.prompt.tokenize_with_special_tokens,
                                     desc=f"baseline {len(shots)}-shot seed {seed}",
                                     seeds=[seed * 1_000_003 + i for i in range(len(prompts))] if sampled else None)
        return [g.text for g in generations]

    def label_scores(self, shots: list[dict], seed: int, answers: list[str]) -> np.ndarray:
        from ..teachers.label_probs import label_probabilities

        probs = label_probabilities(self.model, self.tokenizer, self.prompts_for(shots), answers, self.labels,
                                    add_special_tokens=self.prompt.tokenize_with_special_tokens,
                                    batch_size=self.cfg.baseline_batch_size * 2)
        return np.array([[p[label] for label in self.labels] for p in probs], dtype=np.float64)


def comparison_rows(scores: ClassifierScores, scored_model: str, baseline_model: str) -> list[dict]:
    """One row per system (the scored model, then each k-shot baseline): the headline numbers, as mean ± std."""
    main_key = scores.main_metric
    keys = (_COMPARED[0], main_key, *_COMPARED[1:])

    def fmt(mean, std):
        if mean is None:
            return "n/a"
        return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"

    main = scores.compared_numbers()
    rows = [{"system": "scored model", "model": scored_model, "shots": None, "runs": 1,
             "mean": main, "std": dict.fromkeys(keys), "text": {k: fmt(main[k], None) for k in keys}}]
    for k, entry in scores.data["baselines"]["by_shots"].items():
        mean, std = _baseline_numbers(entry["mean"], main_key), _baseline_numbers(entry["std"], main_key)
        rows.append({"system": f"{k}-shot baseline", "model": baseline_model, "shots": int(k),
                     "runs": len(entry["runs"]), "mean": mean, "std": std,
                     "text": {key: fmt(mean[key], std[key]) for key in keys}})
    return rows


def _baseline_numbers(numbers: dict, main_key: str) -> dict:
    """The compared numbers of a baseline's mean (or std) over seeds, in the scored model's order."""
    wrong, excluded = numbers["refusals_as_wrong"], numbers.get("refusals_excluded")
    return {"refusal_rate": numbers["refusal_rate"], main_key: wrong[main_key], "micro_f1": wrong["micro_f1"],
            "macro_f1": wrong["macro_f1"], "macro_f1_refusals_excluded": excluded["macro_f1"] if excluded else None}

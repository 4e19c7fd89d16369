"""Text scores from the libraries made for them: sacrebleu, rouge-score, bert-score."""

from __future__ import annotations

from dataclasses import dataclass


def bleu(predictions: list[str], references: list[str]) -> dict:
    """Corpus BLEU (0-100) with sacrebleu's signature, so the number can be reproduced."""
    import sacrebleu

    metric = sacrebleu.metrics.BLEU()
    result = metric.corpus_score(predictions, [references])
    sentence = [sacrebleu.metrics.BLEU(effective_order=True).sentence_score(p, [r]).score
                for p, r in zip(predictions, references, strict=True)]
    return {"score": result.score, "signature": str(metric.get_signature()), "per_example": sentence}


def rouge_l(predictions: list[str], references: list[str]) -> dict:
    """Mean ROUGE-L F1 (0-1) with stemming, and per-example F1."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    per_example = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references, strict=True)]
    return {"score": sum(per_example) / len(per_example) if per_example else 0.0, "per_example": per_example}


@dataclass
class BERTScoreSettings:
    model: str  # local path or hub id
    num_layers: int | None = None  # required for models bert-score has no default layer for
    batch_size: int = 64
    lang: str = "en"


class BERTScore:
    """One `BERTScorer`, loaded once and reused across calls."""

    def __init__(self, settings: BERTScoreSettings):
        from bert_score import BERTScorer

        self.settings = settings
        self._scorer = BERTScorer(model_type=settings.model, num_layers=settings.num_layers,
                                  batch_size=settings.batch_size, lang=settings.lang)

    def __call__(self, predictions: list[str], references: list[str]) -> dict:
        # bert-score cannot embed an empty string; an empty prediction scores 0 by definition here.
        idx = [i for i, p in enumerate(predictions) if p.strip()]
        per_example = [0.0] * len(predictions)
        if idx:
            _, _, f1 = self._scorer.score([predictions[i] for i in idx], [references[i] for i in idx], verbose=False)
            for i, value in zip(idx, f1.tolist(), strict=True):
                per_example[i] = value
        return {"score": sum(per_example) / len(per_example) if per_example else 0.0, "per_example": per_example,
                "model": self.settings.model, "num_layers": self.settings.num_layers}

"""Text scores from the libraries made for them: sacrebleu, rouge-score, bert-score.

`score_runs` scores one or several runs (answers to the same examples) against the same references:
corpus BLEU, mean ROUGE-L F1 and mean BERTScore F1 of each run with bootstrap 95% intervals, per-example
scores, and each later run's paired deltas against the first. The libraries compute every number; this
module only arranges their work so that nothing is computed twice (see each function's why-comment).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .bootstrap import Bootstrap

METRICS = ("bleu", "rouge_l_f1", "bertscore_f1")


# --- BLEU -----------------------------------------------------------------------------------------------

@functools.cache
def _bleu_metrics():
    """sacrebleu's default corpus BLEU, and the sentence BLEU it recommends (effective order) for per-example scores."""
    from sacrebleu.metrics import BLEU

    return BLEU(), BLEU(effective_order=True)


def bleu_from_stats(totals: Sequence[float]) -> float:
    """Corpus BLEU (0-100) from summed sufficient statistics: exactly what `corpus_score` computes from the
    same sentences, without tokenizing again; a bootstrap resample costs one sum instead of a re-scoring."""
    corpus, _ = _bleu_metrics()
    # sacrebleu's own paired tests (sacrebleu.significance) recompute from statistics the same way.
    return corpus._compute_score_from_stats([int(round(x)) for x in totals]).score


def bleu(predictions: list[str], references: list[str]) -> dict:
    """Corpus BLEU (0-100) with sacrebleu's signature, so the number can be reproduced; per-example
    sentence BLEU; and the per-example sufficient statistics (n-gram matches and totals, hypothesis and
    reference lengths) as an (examples, 2 + 2 * max order) int array for resampling."""
    corpus, sentence = _bleu_metrics()
    # One tokenization pass gives the corpus score, the sentence scores and the bootstrap's statistics.
    stats = np.asarray(corpus._extract_corpus_statistics(predictions, [references]), dtype=np.int64)
    stats = stats.reshape(len(predictions), -1)
    per_example = [sentence._compute_score_from_stats(row.tolist()).score for row in stats]
    return {"score": bleu_from_stats(stats.sum(axis=0)), "signature": str(corpus.get_signature()),
            "per_example": per_example, "stats": stats}


# --- ROUGE-L --------------------------------------------------------------------------------------------

class _MemoStemmer:
    """nltk's Porter stemmer (as rouge-score uses it) with every word's stem remembered: stemming was about
    half of ROUGE-L's time on Alpaca answers, and their vocabulary is far smaller than their word count."""

    def __init__(self):
        from nltk.stem import porter

        self.stem = functools.lru_cache(maxsize=1 << 18)(porter.PorterStemmer().stem)


def _memo_tokenizer():
    from rouge_score import tokenize, tokenizers

    class MemoTokenizer(tokenizers.Tokenizer):
        """rouge-score's default tokenization (lowercase, alphanumeric runs, stems of words over 3 letters),
        remembering recent texts so a reference shared by several runs is tokenized once."""

        def __init__(self):
            stemmer = _MemoStemmer()
            self._tokens = functools.lru_cache(maxsize=1 << 16)(lambda text: tokenize.tokenize(text, stemmer))

        def tokenize(self, text):
            return self._tokens(text)

    return MemoTokenizer()


@functools.cache
def _rouge_scorer():
    from rouge_score import rouge_scorer

    # The tokenizer stems exactly as use_stemmer=True would (the scorer ignores use_stemmer when given one).
    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=_memo_tokenizer())


def rouge_l(predictions: list[str], references: list[str]) -> dict:
    """Mean ROUGE-L F1 (0-1) with Porter stemming (rouge-score), and per-example F1."""
    scorer = _rouge_scorer()
    per_example = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references, strict=True)]
    return {"score": sum(per_example) / len(per_example) if per_example else 0.0, "per_example": per_example}


# --- BERTScore ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BERTScoreSettings:
    model: str  # local path or hub id
    num_layers: int | None = None  # required for models bert-score has no default layer for
    # Sentences per encoder forward. Speed only, never the numbers (the matching keeps bert-score's own
    # batches of 64). 32 was fastest for MiniLM on CPU (64: 1.25x, 128: 1.6x the time); raise it on a GPU.
    batch_size: int = 32
    lang: str = "en"
    # float32; bfloat16: the encoder under autocast, the matching in float32. On a CPU with native bf16 it
    # took 2.15x less time and moved F1 by at most 1.3e-3 per example (99% within 9e-4) and 4e-6 on the
    # mean (MiniLM, 2,000 Alpaca pairs); auto: bfloat16 on such CPUs, else float32 (a GPU is fast in float32).
    dtype: str = "float32"


# bert-score's default batch for greedy matching (BERTScorer.score(batch_size=64)); see BERTScore._match.
_MATCH_BATCH = 64


def resolve_dtype(dtype: str) -> str:
    """float32 or bfloat16 for a BERTScore dtype setting (float32, bfloat16 or auto)."""
    if dtype not in ("float32", "bfloat16", "auto"):
        raise ValueError(f"BERTScore dtype must be float32, bfloat16 or auto, got {dtype!r}")
    if dtype != "auto":
        return dtype
    import torch

    from ..models import native_bf16_cpu

    return "bfloat16" if not torch.cuda.is_available() and native_bf16_cpu() else "float32"


# Sentences embedded per slice of examples: bounds the embeddings held at once (~350 MB for MiniLM at Alpaca
# lengths) while leaving enough sentences to sort into evenly filled batches.
_SENTENCES_PER_CALL = 4096
_SCORERS: dict[tuple, object] = {}


def _float32_output(module, args, output):
    output.last_hidden_state = output.last_hidden_state.float()
    return output


def load_bertscorer(settings: BERTScoreSettings):
    """One `bert_score.BERTScorer` per (model, layers, lang, dtype) per process: loading is seconds, scoring
    a batch is milliseconds, so every call, run and batch reuses it."""
    key = (settings.model, settings.num_layers, settings.lang, settings.dtype)
    if key not in _SCORERS:
        import torch
        from bert_score import BERTScorer

        scorer = BERTScorer(model_type=settings.model, num_layers=settings.num_layers, lang=settings.lang)
        if settings.dtype == "bfloat16":
            model = scorer._model  # bert-score keeps the encoder here; it has no dtype setting of its own
            model.forward = torch.autocast(next(model.parameters()).device.type, dtype=torch.bfloat16)(model.forward)
            model.register_forward_hook(_float32_output)
        _SCORERS[key] = scorer
    return _SCORERS[key]


def _pad(stats: list[tuple]):
    """bert-score's pad_batch_stats: embeddings padded with 2.0, idf weights with 0, and the length mask."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    emb, idf = zip(*stats)
    lens = torch.tensor([e.size(0) for e in emb])
    mask = torch.arange(int(lens.max())).expand(len(lens), -1) < lens.unsqueeze(1)
    return pad_sequence(emb, batch_first=True, padding_value=2.0), mask, pad_sequence(idf, batch_first=True)


class BERTScore:
    """BERTScore F1 through the process's shared `BERTScorer` (see `load_bertscorer`), batched."""

    def __init__(self, settings: BERTScoreSettings):
        self.settings = replace(settings, dtype=resolve_dtype(settings.dtype))
        self._scorer = load_bertscorer(self.settings)

    def _embed(self, sentences: list[str]) -> dict[str, tuple]:
        """Each distinct sentence's (token embeddings, idf weights), as `BERTScorer.score` computes them (no idf:
        [CLS] and [SEP] weigh 0, every other token 1) with bert-score's own sent_encode, padding and
        bert_encode, but batched by token count. bert-score sorts by words split on spaces, which left ~40% of
        every batch padding on Alpaca answers (lists and code have few spaces); by tokens it is ~5%, and the
        encoder, nearly all of BERTScore's time, does a third less work. The attention mask makes each
        sentence's embeddings independent of its batch."""
        import torch
        from bert_score.utils import bert_encode, padding, sent_encode

        tokenizer, model, bs = self._scorer._tokenizer, self._scorer._model, self.settings.batch_size
        device = next(model.parameters()).device
        idf = {tokenizer.sep_token_id: 0.0, tokenizer.cls_token_id: 0.0}
        sentences = list(dict.fromkeys(sentences))
        ids = [sent_encode(tokenizer, s) for s in sentences]
        order = sorted(range(len(sentences)), key=lambda i: len(ids[i]), reverse=True)
        stats = {}
        for b in range(0, len(order), bs):
            batch = [ids[i] for i in order[b:b + bs]]
            padded, lens, mask = padding(batch, tokenizer.pad_token_id, dtype=torch.long)
            weights, _, _ = padding([[idf.get(t, 1.0) for t in a] for a in batch], 0, dtype=torch.float)
            emb = bert_encode(model, padded.to(device), attention_mask=mask.to(device)).float().cpu()
            for j, i in enumerate(order[b:b + bs]):
                stats[sentences[i]] = (emb[j, :lens[j]], weights[j, :lens[j]])
        return stats

    def _match(self, candidates: list[str], references: list[str], stats: dict) -> list[float]:
        """bert-score's greedy matching (greedy_cos_idf) in its own batches: pairs in the given order,
        64 at a time. Kept so because bert-score takes each token's best similarity over the padded
        matrix, so a token whose similarities are all negative scores 0 or its negative best depending on the
        batch's padding: the same batches give BERTScorer.score's exact numbers."""
        import torch
        from bert_score.utils import greedy_cos_idf

        bs, f1 = _MATCH_BATCH, []
        with torch.no_grad():
            for b in range(0, len(references), bs):
                _, _, f = greedy_cos_idf(*_pad([stats[r] for r in references[b:b + bs]]),
                                         *_pad([stats[c] for c in candidates[b:b + bs]]))
                f1.extend(f.tolist())
        return f1

    def runs(self, runs: Sequence[Sequence[str]], references: Sequence[str]) -> list[list[float]]:
        """Per-example F1 of each run against the same references: BERTScorer.score's numbers for each run
        alone (same batches), computed a slice of examples at a time with every run's answers embedded
        together, so a reference is encoded once however many runs are compared."""
        n, bs = len(references), _MATCH_BATCH
        per_run = [[0.0] * n for _ in runs]  # bert-score cannot embed an empty string: an empty answer scores 0
        # a whole number of batches per slice, so the matching batches are those of one call over all examples
        step = max(bs, _SENTENCES_PER_CALL // (len(runs) + 1) // bs * bs)
        for start in range(0, n, step):
            stop = min(n, start + step)
            stats = self._embed(list(references[start:stop])
                                + [p for preds in runs for p in preds[start:stop] if p.strip()])
            for r, preds in enumerate(runs):
                keep = [i for i in range(start, stop) if preds[i].strip()]
                f1 = self._match([preds[i] for i in keep], [references[i] for i in keep], stats) if keep else []
                for i, value in zip(keep, f1, strict=True):
                    per_run[r][i] = value
        return per_run

    def __call__(self, predictions: list[str], references: list[str]) -> dict:
        per_example = self.runs([predictions], references)[0]
        return {"score": sum(per_example) / len(per_example) if per_example else 0.0, "per_example": per_example,
                "model": self.settings.model, "num_layers": self.settings.num_layers, "dtype": self.settings.dtype}


# --- several runs, intervals and deltas -----------------------------------------------------------------

def score_runs(runs: dict[str, list[str]], references: list[str], bertscore: BERTScore | None,
               bootstrap: Bootstrap) -> dict:
    """Score each run (name -> predictions, aligned with `references`) and compare every run to the first.

    Returns {"bleu_signature", "runs": [{name, bleu, rouge_l_f1, bertscore_f1}], "comparisons": [{run,
    baseline, metric, delta, ci_low, ci_high, excludes_zero}], "per_example": {name: {metric: [...]}}}.
    Every score is {value, ci_low, ci_high}: the value on all examples and the bootstrap interval.
    The intervals and deltas are paired: every run is scored on the same resampled examples.
    bertscore=None leaves BERTScore out.
    """
    if not runs or not references:
        raise ValueError("score_runs needs at least one run and one example")
    names = list(runs)
    for name in names:
        if len(runs[name]) != len(references):
            raise ValueError(f"run {name!r} has {len(runs[name])} predictions for {len(references)} references")
    n = len(references)
    bleus = {name: bleu(runs[name], references) for name in names}
    per_example = {name: {"bleu": bleus[name]["per_example"],
                          "rouge_l_f1": rouge_l(runs[name], references)["per_example"]} for name in names}
    metrics = ["bleu", "rouge_l_f1"]
    if bertscore is not None:
        metrics.append("bertscore_f1")
        for name, f1 in zip(names, bertscore.runs([runs[name] for name in names], references), strict=True):
            per_example[name]["bertscore_f1"] = f1

    # One matrix of every run's columns (BLEU statistics, then one column per mean metric) so that one
    # set of resamples scores them all.
    blocks, where = [], {}
    for name in names:
        where[name] = sum(b.shape[1] for b in blocks)
        blocks.append(np.column_stack([bleus[name]["stats"]] + [per_example[name][m] for m in metrics[1:]]))
    columns = np.hstack(blocks).astype(np.float64)
    resampled = bootstrap.sums(columns)
    k = bleus[names[0]]["stats"].shape[1]

    values, samples = {}, {}
    for name in names:
        at = where[name]
        values[name] = {"bleu": bleus[name]["score"]}
        samples[name] = {"bleu": np.array([bleu_from_stats(row) for row in resampled[:, at:at + k]])}
        for j, metric in enumerate(metrics[1:]):
            values[name][metric] = float(np.mean(per_example[name][metric])) if n else 0.0
            samples[name][metric] = resampled[:, at + k + j] / n
    scored = [{"name": name, **{m: bootstrap.interval(values[name][m], samples[name][m]) for m in metrics}}
              for name in names]
    base = names[0]
    comparisons = [{"run": name, "baseline": base, "metric": m,
                    **bootstrap.delta(values[name][m] - values[base][m], samples[name][m] - samples[base][m])}
                   for name in names[1:] for m in metrics]
    return {"bleu_signature": bleus[base]["signature"], "runs": scored, "comparisons": comparisons,
            "per_example": per_example}

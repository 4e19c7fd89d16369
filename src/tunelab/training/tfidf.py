"""The TF-IDF + logistic regression baseline every classifier result is measured against.

Word 1-2 grams with sublinear TF, then logistic regression: one multinomial model for single-label
tasks, one per label for multi-label ones. It is strong on these corpora (IMDB about 0.90 accuracy),
so a tuned encoder that does not beat it has not earned its cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

SETTINGS = {"vectorizer": "TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)",
            "classifier": "LogisticRegression(C=4, max_iter=2000); one per label for multi_label"}


@dataclass
class TfidfBaseline:
    pipeline: object
    problem_type: str
    fit_seconds: float

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities (single_label) or one probability per label (multi_label), as the encoder's."""
        probs = self.pipeline.predict_proba(texts)
        return np.asarray(probs, dtype=np.float64)


def fit_tfidf_baseline(texts: list[str], y: np.ndarray, problem_type: str, n_labels: int) -> TfidfBaseline:
    """Fit on the training rows. `y`: class indices (single_label) or a 0/1 matrix (multi_label).

    A multi-label column with one class only (a label absent from training) gets a constant
    predictor instead of failing, so the baseline scores every label the encoder does.
    """
    from sklearn.dummy import DummyClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    started = time.monotonic()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    if problem_type == "single_label":
        pipeline = make_pipeline(vectorizer, LogisticRegression(C=4.0, max_iter=2000))
        pipeline.fit(texts, y)
        if len(pipeline.classes_) != n_labels:  # a class missing from training: give it probability 0
            pipeline = _AllClasses(pipeline, n_labels)
    else:
        features = vectorizer.fit_transform(texts)
        models = []
        for j in range(n_labels):
            column = y[:, j].astype(int)
            model = (LogisticRegression(C=4.0, max_iter=2000) if len(set(column)) == 2
                     else DummyClassifier(strategy="constant", constant=int(column[0])))
            models.append(model.fit(features, column))
        pipeline = _PerLabel(vectorizer, models)
    return TfidfBaseline(pipeline, problem_type, round(time.monotonic() - started, 2))


class _PerLabel:
    """One fitted binary model per label over shared TF-IDF features: P(label) per column."""

    def __init__(self, vectorizer, models):
        self.vectorizer, self.models = vectorizer, models

    def predict_proba(self, texts):
        features = self.vectorizer.transform(texts)
        columns = []
        for model in self.models:
            p = model.predict_proba(features)
            classes = list(model.classes_)
            columns.append(p[:, classes.index(1)] if 1 in classes else np.zeros(features.shape[0]))
        return np.stack(columns, axis=1)


class _AllClasses:
    def __init__(self, pipeline, n_labels):
        self.pipeline, self.n_labels = pipeline, n_labels

    def predict_proba(self, texts):
        p = self.pipeline.predict_proba(texts)
        out = np.zeros((p.shape[0], self.n_labels))
        out[:, self.pipeline.classes_] = p
        return out

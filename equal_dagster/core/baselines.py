"""The selections a user would make instead of a bandit, as policies with the same budget accounting: they rank the
unextracted documents once per round and extract the highest first.

Rules:

* ``knn_reference`` (an embedding-similarity filter): a document's score is its highest cosine similarity to any pair
  of the reference set, both embedded with the current embedder (the reference rendered "Q: ...\\nA: ...", as the
  reward renders it).
* ``classifier`` (MAmmoTH2's recall step, arXiv 2405.03548, with a linear model over hashed word 1-2 grams in place of
  fastText): logistic regression trained on the reference pairs (positives) against a seeded random sample of the
  corpus (negatives, four per positive, at least 500), balanced class weights; a document's score is the positive
  class's probability.
* Ties are broken by doc_id, so the same corpus, reference and seed give the same order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NEGATIVES_PER_POSITIVE = 4
MIN_NEGATIVES = 500


def reference_similarity(document_vectors: np.ndarray, reference_vectors: np.ndarray) -> np.ndarray:
    """Each document's highest cosine similarity to a reference pair (vectors normalized)."""
    if len(document_vectors) == 0:
        return np.zeros(0)
    out = np.empty(len(document_vectors))
    for start in range(0, len(document_vectors), 8192):
        out[start:start + 8192] = (document_vectors[start:start + 8192] @ reference_vectors.T).max(axis=1)
    return out


def _features():
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(ngram_range=(1, 2), n_features=2**18, alternate_sign=False, norm="l2",
                             token_pattern=r"(?u)\b\w\w+\b")


def reference_classifier_scores(reference_texts: Sequence[str], background_texts: Sequence[str],
                                texts: Sequence[str], seed: int = 0) -> np.ndarray:
    """P(reference-like) of each of ``texts``, from a linear classifier of reference against background texts."""
    from sklearn.linear_model import LogisticRegression

    if not texts:
        return np.zeros(0)
    features = _features()
    x = features.transform(list(reference_texts) + list(background_texts))
    y = np.r_[np.ones(len(reference_texts)), np.zeros(len(background_texts))]
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000, random_state=seed).fit(x, y)
    scores = np.empty(len(texts))
    for start in range(0, len(texts), 8192):
        scores[start:start + 8192] = model.predict_proba(features.transform(texts[start:start + 8192]))[:, 1]
    return scores


def negatives_wanted(positives: int) -> int:
    return max(MIN_NEGATIVES, NEGATIVES_PER_POSITIVE * positives)


def top_documents(doc_ids: Sequence[str], scores: np.ndarray, n: int) -> list[int]:
    """Positions of the ``n`` highest scores, ties by doc_id."""
    order = sorted(range(len(doc_ids)), key=lambda i: (-scores[i], doc_ids[i]))
    return order[:n]

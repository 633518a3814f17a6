"""The loss of EQUAL's contrastive warm-up (see :mod:`equal_dagster.core.contrastive`): sentence-transformers'
MultipleNegativesRankingLoss (InfoNCE) with the document's own QA texts taken out of its negatives. Its own module
because it subclasses a sentence-transformers loss, which is imported only when an embedder is trained."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss


class OwnPairsMaskedRankingLoss(MultipleNegativesRankingLoss):
    """InfoNCE over the batch as in MultipleNegativesRankingLoss (anchor i against every positive of the batch,
    then every hard negative; scale = 1 / temperature; the right answer is positive i), except that a candidate
    whose text is one of anchor i's own QA texts is left out of its softmax. Web pages repeat each other's pairs
    (an FAQ entry copied across sites, a near-duplicate page): without the mask, page A's row would push page A
    away from its own entry whenever page B's row carries it.

    Rows are found through the dataset's ``label`` column, the row's index into ``candidate_texts`` (its
    positive, then its negative when there is one) and ``own_texts`` (its document's QA texts)."""

    def __init__(self, model, scale: float, candidate_texts: Sequence[Sequence[str]],
                 own_texts: Sequence[set[str]]) -> None:
        super().__init__(model, scale=scale)
        self.candidate_texts = candidate_texts
        self.own_texts = own_texts

    def own_candidate_mask(self, rows: list[int]) -> torch.Tensor:
        """(batch, batch x columns): True where the candidate is the anchor's own text, its positive excepted."""
        columns = len(self.candidate_texts[rows[0]])
        candidates = [self.candidate_texts[row][column] for column in range(columns) for row in rows]
        return torch.tensor([[k != i and text in self.own_texts[row] for k, text in enumerate(candidates)]
                             for i, row in enumerate(rows)], dtype=torch.bool)

    def forward(self, sentence_features: Iterable[dict[str, torch.Tensor]], labels: torch.Tensor) -> torch.Tensor:
        anchors, *candidates = [self.model(features)["sentence_embedding"] for features in sentence_features]
        scores = self.similarity_fct(anchors, torch.cat(candidates)) * self.scale
        mask = self.own_candidate_mask(labels.tolist()).to(scores.device)
        scores = scores.masked_fill(mask, float("-inf"))
        return F.cross_entropy(scores, torch.arange(len(anchors), device=scores.device))

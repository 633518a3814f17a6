"""The batches of EQUAL's contrastive warm-up (see :mod:`equal_dagster.core.contrastive`): in-batch negatives
that are true negatives. Its own module because it subclasses a sentence-transformers sampler, which is imported
only when an embedder is trained."""

from __future__ import annotations

import torch
from sentence_transformers.base.sampler import DefaultBatchSampler


class NoSharedPairsBatchSampler(DefaultBatchSampler):
    """Batches for in-batch negatives in which no negative is a false one: two rows share a batch only if their
    documents share no QA text and neither row's hard negative is one of the other's texts. (Sentence-transformers'
    NoDuplicatesBatchSampler keeps identical values apart; this one also keeps apart the row (page A, entry 1)
    and the row (page B, entry 3) when page A has entry 3 too, as copied FAQ entries and near-duplicate pages do.)

    A row's document is its ``anchor`` text; its QA texts are the ``positive`` of every row with that anchor.
    Rows are shuffled per epoch (seed + epoch) and placed greedily, a row that conflicts waiting for a later
    batch, so an epoch can have a batch or two more than ``len(dataset) / batch_size``; ``__len__`` is the
    count of the first epoch."""

    def __init__(self, dataset, batch_size: int, drop_last: bool, valid_label_columns=None, generator=None,
                 seed: int = 0) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                         valid_label_columns=valid_label_columns, generator=generator, seed=seed)
        anchors, positives = dataset["anchor"], dataset["positive"]
        negatives = dataset["negative"] if "negative" in dataset.column_names else [None] * len(anchors)
        texts_of: dict[str, set[str]] = {}
        for anchor, positive in zip(anchors, positives):
            texts_of.setdefault(anchor, {anchor}).add(positive)
        self.keys = [texts_of[a] | ({n} if n is not None else set()) for a, n in zip(anchors, negatives)]
        self._length = sum(1 for _ in self._batches(0))

    def _batches(self, epoch: int):
        generator = torch.Generator().manual_seed(self.seed + epoch)
        waiting = torch.randperm(len(self.keys), generator=generator).tolist()
        while waiting:
            batch, taken, deferred = [], set(), []
            for index in waiting:
                if len(batch) < self.batch_size and self.keys[index].isdisjoint(taken):
                    batch.append(index)
                    taken |= self.keys[index]
                else:
                    deferred.append(index)
            waiting = deferred
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch

    def __iter__(self):
        yield from self._batches(self.epoch)

    def __len__(self) -> int:
        return self._length

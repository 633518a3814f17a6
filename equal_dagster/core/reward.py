"""EQUAL's reward (arXiv 2505.12250, section 3.3): how close an arm's new QA pairs lie to the reference set, measured
by the optimal-transport (Wasserstein) distance between their embeddings.

Rules:

* The reference set is the user's file of question/answer pairs (JSONL, one object per line with non-empty string
  fields ``question`` and ``answer``). A line that is not such an object stops the run with its line number: the
  reference defines the goal, and a silently shortened one would change every reward.
* QA pairs and reference pairs are embedded the same way, as ``"Q: <question>\\nA: <answer>"`` with the current
  embedder; vectors are cached in the store by text hash and embedder (``text_embeddings``), so a pair is embedded
  once per embedder.
* W is the optimal-transport distance between the two point clouds with uniform weights, computed with POT:
  exact (``ot.emd2``) while the cost matrix has at most ``exact_max_cells`` cells, entropic Sinkhorn
  (``ot.sinkhorn2``, log domain) above. The ground cost is cosine distance by default (``euclidean`` and
  ``sqeuclidean`` are the other choices).
* The reward is ``1 - W`` clipped to [0, 1]; a pull that yields no QA pair gets reward 0.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from equal_dagster.core.contrastive import render_qa
from equal_dagster.core.store import Store, table_frame

COSTS = ("cosine", "euclidean", "sqeuclidean")


class ReferenceSetError(ValueError):
    """A reference file that is missing, empty, or holds a line that is not a question/answer object."""


@dataclass(frozen=True)
class ReferenceSet:
    path: str
    pairs: list[tuple[str, str]]
    sha256: str

    @property
    def texts(self) -> list[str]:
        return [render_qa(q, a) for q, a in self.pairs]


def load_reference_set(path: str | Path) -> ReferenceSet:
    """Read a JSONL reference set (see the module's rules)."""
    path = Path(path)
    if not path.is_file():
        raise ReferenceSetError(f"reference set {path} does not exist: name a JSONL file of question/answer pairs "
                                "(EQUAL_REFERENCE, or the bandit resource's `reference`)")
    raw = path.read_bytes()
    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    for line_no, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (UnicodeDecodeError, ValueError) as exc:
            problems.append(f"line {line_no}: not JSON ({exc.__class__.__name__})")
            continue
        if not isinstance(row, dict):
            problems.append(f"line {line_no}: not an object")
            continue
        question, answer = row.get("question"), row.get("answer")
        missing = [k for k, v in (("question", question), ("answer", answer)) if not isinstance(v, str) or not v.strip()]
        if missing:
            problems.append(f"line {line_no}: {' and '.join(missing)} missing, empty or not text")
            continue
        pairs.append((question.strip(), answer.strip()))
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ReferenceSetError(f"reference set {path}: {len(problems)} bad line(s): {shown}")
    if not pairs:
        raise ReferenceSetError(f"reference set {path} holds no question/answer pair")
    return ReferenceSet(str(path), pairs, hashlib.sha256(raw).hexdigest())


@dataclass(frozen=True)
class OTSettings:
    cost: str = "cosine"
    exact_max_cells: int = 4_000_000
    sinkhorn_reg: float = 0.05

    def __post_init__(self) -> None:
        if self.cost not in COSTS:
            raise ValueError(f"unknown OT cost {self.cost!r}: choose one of {', '.join(COSTS)}")


def ot_distance(x: np.ndarray, y: np.ndarray, settings: OTSettings = OTSettings()) -> float:
    """The optimal-transport distance between point clouds ``x`` and ``y`` (uniform weights)."""
    import ot

    if len(x) == 0 or len(y) == 0:
        raise ValueError("the OT distance needs two non-empty sets of vectors")
    x64, y64 = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    cost = ot.dist(x64, y64, metric=settings.cost)
    if settings.cost == "cosine":
        cost = np.clip(cost, 0.0, 2.0)  # rounding can leave -1e-16 on identical vectors
    a, b = ot.unif(len(x64)), ot.unif(len(y64))
    if cost.size <= settings.exact_max_cells:
        return float(ot.emd2(a, b, cost, numItermax=1_000_000))
    return float(ot.sinkhorn2(a, b, cost, settings.sinkhorn_reg, method="sinkhorn_log"))


def ot_reward(qa_vectors: np.ndarray, reference_vectors: np.ndarray, settings: OTSettings = OTSettings()) -> tuple[float, float | None]:
    """(reward, W): ``1 - W`` clipped to [0, 1]; (0, None) when there is no QA pair."""
    if len(qa_vectors) == 0:
        return 0.0, None
    distance = ot_distance(qa_vectors, reference_vectors, settings)
    return float(min(1.0, max(0.0, 1.0 - distance))), distance


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def embed_texts(store: Store, embedder, texts: Sequence[str], log: Callable[[str], None] | None = None) -> np.ndarray:
    """Vectors of ``texts`` from ``embedder`` (normalized float32, in order), embedding only those the store has no
    vector for yet and keeping the new ones (when the store is writable)."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    hashes = [text_hash(t) for t in texts]
    unique = list(dict.fromkeys(hashes))
    found, matrix = store.text_vectors(unique, embedder.embedder_id)
    vectors = dict(zip(found, matrix))
    missing = [h for h in unique if h not in vectors]
    if missing:
        text_of = dict(zip(hashes, texts))
        new = embedder.encode([text_of[h] for h in missing])
        if log:
            log(f"embedded {len(missing):,} new QA/reference texts ({len(unique) - len(missing):,} from the store)")
        vectors.update(zip(missing, new))
        if not store.read_only:
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            store.insert_text_vectors(table_frame("text_embeddings", {
                "text_hash": missing, "embedder_id": [embedder.embedder_id] * len(missing),
                "vector": [v for v in new], "created_at": [now] * len(missing),
            }))
    return np.stack([vectors[h] for h in hashes]).astype(np.float32, copy=False)


def embed_qa_pairs(store: Store, embedder, questions: Sequence[str], answers: Sequence[str], log=None) -> np.ndarray:
    return embed_texts(store, embedder, [render_qa(q, a) for q, a in zip(questions, answers)], log)

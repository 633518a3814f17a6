"""Quality of QA pairs: InstructMining's indicators and rule, duplicate removal and decontamination.

The rule (InstructMining, Cao et al., "Instruction Mining: When Data Mining Meets Large Language Model Finetuning",
arXiv 2307.06290 v3 onwards; a linear model fitted by least squares on LLaMA-2-7B fine-tuning runs) predicts the loss
a model fine-tuned on the data would have on an evaluation set; lower is better. Two published fits are offered:

* ``rew_len_knn`` (the default; the paper's final rule):

      log L_loss  ∝  1.0694 - 0.1498 * Rew + 8.257e-5 * Len - 0.9350 * Knn6

  with ``Rew`` the reward-model score of the pair, ``Len`` the length of the response (we count the configured
  tokenizer's tokens, else words) and ``Knn6`` the distance to the 6th nearest neighbour in embedding space.
* ``rew_unieval`` (the rule of the paper's first revision, "Instruction Mining: High-Quality Instruction Data
  Selection for Large Language Models", fitted on LLaMA-7B):

      log L_loss  ∝  0.0274 - 0.0078 * Rew + 0.4421 * Und - 0.3212 * Nat - 0.1520 * Coh

  with ``Und``, ``Nat`` and ``Coh`` UniEval's understandability, naturalness and coherence of the response.

Our ``quality_score`` is the negated prediction (higher is better). Without a reward model, ``Rew`` is 0 for every
pair: the term is then the same constant for all, so rankings follow the other indicators alone, and the pair's
indicators record the reward as missing. Every other indicator of the chosen rule is required: without six other
pairs ``Knn6`` is missing and the pair gets no score (it is kept or dropped by the other rules only and ranks last);
``rew_unieval`` without a UniEval model is refused before any work. (The coefficients were checked against two
independent restatements of the paper, the stored copies of the paper itself ending before its rule.)

Indicators (InstructMining, Cao et al., arXiv 2307.06290, table 1: natural-language indicators of instruction data):

* ``input_length`` / ``output_length``: tokens of the question / the answer, by the given tokenizer, else words.
* ``mtld``: the measure of textual lexical diversity (McCarthy and Jarvis, 2010) of the answer: the mean length of
  the word runs whose type-token ratio stays above 0.72, computed forwards and backwards and averaged; the last,
  unfinished run counts as the fraction ``(1 - TTR) / (1 - 0.72)`` of a run. A text whose ratio never falls to the
  threshold has no complete run; its MTLD is then its length in words.
* ``knn_distance``: the Euclidean distance from a pair's normalized embedding to its k-th nearest other pair
  (InstructMining's KNN-6: k = 6); NaN where there are not k other pairs.

Duplicates: exact ones (the same question and answer after Unicode NFKC, lower case and folded whitespace) keep
their first occurrence; near ones are found with MinHash LSH (``datasketch``) over word 5-shingles of question and
answer (Jaccard threshold 0.8 by default, 128 permutations), and the first pair of each group is kept.

Decontamination: a pair is contaminated when it shares a word n-gram (default 13, as GPT-3's decontamination) with
any evaluation item's question or answer; an evaluation text shorter than n words but of at least ``min_words``
(default 8) counts as one n-gram of its own length, so a short evaluation question copied whole is still caught,
while a very short text ("The answer is 12.") is too common to mean anything and is left out.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

MTLD_THRESHOLD = 0.72
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)


def normalize(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def words(text: str) -> list[str]:
    return _WORD.findall(normalize(text))


def token_length(text: str, tokenizer=None) -> int:
    if tokenizer is not None:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return len(words(text))


def _mtld_pass(tokens: Sequence[str], threshold: float) -> float:
    factors = 0.0
    types: set[str] = set()
    count = 0
    for token in tokens:
        count += 1
        types.add(token)
        if len(types) / count <= threshold:
            factors += 1
            types, count = set(), 0
    if count:
        ratio = len(types) / count
        factors += (1 - ratio) / (1 - threshold)
    return len(tokens) / factors if factors > 0 else float(len(tokens))


def mtld(text: str, threshold: float = MTLD_THRESHOLD) -> float:
    """MTLD of ``text`` (see the module's rules); 0 for a text without words."""
    tokens = words(text)
    if not tokens:
        return 0.0
    return (_mtld_pass(tokens, threshold) + _mtld_pass(tokens[::-1], threshold)) / 2


def knn_distance(vectors: np.ndarray, k: int = 6) -> np.ndarray:
    """Distance from each (normalized) vector to its k-th nearest other vector; NaN with fewer than k others."""
    from sklearn.neighbors import NearestNeighbors

    n = len(vectors)
    if n <= k:
        return np.full(n, np.nan)
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(vectors).kneighbors(vectors)
    return distances[:, k]  # column 0 is the point itself


def exact_duplicates(pairs: Sequence[tuple[str, str]]) -> dict[int, int]:
    """index -> index of the first identical pair, for every pair but the first of each group."""
    first: dict[str, int] = {}
    duplicates: dict[int, int] = {}
    for i, (question, answer) in enumerate(pairs):
        key = hashlib.sha256(f"{normalize(question)}\x1f{normalize(answer)}".encode()).hexdigest()
        if key in first:
            duplicates[i] = first[key]
        else:
            first[key] = i
    return duplicates


def _shingles(text: str, size: int = 5) -> set[bytes]:
    tokens = words(text)
    if len(tokens) < size:
        return {" ".join(tokens).encode()} if tokens else set()
    return {" ".join(tokens[i : i + size]).encode() for i in range(len(tokens) - size + 1)}


def near_duplicates(pairs: Sequence[tuple[str, str]], threshold: float = 0.8, num_perm: int = 128,
                    skip: Iterable[int] = ()) -> dict[int, int]:
    """index -> index of an earlier pair it nearly repeats (MinHash LSH, estimated Jaccard >= ``threshold``);
    pairs in ``skip`` (exact duplicates, say) are neither tested nor kept as originals."""
    from datasketch import MinHash, MinHashLSH

    skipped = set(skip)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    found: dict[int, int] = {}
    for i, (question, answer) in enumerate(pairs):
        if i in skipped:
            continue
        signature = MinHash(num_perm=num_perm, seed=1)
        signature.update_batch(list(_shingles(f"{question} {answer}")) or [b""])
        matches = sorted(int(key) for key in lsh.query(signature))
        if matches:
            found[i] = matches[0]
        else:
            lsh.insert(str(i), signature)
    return found


class Decontaminator:
    """Word n-grams of every evaluation text; :meth:`overlap` names the first one a text shares."""

    def __init__(self, evaluation_texts: Iterable[str], n: int = 13, min_words: int = 8):
        if n < 1:
            raise ValueError("n-gram size must be at least 1")
        self.n = n
        self.ignored_short = 0
        self.grams: set[tuple[str, ...]] = set()
        self.short: set[tuple[str, ...]] = set()  # evaluation texts shorter than n words, whole
        for text in evaluation_texts:
            tokens = tuple(words(text))
            if len(tokens) < min(n, min_words):
                self.ignored_short += bool(tokens)
                continue
            if len(tokens) < n:
                self.short.add(tokens)
            else:
                self.grams.update(tokens[i : i + n] for i in range(len(tokens) - n + 1))
        self._short_lengths = sorted({len(t) for t in self.short})

    def overlap(self, text: str) -> str | None:
        """The first evaluation n-gram found in ``text`` (joined by spaces), or None."""
        tokens = tuple(words(text))
        for i in range(len(tokens) - self.n + 1):
            gram = tokens[i : i + self.n]
            if gram in self.grams:
                return " ".join(gram)
        for length in self._short_lengths:
            for i in range(len(tokens) - length + 1):
                if tokens[i : i + length] in self.short:
                    return " ".join(tokens[i : i + length])
        return None


@dataclass(frozen=True)
class InstructMiningRule:
    """log L_loss = intercept + sum(coefficient * indicator) (see the module's docstring for the published fits).

    ``optional`` indicators count as 0 when missing (a constant for every pair); any other missing indicator leaves
    the pair without a score."""

    name: str
    intercept: float
    coefficients: tuple[tuple[str, float], ...]
    optional: tuple[str, ...] = ("reward",)

    @property
    def indicators(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.coefficients)

    def predicted_log_loss(self, indicators: dict[str, float | None]) -> float | None:
        total = self.intercept
        for name, coefficient in self.coefficients:
            value = indicators.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                if name not in self.optional:
                    return None
                value = 0.0
            total += coefficient * value
        return total

    def quality_score(self, indicators: dict[str, float | None]) -> float | None:
        """The negated predicted loss (higher is better); None when a required indicator is missing."""
        predicted = self.predicted_log_loss(indicators)
        return None if predicted is None else -predicted


INSTRUCTMINING_RULES = {
    "rew_len_knn": InstructMiningRule(
        "rew_len_knn", 1.0694, (("reward", -0.1498), ("output_length", 8.257e-5), ("knn6", -0.9350))),
    "rew_unieval": InstructMiningRule(
        "rew_unieval", 0.0274,
        (("reward", -0.0078), ("understandability", 0.4421), ("naturalness", -0.3212), ("coherence", -0.1520))),
}


def reward_scores(model_path: str, questions: Sequence[str], answers: Sequence[str], *, batch_size: int = 8,
                  device: str = "cpu", max_length: int = 512) -> list[float]:
    """InstructMining's Rew: a reward model's score of each (question, answer) pair (a sequence-classification model
    with one output, such as OpenAssistant's reward-model-deberta-v3-large-v2), read from ``model_path``."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(model_path).to(device).eval()
    scores: list[float] = []
    for start in range(0, len(questions), batch_size):
        batch = tokenizer(list(questions[start : start + batch_size]), list(answers[start : start + batch_size]),
                          truncation=True, max_length=max_length, padding=True, return_tensors="pt").to(device)
        with torch.no_grad():
            scores += model(**batch).logits[:, 0].float().tolist()
    return scores


def answer_perplexities(model_path: str, questions: Sequence[str], answers: Sequence[str], *, device: str = "cpu",
                        max_length: int = 512) -> list[float | None]:
    """InstructMining's PPL: the perplexity of each answer given its question under a reference causal LM, the
    question posed as in fine-tuning (`core/training.py`); None where no answer token fits ``max_length``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from equal_dagster.core.training import encode_example

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path).to(device).eval()
    out: list[float | None] = []
    for question, answer in zip(questions, answers):
        example = encode_example(tokenizer, question, answer, max_length)
        if example is None:
            out.append(None)
            continue
        batch = {k: torch.tensor([v], device=device) for k, v in example.items()}
        with torch.no_grad():
            out.append(float(torch.exp(model(**batch).loss)))
    return out


# UniEval's dialogue evaluator (Zhong et al., 2022, arXiv 2210.07197; github.com/maszhongming/UniEval, utils.py):
# each dimension is a yes/no question put to a T5 model; the score is P(Yes) / (P(Yes) + P(No)) at the first decoded
# token. InstructMining scores a pair as a one-turn dialogue: the instruction is the history, the answer the response.
UNIEVAL_QUESTIONS = {
    "naturalness": "question: Is this a natural response in the dialogue? </s> response: {response}",
    "coherence": ("question: Is this a coherent response given the dialogue history? </s> response: {response} "
                  "</s> dialogue history: {history}"),
    "understandability": "question: Is this an understandable response in the dialogue? </s> response: {response}",
}


def unieval_scores(model_path: str, questions: Sequence[str], answers: Sequence[str], *, batch_size: int = 8,
                   device: str = "cpu", max_length: int = 1024) -> dict[str, list[float]]:
    """Naturalness, coherence and understandability of each pair from a UniEval dialogue model (such as
    MingZhong/unieval-dialog) read from ``model_path``."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_path).to(device).eval()
    yes = tokenizer("Yes", add_special_tokens=False)["input_ids"][0]
    no = tokenizer("No", add_special_tokens=False)["input_ids"][0]
    start = model.config.decoder_start_token_id
    out: dict[str, list[float]] = {}
    for dimension, template in UNIEVAL_QUESTIONS.items():
        prompts = [template.format(response=a, history=q) for q, a in zip(questions, answers)]
        scores: list[float] = []
        for first in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[first : first + batch_size], truncation=True, max_length=max_length,
                              padding=True, return_tensors="pt").to(device)
            decoder = torch.full((batch["input_ids"].shape[0], 1), start, dtype=torch.long, device=device)
            with torch.no_grad():
                logits = model(**batch, decoder_input_ids=decoder).logits[:, 0, :]
            pair = torch.softmax(logits[:, [yes, no]].float(), dim=-1)
            scores += pair[:, 0].tolist()
        out[dimension] = scores
    return out

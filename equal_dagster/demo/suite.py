"""The corpora of the selection benchmark (``benchmarks/selection.py``): differently shaped generated corpora that the
selection defaults were not written for, each with the kinds that serve its math goal.

Each corpus varies what makes selection hard: its size (5k to 50k rows), the share of relevant pages (2% to 25%),
relevant pages in several forms (worksheets, forum threads) over 14 kinds of problem, pages on topic that hold no
pairs (homework chatter, math news), and pages that yield many pairs far from the goal (pub quizzes). All of them
share the demo's reference set (grade-school word problems with worked answers).
"""

from __future__ import annotations

from dataclasses import dataclass

from equal_dagster.demo.corpus import DEMO_MIX, CorpusMix

# the demo's other kinds, with their demo weights
_BACKGROUND = (("math_explainer", 3), ("code_qa", 10), ("howto", 10), ("faq", 8), ("encyclopedia", 12), ("news", 12),
               ("shop", 10), ("boilerplate", 6), ("forum", 10), ("non_english", 4))


@dataclass(frozen=True)
class SuiteCorpus:
    mix: CorpusMix
    documents: int


SELECTION_SUITE: tuple[SuiteCorpus, ...] = (
    SuiteCorpus(DEMO_MIX, 5_000),
    SuiteCorpus(CorpusMix(
        "rare", (("math_problem", 2), ("math_chatter", 5), ("math_news", 3)) + _BACKGROUND,
        about="2% relevant; homework chatter and math news on topic without pairs"), 20_000),
    SuiteCorpus(CorpusMix(
        "spread", (("math_problem", 13), ("math_thread", 13), ("trivia_quiz", 10)) + _BACKGROUND[:7]
        + (("forum", 8), ("non_english", 4)),
        relevant=frozenset({"math_problem", "math_thread"}),
        about="25% relevant, as worksheets and as forum threads; pub quizzes yield many pairs far from the goal"), 10_000),
    SuiteCorpus(CorpusMix(
        "large", (("math_problem", 3), ("math_thread", 2), ("math_chatter", 6), ("math_news", 3), ("trivia_quiz", 6))
        + _BACKGROUND,
        relevant=frozenset({"math_problem", "math_thread"}),
        about="5% relevant in two forms, among chatter, news and quizzes"), 50_000),
)


def suite_corpus(name: str) -> SuiteCorpus:
    for corpus in SELECTION_SUITE:
        if corpus.mix.name == name:
            return corpus
    raise ValueError(f"no corpus {name!r} in the selection suite: {', '.join(c.mix.name for c in SELECTION_SUITE)}")

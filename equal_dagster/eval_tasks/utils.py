"""Metrics for the equal-dagster local tasks (imported by lm-eval through `!function utils.<name>`)."""


def gold_answer_nll(doc, results):
    """Negative log-likelihood of the gold answer: in nats, and per character of the answer."""
    loglikelihood, _ = results[0]
    answer = doc["answer"]
    return {"nll": -loglikelihood, "nll_per_char": -loglikelihood / max(len(answer), 1)}

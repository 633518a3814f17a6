"""Lineage of one QA pair: the chain from the crawl file line to the pair, and what became of it.

Links, in order: source (file and line), crawl, document (url, first line), cluster (id, size, top terms, sample
lines, in the clustering the round was played on), round (policy, the arm's score when it was chosen, the reward
the pull earned), extraction (backend, model, strategy, prompt version, cache key, tokens, status, Dagster run),
the pair itself (and the Dagster run that wrote it), its quality (score, kept or why dropped) once scored, and the
models trained on it with their evaluation scores.
"""

from __future__ import annotations

import json
from typing import Any

from equal_dagster.core.store import Store


class LineageNotFound(KeyError):
    pass


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value


def _arm_entry(entries: list[dict] | None, arm: int | None) -> dict | None:
    if arm is None:
        return None
    return next((e for e in entries or [] if int(e.get("arm", -1)) == arm), None)


def qa_lineage(store: Store, qa_id: str) -> dict[str, Any]:
    """Every link of QA pair ``qa_id`` (see the module's rules) as plain data."""
    found = store.lineage(qa_id)
    if found is None:
        raise LineageNotFound(f"no QA pair {qa_id!r} in {store.path or 'the store'}")
    qa, document, round_row, extraction = found["qa_pair"], found["document"], found["round"], found["extraction"]
    cluster_id = found["cluster"]["cluster_id"] if found["cluster"] else None
    summary = found["cluster_summary"]
    arms = _json(round_row["arms"]) if round_row and round_row.get("arms") else []
    rewards = _json(round_row["rewards"]) if round_row and round_row.get("rewards") else {}
    chosen = _arm_entry(arms, cluster_id)
    reward = _arm_entry(rewards.get("arms") if isinstance(rewards, dict) else None, cluster_id)
    text_start = (document or {}).get("text_start") or ""
    models: dict[str, dict] = {}
    for row in store.models_trained_on(qa_id).iter_rows(named=True):
        model = models.setdefault(row["model_id"], {"model_id": row["model_id"], "base_model": row["base_model"],
                                                    "path": row["path"], "train_loss": row["train_loss"],
                                                    "dataset_hash": row["dataset_hash"], "eval_scores": {}})
        if row["metric"] is not None:
            model["eval_scores"][f"{row['task']}/{row['metric']}"] = row["value"]
    return {
        "qa_id": qa_id,
        "source": None if document is None else {"file": document["source_file"], "line": document["line_no"]},
        "crawl": None if document is None else {"crawl_id": document["crawl_id"], "ingested_at": str(document["ingested_at"])},
        "document": None if document is None else {
            "doc_id": document["doc_id"], "url": document["url"], "first_line": text_start.split("\n", 1)[0][:200],
            "n_chars": document["n_chars"], "content_hash": document["content_hash"]},
        "cluster": None if cluster_id is None else {
            "clustering_id": found["cluster"]["clustering_id"], "cluster_id": cluster_id,
            "assignment": found["cluster"].get("assignment"),
            "size": summary["size"] if summary else None,
            "top_terms": _json(summary["top_terms"]) if summary else None,
            "sample_lines": _json(summary["sample_lines"]) if summary else None},
        "round": None if round_row is None else {
            "round_id": round_row["round_id"], "round_no": round_row["round_no"], "policy": round_row["policy"],
            "seed": round_row["seed"], "arm_chosen": chosen,
            "arm_score_when_chosen": (chosen or {}).get("score"), "why_chosen": (chosen or {}).get("reason"),
            "arm_reward": (reward or {}).get("reward"), "arm_ot_distance": (reward or {}).get("distance"),
            "round_reward": (rewards.get("round") or {}).get("reward") if isinstance(rewards, dict) else None,
            "finished_at": str(round_row["finished_at"]), "dagster_run_id": round_row["dagster_run_id"]},
        "extraction": None if extraction is None else {
            k: extraction.get(k) for k in ("backend", "model", "strategy", "prompt_version", "cache_key", "tokens_in",
                                           "tokens_out", "tokens_counted_by", "status", "cache_hit", "retries",
                                           "dagster_run_id")},
        "qa_pair": {"question": qa["question"], "answer": qa["answer"], "extractor": qa["extractor"],
                    "created_at": str(qa["created_at"]), "dagster_run_id": qa["dagster_run_id"]},
        "quality": {"score": qa["quality_score"], "indicators": _json(qa["quality"]), "kept": qa["kept"],
                    "drop_reason": qa["drop_reason"],
                    "note": None if qa["quality_score"] is not None or qa["kept"] is not None
                    else "not scored yet: materialize qa_dataset"},
        "models": list(models.values()),
    }


def format_lineage(chain: dict[str, Any]) -> str:
    """The chain as indented text, one link per block."""
    def short(text: Any, limit: int = 100) -> str:
        text = "" if text is None else str(text).replace("\n", " ")
        return text if len(text) <= limit else text[: limit - 1] + "…"

    lines = [f"QA pair {chain['qa_id']}"]
    source, crawl, doc = chain["source"], chain["crawl"], chain["document"]
    lines.append(f"  source      {source['file']}:{source['line']}" if source else "  source      (document no longer in the store)")
    if crawl:
        lines.append(f"  crawl       {crawl['crawl_id']} (ingested {crawl['ingested_at']})")
    if doc:
        lines.append(f"  document    {doc['doc_id']}  url {doc['url'] or '-'}  ({doc['n_chars']:,} chars)")
        lines.append(f"              first line: {short(doc['first_line'])}")
    cluster = chain["cluster"]
    if cluster:
        lines.append(f"  cluster     {cluster['cluster_id']} of {cluster['clustering_id']} ({cluster['assignment']}), "
                     f"size {cluster['size']}, top terms: {', '.join(cluster['top_terms'] or [])}")
        for sample in cluster["sample_lines"] or []:
            lines.append(f"              e.g. {short(sample, 90)}")
    else:
        lines.append("  cluster     (none: the document was not clustered)")
    rnd = chain["round"]
    if rnd:
        if rnd["round_no"] == 0:
            why = "warm-up: a seeded random sample, no arm chosen"
        elif rnd["arm_chosen"]:
            score = rnd["arm_score_when_chosen"]
            why = (f"arm {cluster['cluster_id'] if cluster else '?'} chosen ({rnd['why_chosen']}, score "
                   f"{'infinite (never played)' if score is None else f'{score:.4f}'})")
        else:
            why = f"document drawn by the {rnd['policy']} policy"
        arm_reward = "-" if rnd["arm_reward"] is None else f"{rnd['arm_reward']:.4f}"
        round_reward = "-" if rnd["round_reward"] is None else f"{rnd['round_reward']:.4f}"
        lines.append(f"  round       {rnd['round_id']} (policy {rnd['policy']}, seed {rnd['seed']}): {why}; "
                     f"arm reward {arm_reward}, round reward {round_reward}; Dagster run {rnd['dagster_run_id']}")
    ex = chain["extraction"]
    if ex:
        lines.append(f"  extraction  backend {ex['backend']}, model {ex['model'] or '-'}, strategy {ex['strategy']}, "
                     f"prompt {ex['prompt_version']}, status {ex['status']}, cache key {ex['cache_key'] or '-'} "
                     f"(cache hit: {ex['cache_hit']}), tokens {ex['tokens_in']} in / {ex['tokens_out']} out "
                     f"({ex['tokens_counted_by']})")
    qa = chain["qa_pair"]
    lines.append(f"  question    {short(qa['question'], 160)}")
    lines.append(f"  answer      {short(qa['answer'], 160)}")
    lines.append(f"  written by  {qa['extractor']} in Dagster run {qa['dagster_run_id']} at {qa['created_at']}")
    quality = chain["quality"]
    if quality["note"]:
        lines.append(f"  quality     {quality['note']}")
    else:
        kept = "kept" if quality["kept"] else f"dropped ({quality['drop_reason']})"
        score = "-" if quality["score"] is None else f"{quality['score']:.4f}"
        lines.append(f"  quality     score {score}, {kept}")
    for model in chain["models"]:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in sorted(model["eval_scores"].items())) or "not evaluated yet"
        lines.append(f"  model       {model['model_id']} (train loss {model['train_loss']:.4f}): {scores}")
    if not chain["models"]:
        lines.append("  models      none trained on this pair yet")
    return "\n".join(lines)

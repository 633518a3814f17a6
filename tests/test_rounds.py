"""bandit_rounds materialized in process from the Definitions, on a clustered demo store: order, re-runs, budget,
a crash in the middle of a round, new crawls, the sensor and the schedule, lineage."""

import json
import shutil

import dagster as dg
import polars as pl
import pytest
from conftest import bandit_for
from doubles import FakeOpenAIServer

from equal_dagster.automation import next_round_sensor, reextraction_schedule
from equal_dagster.cli import main
from equal_dagster.core.bandit import BanditParams, make_policy
from equal_dagster.core.embedding import Embedder
from equal_dagster.core.reward import embed_texts, load_reference_set
from equal_dagster.core.rounds import RETRY_STATUSES, bandit_state
from equal_dagster.core.settings import EqualPaths
from equal_dagster.core.store import Store
from equal_dagster.definitions import build_definitions
from equal_dagster.demo.corpus import CRAWL_NAMES
from equal_dagster.partitions import crawls_partitions, rounds_partitions
from equal_dagster.resources.llm import ExtractionResource
from equal_dagster.resources.store import StoreResource

FIRST, SECOND = CRAWL_NAMES


@pytest.fixture
def home(clustered, tmp_path) -> EqualPaths:
    """A private copy of the clustered home."""
    shutil.copytree(clustered.home, tmp_path / "home")
    return EqualPaths(tmp_path / "home", tmp_path / "home" / "crawls")


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawls_partitions.name, list(CRAWL_NAMES))
        yield instance


def play(defs, instance, key, replay: bool = False):
    if key not in instance.get_dynamic_partitions(rounds_partitions.name):
        instance.add_dynamic_partitions(rounds_partitions.name, [key])
    config = {"ops": {"bandit_rounds": {"config": {"replay": True}}}} if replay else None
    return defs.resolve_job_def("bandit_round").execute_in_process(partition_key=key, instance=instance,
                                                                    raise_on_error=False, run_config=config)


def metadata(result):
    return {k: v.value for k, v in result.asset_materializations_for_node("bandit_rounds")[0].metadata.items()}


def failure(result) -> str:
    """The step's error message and its causes'."""
    assert not result.success
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    return "\n".join(messages)


def test_rounds_run_in_order_and_the_latest_can_be_rerun(home, instance, capsys):
    defs = build_definitions(home, llm=ExtractionResource(), bandit=bandit_for(home))
    assert "needs round r0001 first" in failure(play(defs, instance, "r0002"))
    assert "not of the form r0001" in failure(play(defs, instance, "round-7"))

    first = play(defs, instance, "r0001")
    assert first.success
    meta = metadata(first)
    with Store.open(home.store, read_only=True) as store:
        warmup_documents = store.extractions("round-0").height
        round_one = store.extractions("r0001")
        row = store.rounds().filter(store.rounds()["round_id"] == "r0001").to_dicts()[0]
    assert meta["documents"] == 8 == round_one.height and meta["documents_spent_total"] == warmup_documents + 8
    assert not set(round_one["doc_id"]) & set(store_docs(home, "round-0"))  # the warm-up's documents are not drawn again
    assert "data:image/png;base64," in meta["reward_plot"] and "| arm | why | score |" in meta["arms"]
    assert 0.0 <= meta["round_reward"] <= 1.0 and meta["warm_start_arms"] > 0
    assert "the rules backend makes no LLM call" in meta["budget_estimate"]  # round 1 says what the budget costs
    checks = {c.check_name: c for c in first.get_asset_check_evaluations()}
    assert set(checks) == {"within_budget", "every_document_has_a_status", "reward_in_range"}
    assert all(c.passed for c in checks.values()) and "8 of 8 drawn documents" in checks["every_document_has_a_status"].description
    arms = json.loads(row["arms"])
    assert len(arms) == 2 and all(a["documents"] == 4 for a in arms) and all(a["reason"] in ("ucb", "unplayed") for a in arms)
    config = json.loads(row["config"])
    assert config["bandit"]["policy"] == "equal_ucb" and len(config["reference"]["sha256"]) == 64
    assert row["clustering_id"] and row["embedder_id"] == "all-MiniLM-L6-v2"

    second = play(defs, instance, "r0002")
    assert second.success
    assert "has later rounds (r0002)" in failure(play(defs, instance, "r0001"))
    with Store.open(home.store, read_only=True) as store:
        before = store.extractions("r0002")["doc_id"].to_list(), store.qa_pairs("r0002")["qa_id"].to_list()
    assert "r0002 was already played" in failure(play(defs, instance, "r0002"))  # not twice by accident
    assert play(defs, instance, "r0002", replay=True).success  # a replay: same choices, same rows, replaced
    with Store.open(home.store, read_only=True) as store:
        after = store.extractions("r0002")["doc_id"].to_list(), store.qa_pairs("r0002")["qa_id"].to_list()
        assert store.rounds()["round_id"].to_list() == ["round-0", "r0001", "r0002"]
    assert before == after

    # lineage of a pair harvested in a bandit round: every link, as text and as JSON
    with Store.open(home.store, read_only=True) as store:
        pairs = store.qa_pairs().filter(store.qa_pairs()["round_id"] != "round-0")
    assert pairs.height > 0
    qa_id, round_id = pairs["qa_id"][0], pairs["round_id"][0]
    run_id = {"r0001": first.run_id, "r0002": second.run_id}.get(round_id)
    assert main(["--home", str(home.home), "lineage", qa_id]) == 0
    text = capsys.readouterr().out
    for link in ("source      ", ".jsonl", "crawl       crawl-2026-", "document    ", "first line:", "cluster     ",
                 "top terms:", f"round       {round_id} (policy equal_ucb", "arm reward", "extraction  backend rules",
                 "prompt rules/v2", "question    ", "answer      ", "written by  rules", "quality     not scored yet"):
        assert link in text, link
    assert round_id == "r0002" or run_id in text  # r0002 was re-run: its rows carry the re-run's id
    assert main(["--home", str(home.home), "lineage", qa_id, "--json"]) == 0
    chain = json.loads(capsys.readouterr().out)
    for link in ("source", "crawl", "document", "cluster", "round", "extraction", "qa_pair", "quality"):
        assert chain[link] is not None, link
    assert chain["round"]["arm_chosen"]["arm"] == chain["cluster"]["cluster_id"]
    assert chain["round"]["why_chosen"] in ("ucb", "unplayed") and chain["round"]["arm_reward"] is not None
    assert chain["qa_pair"]["dagster_run_id"] == chain["round"]["dagster_run_id"] == chain["extraction"]["dagster_run_id"]
    assert main(["--home", str(home.home), "lineage", "qa-nope"]) == 2  # the id given is the mistake


def store_docs(paths, round_id):
    with Store.open(paths.store, read_only=True) as store:
        return store.extractions(round_id)["doc_id"].to_list()


def test_the_budget_stops_the_rounds_and_the_sensor(home, instance):
    with Store.open(home.store, read_only=True) as store:
        warmup_documents = store.extractions("round-0").height
    budget = warmup_documents + 26  # three rounds of 8, then 2
    defs = build_definitions(home, llm=ExtractionResource(), bandit=bandit_for(home, budget=str(budget)))
    context = dg.build_sensor_context(instance=instance, definitions=defs)
    assert "no clusters yet" in next_round_sensor(context).skip_message
    instance.report_runless_asset_event(dg.AssetMaterialization("clusters"))  # as the cluster job would record
    first_request = next_round_sensor(dg.build_sensor_context(instance=instance, definitions=defs))
    assert [r.partition_key for r in first_request.run_requests] == ["r0001"]
    sizes = []
    for number in range(1, 5):
        result = play(defs, instance, f"r{number:04d}")
        assert result.success
        sizes.append(metadata(result)["documents"])
        decision = next_round_sensor(dg.build_sensor_context(instance=instance, definitions=defs))
        if number < 4:
            assert [r.partition_key for r in decision.run_requests] == [f"r{number + 1:04d}"]
            assert decision.run_requests[0].run_key == f"round:r{number + 1:04d}"
            assert decision.dynamic_partitions_requests[0].partition_keys == [f"r{number + 1:04d}"]
        else:
            assert isinstance(decision, dg.SkipReason) and "spent the budget" in decision.skip_message
    assert sizes == [8, 8, 8, 2] and metadata(result)["budget_spent"] and metadata(result)["budget_left_documents"] == 0
    assert "budget" in failure(play(defs, instance, "r0005")) and "is spent" in failure(play(defs, instance, "r0005"))
    with Store.open(home.store, read_only=True) as store:
        assert int(store.rounds()["docs_spent"].sum()) == budget
        extracted = store.extractions()["doc_id"].to_list()
    assert len(extracted) == len(set(extracted))  # no document extracted twice


class CrashMidRound(ExtractionResource):
    """The configured backend, but the run dies after the first ``crash_after`` documents of the round were
    extracted (and their responses cached), as a killed process would."""

    crash_after: int = 3

    def build_extractor(self, cache, log=None, strategy=None, refine=None, ray=None):
        inner = super().build_extractor(cache, log, strategy, refine, ray)
        limit = self.crash_after

        class Crashing:
            def extract(self, documents):
                inner.extract(documents[:limit])
                raise RuntimeError("simulated crash in the middle of a round")

        return Crashing()


def test_a_crash_inside_round_4_of_6_then_a_rerun_pays_nothing_twice(home, instance):
    with FakeOpenAIServer() as server:
        settings = {"backend": "openai", "model": "fake-model", "base_url": server.base_url, "max_retries": 0}
        bandit = bandit_for(home, arms_per_round=2, docs_per_arm=3)
        defs = build_definitions(home, llm=ExtractionResource(**settings), bandit=bandit)
        for number in (1, 2, 3):
            assert play(defs, instance, f"r{number:04d}").success
        assert server.requests == 18
        crashing = build_definitions(home, llm=CrashMidRound(**settings), bandit=bandit)
        crashed = play(crashing, instance, "r0004")
        assert "simulated crash" in failure(crashed) and server.requests == 21
        with Store.open(home.store, read_only=True) as store:
            assert "r0004" not in store.rounds()["round_id"].to_list() and store.extractions("r0004").height == 0
        for number in (4, 5, 6):
            assert play(defs, instance, f"r{number:04d}").success
        assert server.requests == 36  # 6 rounds of 6 documents: each call made once
    with Store.open(home.store, read_only=True) as store:
        round_four = store.extractions("r0004")
        rounds = store.extractions().filter(store.extractions()["round_id"] != "round-0")
    assert round_four["cache_hit"].sum() == 3 and round_four.height == 6  # the three paid before the crash
    assert rounds.height == 36 and rounds["doc_id"].n_unique() == 36  # no duplicate extraction


def test_a_new_crawl_makes_exhausted_arms_playable_and_the_schedule_sees_it(home, instance):
    bandit = bandit_for(home, arms_per_round=1, docs_per_arm=100_000)
    defs = build_definitions(home, llm=ExtractionResource(), bandit=bandit)
    assert play(defs, instance, "r0001").success  # one arm, every document of it: the arm is exhausted
    with Store.open(home.store, read_only=True) as store:
        clustering_id = store.current_clustering()["clustering_id"]
        arm = json.loads(store.rounds()["arms"][1])[0]["arm"]
        assert arm not in store.unextracted_per_cluster(clustering_id, 2, RETRY_STATUSES)
    resources = {"store": StoreResource(database=str(home.store)), "bandit": bandit}
    with dg.build_schedule_context(instance=instance, resources=resources) as context:
        assert "no document ingested since the last round" in reextraction_schedule(context).skip_message

    # the second crawl is re-ingested (as a re-crawl lands), embedded, and joins the clusters
    for job in ("ingest_crawl", "embed_crawl"):
        assert defs.resolve_job_def(job).execute_in_process(partition_key=SECOND, instance=instance).success
    assert defs.resolve_job_def("cluster").execute_in_process(instance=instance).success
    with Store.open(home.store) as store:
        assert store.current_clustering()["clustering_id"] == clustering_id  # joined, not re-clustered
        playable = store.unextracted_per_cluster(clustering_id, 2, RETRY_STATUSES)
        assert playable.get(arm, 0) > 0  # the exhausted arm has new documents
        embedder = Embedder()
        reference = embed_texts(store, embedder, load_reference_set(home.reference_dir / "reference.jsonl").texts)
        state, warm, replayed = bandit_state(store, make_policy(BanditParams()), clustering_id, 2, embedder, reference,
                                             bandit.round_settings().ot, warm_start=True)
    assert replayed == 1 and state.stats(arm).pulls >= 1  # its pull count survived

    with dg.build_schedule_context(instance=instance, resources=resources) as context:
        request = reextraction_schedule(context)
    assert isinstance(request, dg.RunRequest) and request.partition_key == "r0002"
    assert "r0002" in instance.get_dynamic_partitions(rounds_partitions.name)
    assert play(defs, instance, "r0002").success
    with Store.open(home.store, read_only=True) as store:
        drawn = set(store.extractions("r0002")["doc_id"].to_list())
        second_crawl = set(store.documents(SECOND)["doc_id"].to_list())
    assert drawn & second_crawl  # the new crawl's documents are drawn


def test_random_and_all_policies_draw_documents_not_arms(home, instance):
    for policy in ("random", "all"):
        copy = home.home.parent / f"home-{policy}"
        shutil.copytree(home.home, copy)
        paths = EqualPaths(copy, copy / "crawls")
        defs = build_definitions(paths, llm=ExtractionResource(), bandit=bandit_for(paths, policy=policy))
        assert play(defs, instance, "r0001").success
        with Store.open(paths.store, read_only=True) as store:
            drawn = store.extractions("r0001")["doc_id"].to_list()
            documents = store.documents()
            row = store.rounds().to_dicts()[-1]
        assert len(drawn) == 8 and json.loads(row["arms"]) == [] and row["policy"] == policy
        if policy == "all":  # the first unextracted documents in source order
            warm = set(store_docs(paths, "round-0"))
            in_order = [d for d in documents["doc_id"].to_list() if d not in warm][:8]
            assert sorted(drawn) == sorted(in_order)
        instance.delete_dynamic_partition(rounds_partitions.name, "r0001")


def test_a_round_whose_backend_is_down_fails_with_the_cause_and_charges_nothing(home, instance):
    import socket

    with socket.socket() as probe:  # a port where nothing listens: every call fails to connect
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    llm = ExtractionResource(backend="openai", model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    defs = build_definitions(home, llm=llm, bandit=bandit_for(home))
    with Store.open(home.store, read_only=True) as store:
        clustering_id = store.current_clustering()["clustering_id"]
        candidates_before = store.unextracted_per_cluster(clustering_id, 1, RETRY_STATUSES)
        spent_before = store.spent_before(1)
    message = failure(play(defs, instance, "r0001"))
    assert "8 of 8 documents failed at the backend (8 backend_error)" in message and "ConnectError" in message
    assert "nothing is charged" in message
    with Store.open(home.store, read_only=True) as store:
        assert store.round_by_no(1) is None and store.spent_before(2) == spent_before
        assert store.unextracted_per_cluster(clustering_id, 1, RETRY_STATUSES) == candidates_before


def test_a_partly_failing_backend_charges_each_document_once_and_gives_up_after_three_attempts(home, instance):
    """30% transient failures and 10% permanent ones; the `all` policy draws in source order, so the documents that
    failed come first in the next round again."""
    with FakeOpenAIServer(fail_share=0.3, reject_share=0.1) as server:
        llm = ExtractionResource(backend="openai", model="m", base_url=server.base_url, max_retries=0)
        defs = build_definitions(home, llm=llm, bandit=bandit_for(home, policy="all", arms_per_round=4, docs_per_arm=5,
                                                                  max_failure_share=0.9))
        for key in ("r0001", "r0002", "r0003", "r0004"):
            assert play(defs, instance, key).success, key
        with Store.open(home.store, read_only=True) as store:
            tokens = store.rounds()["tokens_spent"].to_list()
        paid = sum(server.answered.values())
        most_attempts = max(server.attempts.values())
        gave_up_at_server = sum(1 for n in server.attempts.values() if n == 3)
        assert play(defs, instance, "r0004", replay=True).success  # from the cache: no good answer paid again
        assert sum(server.answered.values()) == paid
    with Store.open(home.store, read_only=True) as store:
        assert store.rounds()["tokens_spent"].to_list() == tokens  # a replay keeps the tokens the round cost
        rows = store.extractions().filter(store.extractions()["round_id"] != "round-0")
        rounds = store.rounds().filter(store.rounds()["round_no"] >= 1)
    attempts = rows.group_by("doc_id").agg(n=pl.len(), last=pl.col("status").sort_by("round_id").last())
    statuses = rows["status"].value_counts()
    assert set(statuses["status"]) >= {"ok", "backend_error", "rejected", "gave_up"}
    # every document charged once, whatever its attempts
    assert int(rounds["docs_spent"].sum()) == attempts.height < rows.height
    # a transient failure is tried three times, then recorded as gave_up; a rejected document once
    assert attempts["n"].max() == 3
    assert set(attempts.filter(pl.col("n") == 3)["last"]) == {"gave_up"}
    assert set(attempts.filter(pl.col("last") == "rejected")["n"]) == {1}
    gave_up = attempts.filter(pl.col("last") == "gave_up").height
    assert gave_up and gave_up_at_server >= gave_up and most_attempts == 3
    assert (rounds["tokens_spent"] > 0).all()


def test_knn_reference_and_classifier_extract_their_best_ranked_documents_first(home, instance):
    from equal_dagster.core.baselines import reference_similarity

    reference = load_reference_set(home.reference_dir / "reference.jsonl")
    for policy in ("knn_reference", "classifier"):
        copy = home.home.parent / f"home-{policy}"
        shutil.copytree(home.home, copy)
        paths = EqualPaths(copy, copy / "crawls")
        defs = build_definitions(paths, llm=ExtractionResource(), bandit=bandit_for(paths, policy=policy))
        result = play(defs, instance, "r0001")
        assert result.success
        warm = set(store_docs(paths, "round-0"))
        with Store.open(paths.store) as store:
            drawn = store.extractions("r0001")["doc_id"].to_list()
            row = store.rounds().to_dicts()[-1]
            if policy == "knn_reference":  # the 8 embedded documents nearest a reference pair, none of the warm-up's
                embedder = Embedder("all-MiniLM-L6-v2")
                candidates = store.unextracted_documents(1, RETRY_STATUSES, embedded_by=embedder.embedder_id)
                ids = candidates["doc_id"].to_list()
                scores = reference_similarity(store.embedding_vectors(ids, embedder.embedder_id),
                                              embed_texts(store, embedder, reference.texts))
                expected = [ids[i] for i in sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))[:8]]
                assert sorted(drawn) == sorted(expected)
        assert len(drawn) == 8 and not set(drawn) & warm and row["policy"] == policy and json.loads(row["arms"]) == []
        pairs = metadata(result)["qa_pairs"]
        assert pairs >= 8  # the best-ranked pages are worked problems: each yields a pair or more
        shape = json.loads(row["config"])["shape"]
        assert (shape["arms_per_round"], shape["docs_per_arm"]) == (2, 4)  # set explicitly by this test's bandit
        instance.delete_dynamic_partition(rounds_partitions.name, "r0001")

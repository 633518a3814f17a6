"""LoRA fine-tuning of a tiny causal LM built locally: the loss falls, the adapter reloads and generates."""

import json
import math

import pytest
import torch

from equal_dagster.core.training import TrainingParams, encode_example, load_trained, train_model
from equal_dagster.demo.corpus import generate_reference_set
from equal_dagster.demo.tiny_model import build_tiny_causal_lm


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    reference = generate_reference_set(0, n=80)
    texts = [r["question"] + " " + r["answer"] for r in reference]
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "base", texts), reference


def test_loss_is_on_the_answer_tokens_only(tiny_model):
    from transformers import AutoTokenizer

    path, _ = tiny_model
    tokenizer = AutoTokenizer.from_pretrained(path)
    example = encode_example(tokenizer, "What is 2 + 3?", "2 + 3 = 5. The answer is 5.", max_length=512)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], tokenize=False,
                                           add_generation_prompt=True)
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert example["labels"][:n_prompt] == [-100] * n_prompt
    assert example["labels"][n_prompt:] == example["input_ids"][n_prompt:]
    assert example["labels"][-1] == tokenizer.eos_token_id
    assert tokenizer.decode(example["input_ids"][n_prompt:], skip_special_tokens=True) == "2 + 3 = 5. The answer is 5."
    assert encode_example(tokenizer, "What is 2 + 3? " * 50, "5", max_length=16) is None  # no answer token fits


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    path, reference = tiny_model
    pairs = [(r["question"], r["answer"]) for r in reference[:48]]
    params = TrainingParams(base_model=str(path), learning_rate=5e-3, epochs=10, batch_size=8, max_length=256,
                            logging_steps=6, lora_r=8, lora_alpha=16)
    out = tmp_path_factory.mktemp("trained") / "adapter"
    return path, pairs, train_model(pairs, params, out), out


def test_lora_training_lowers_the_loss_and_the_adapter_reloads_and_generates(trained):
    path, pairs, report, adapter = trained
    tmp_path = adapter.parent
    assert report.steps == 60 and report.examples == 48
    # measured: 6.75 at step 6, 6.42 at step 60 (a randomly initialised base learns slowly through an adapter)
    assert report.last_loss < report.first_loss - 0.2, report.loss_curve
    assert all(b["loss"] <= a["loss"] + 0.05 for a, b in zip(report.loss_curve, report.loss_curve[1:]))
    assert 0 < report.trainable_parameters < report.total_parameters  # only the adapter trains
    saved = json.loads((tmp_path / "adapter" / "training.json").read_text())
    assert saved["report"]["dataset_hash"] == report.dataset_hash and saved["params"]["method"] == "lora"
    assert "| step | loss |" in (tmp_path / "adapter" / "README.md").read_text()

    model, tokenizer = load_trained(tmp_path / "adapter")
    model.eval()
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": pairs[0][0]}], tokenize=False,
                                           add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert output.shape[1] > inputs["input_ids"].shape[1]  # it generates
    # the reloaded adapter is the trained one: its loss on a training example is the trained model's, not the base's
    from transformers import AutoModelForCausalLM

    example = encode_example(tokenizer, *pairs[0], max_length=256)
    batch = {k: torch.tensor([v]) for k, v in example.items()}
    with torch.no_grad():
        tuned_loss = model(**batch).loss.item()
        base_loss = AutoModelForCausalLM.from_pretrained(path)(**batch).loss.item()
    assert tuned_loss < base_loss


def test_lm_eval_scores_base_and_fine_tuned_offline_on_the_local_tasks(trained, tmp_path):
    from equal_dagster.core.evaluation import evaluate_model, prepare_local_tasks
    from equal_dagster.demo.corpus import generate_eval_set

    path, pairs, _, adapter = trained
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in generate_eval_set(0, n=24)))
    tasks = prepare_local_tasks(tmp_path / "tasks", data, chat=True, prefix="demo_math")
    assert tasks == ["demo_math_nll", "demo_math_mc"]
    base = {(s.task, s.metric): s for s in evaluate_model(path, tasks, tasks_dir=tmp_path / "tasks")}
    tuned = {(s.task, s.metric): s for s in evaluate_model(path, tasks, tasks_dir=tmp_path / "tasks", adapter=adapter)}
    for scores in (base, tuned):
        assert set(scores) == {("demo_math_nll", "nll"), ("demo_math_nll", "nll_per_char"), ("demo_math_mc", "acc"),
                               ("demo_math_mc", "acc_norm")}
        assert all(math.isfinite(s.value) and s.n == 24 for s in scores.values())
        assert 0 <= scores[("demo_math_mc", "acc")].value <= 1
    # trained on math answers, the adapter gives the held-out gold answers a higher likelihood than the base
    assert tuned[("demo_math_nll", "nll")].value < base[("demo_math_nll", "nll")].value


def test_optional_model_indicators_reward_and_perplexity(trained, tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from equal_dagster.core.quality import answer_perplexities, reward_scores

    path, pairs, _, adapter = trained
    questions, answers = [q for q, _ in pairs[:4]], [a for _, a in pairs[:4]]
    perplexity = answer_perplexities(str(path), questions, answers)
    assert all(p is not None and 1.0 < p < 5000 for p in perplexity)  # a vocabulary of 2,000: near-uniform at worst
    assert answer_perplexities(str(path), ["x " * 300], ["y"], max_length=16) == [None]
    # a reward model is any one-output sequence classifier; a tiny one from a config stands in for OpenAssistant's
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=tokenizer.pad_token_id)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "reward")
    tokenizer.save_pretrained(tmp_path / "reward")
    scores = reward_scores(str(tmp_path / "reward"), questions, answers, batch_size=3)
    assert len(scores) == 4 and all(math.isfinite(s) for s in scores)
    one_by_one = reward_scores(str(tmp_path / "reward"), questions, answers, batch_size=1)
    assert scores == pytest.approx(one_by_one, abs=1e-5)  # padding in a batch changes nothing but rounding


def test_unieval_dimensions_come_from_a_seq2seq_model(trained, tmp_path):
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    from equal_dagster.core.quality import UNIEVAL_QUESTIONS, unieval_scores

    path, pairs, _, _ = trained
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2,
                      pad_token_id=tokenizer.pad_token_id, decoder_start_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id)
    T5ForConditionalGeneration(config).save_pretrained(tmp_path / "unieval")
    tokenizer.save_pretrained(tmp_path / "unieval")
    questions, answers = [q for q, _ in pairs[:3]], [a for _, a in pairs[:3]]
    scores = unieval_scores(str(tmp_path / "unieval"), questions, answers, batch_size=2)
    assert set(scores) == set(UNIEVAL_QUESTIONS) == {"naturalness", "coherence", "understandability"}
    assert all(len(v) == 3 and all(0.0 < s < 1.0 for s in v) for v in scores.values())  # P(Yes) / (P(Yes) + P(No))
    assert scores["naturalness"] != scores["coherence"]  # different questions, different answers

    # the first revision's rule scores a whole dataset from these dimensions
    import json

    from equal_dagster.core.embedding import Embedder
    from equal_dagster.core.extraction import Document
    from equal_dagster.core.extraction.extractor import RuleExtractor
    from equal_dagster.core.qa_dataset import DatasetParams, build_qa_dataset
    from equal_dagster.core.rounds import write_extraction_round
    from equal_dagster.core.store import Store

    documents = [Document(f"d{i}", f"Q: {q}\nA: {a}") for i, (q, a) in enumerate(pairs[:8])]
    with Store.open(tmp_path / "store.duckdb") as store:
        write_extraction_round(store, "round-0", 0, "warmup", RuleExtractor().extract(documents), seed=0,
                               dagster_run_id="run-0")
        params = DatasetParams(rule="rew_unieval", unieval_model=str(tmp_path / "unieval"), reinstruct_filter=False)
        report = build_qa_dataset(store, Embedder(), [], params, tmp_path / "export")
        scored = store.qa_pairs()
    assert report.pairs == scored.height > 0 and scored["quality_score"].null_count() == 0
    for row in scored.to_dicts():
        q = json.loads(row["quality"])
        expected = -(0.0274 + 0.4421 * q["understandability"] - 0.3212 * q["naturalness"] - 0.1520 * q["coherence"])
        assert row["quality_score"] == pytest.approx(expected, abs=1e-9)  # no reward model: Rew counts as 0


def test_decontamination_reads_the_documents_of_lm_eval_tasks(tmp_path):
    from equal_dagster.core.evaluation import prepare_local_tasks, task_texts
    from equal_dagster.demo.corpus import generate_eval_set

    rows = generate_eval_set(3, n=5)
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    names = prepare_local_tasks(tmp_path / "tasks", data, chat=False, prefix="guarded")
    texts = task_texts(names, tmp_path / "tasks")
    for row in rows:  # the plain prompt wraps the question; the gold answer is the NLL task's target
        assert any(row["question"] in t for t in texts) and row["answer"] in texts

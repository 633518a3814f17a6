"""Choosing an extractor by configuration: ``build_extractor(ExtractionConfig(...), cache)``."""

from __future__ import annotations

from dataclasses import dataclass

from equal_dagster.core.ray_setup import RaySettings
from equal_dagster.core.extraction.backends.base import SamplingSettings
from equal_dagster.core.extraction.cache import ResponseCache
from equal_dagster.core.extraction.extractor import STRATEGIES, Log, LLMExtractor, RuleExtractor
from equal_dagster.core.extraction.reinstruct import ReinstructRules
from equal_dagster.core.extraction.results import MAX_PAIRS_PER_DOCUMENT

BACKENDS = ("rules", "openai", "transformers", "vllm")


@dataclass(frozen=True)
class ExtractionConfig:
    backend: str = "rules"
    model: str | None = None
    strategy: str = "equal"
    refine: bool = False
    prompt_dir: str | None = None
    max_pairs_per_document: int | None = MAX_PAIRS_PER_DOCUMENT
    harvest_pages: bool = True  # model backends: pages carrying their own Q&A are harvested by the rules, at no cost
    # sampling (part of every cache key)
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 1024
    seed: int | None = 0
    # openai
    base_url: str | None = None
    api_key: str | None = None
    max_in_flight: int = 8
    timeout_s: float = 120.0
    max_retries: int = 4
    backoff_s: float = 1.0
    response_format: str = "json_schema"
    tokenizer: str | None = None
    # transformers
    device: str = "auto"
    batch_size: int = 8
    max_input_tokens: int = 2048
    # vllm
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    dtype: str = "auto"

    def sampling(self) -> SamplingSettings:
        return SamplingSettings(self.temperature, self.top_p, self.max_tokens, self.seed)


def build_backend(config: ExtractionConfig, ray: RaySettings | None = None):
    """The model backend ``config`` names. With ``ray`` (the ``compute`` resource's engine), the ``openai`` backend's
    calls fan out over Ray (:mod:`.backends.ray_http`) and the ``vllm`` backend's engines are Ray actors
    (:mod:`.backends.vllm_ray`); ``transformers`` runs in this process."""
    if config.backend == "openai":
        from equal_dagster.core.extraction.backends.openai_compatible import OpenAICompatibleBackend

        http = OpenAICompatibleBackend(
            base_url=config.base_url or "", model=config.model or "", api_key=config.api_key,
            max_in_flight=config.max_in_flight, timeout_s=config.timeout_s, max_retries=config.max_retries,
            backoff_s=config.backoff_s, response_format=config.response_format, tokenizer_path=config.tokenizer,
            batch_size=max(512, 8 * config.max_in_flight),
        )
        if ray is None:
            return http
        from equal_dagster.core.extraction.backends.ray_http import RayHttpBackend

        return RayHttpBackend(http, ray)
    if config.backend == "transformers":
        from equal_dagster.core.extraction.backends.transformers_local import TransformersBackend

        if not config.model:
            raise ValueError("the transformers backend needs a model (EQUAL_LLM_MODEL): a local folder or a hub id")
        return TransformersBackend(config.model, device=config.device, batch_size=config.batch_size,
                                   max_input_tokens=config.max_input_tokens)
    if config.backend == "vllm":
        from equal_dagster.core.extraction.backends.vllm_offline import VLLMBackend

        local = VLLMBackend(config.model or "", tensor_parallel_size=config.tensor_parallel_size,
                            max_model_len=config.max_model_len, gpu_memory_utilization=config.gpu_memory_utilization,
                            dtype=config.dtype)
        if ray is None:
            return local
        from equal_dagster.core.extraction.backends.vllm_ray import RayVLLMBackend

        return RayVLLMBackend(local, ray)
    raise ValueError(f"unknown LLM backend {config.backend!r}: choose one of {', '.join(BACKENDS)}")


def build_extractor(config: ExtractionConfig, cache: ResponseCache, log: Log | None = None,
                    reinstruct_rules: ReinstructRules = ReinstructRules(),
                    ray: RaySettings | None = None) -> LLMExtractor | RuleExtractor:
    if config.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {config.strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if config.backend == "rules":
        return RuleExtractor(strategy=config.strategy, reinstruct_rules=reinstruct_rules,
                             max_pairs_per_document=config.max_pairs_per_document, log=log)
    return LLMExtractor(build_backend(config, ray), cache, strategy=config.strategy, refine=config.refine,
                        sampling=config.sampling(), prompt_dir=config.prompt_dir, reinstruct_rules=reinstruct_rules,
                        max_pairs_per_document=config.max_pairs_per_document, harvest_pages=config.harvest_pages, log=log)

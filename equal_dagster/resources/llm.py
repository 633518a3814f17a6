"""The LLM extraction backend as a Dagster resource: which backend, which model, how to reach it."""

from __future__ import annotations

from typing import Literal, Optional

import dagster as dg
from pydantic import Field

from equal_dagster.core.ray_setup import RaySettings
from equal_dagster.core.extraction import ExtractionConfig, build_extractor
from equal_dagster.core.extraction.cache import ResponseCache
from equal_dagster.core.extraction.results import MAX_PAIRS_PER_DOCUMENT


class ExtractionResource(dg.ConfigurableResource):
    """Backend (``rules``, ``openai``, ``transformers``, ``vllm``) and its settings. The API key comes through
    ``EnvVar("EQUAL_LLM_API_KEY")``, never as plain configuration."""

    backend: Literal["rules", "openai", "transformers", "vllm"] = Field("rules", description="rules | openai | transformers | vllm")
    model: Optional[str] = Field(None, description="model name (openai), folder or hub id (transformers, vllm)")
    strategy: Literal["equal", "reinstruct"] = Field("equal", description="equal | reinstruct (a run's config can override it)")
    refine: bool = Field(False, description="EQUAL's refine pass after extraction (one more call per document)")
    prompt_dir: Optional[str] = Field(None, description="folder with prompt files that override the packaged ones")
    max_pairs_per_document: Optional[int] = Field(
        MAX_PAIRS_PER_DOCUMENT, description="QA pairs kept per document at most (the first ones); none: no cap")
    harvest_pages: bool = Field(True, description="model backends: a web page that carries its own Q&A (schema.org "
                                "markup, question headings) is harvested by the rules at no cost instead of sent")
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 1024
    seed: Optional[int] = 0
    base_url: Optional[str] = Field(None, description="openai: the server, e.g. http://127.0.0.1:8000/v1")
    api_key: Optional[str] = Field(None, description="openai: API key, set through EQUAL_LLM_API_KEY")
    max_in_flight: int = Field(8, description="openai: requests open at once")
    timeout_s: float = Field(120.0, description="openai: seconds before a request times out")
    max_retries: int = Field(4, description="openai: retries on 429, 5xx, timeouts and connection errors")
    response_format: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema", description="openai: json_schema | json_object | none")
    tokenizer: Optional[str] = Field(None, description="tokenizer folder to count tokens a server does not report")
    device: str = Field("auto", description="transformers: auto | cpu | cuda")
    batch_size: int = Field(8, description="transformers: prompts per generate call")
    tensor_parallel_size: int = Field(1, description="vllm: GPUs per model")
    max_model_len: Optional[int] = Field(None, description="vllm: maximum context length")
    gpu_memory_utilization: float = Field(0.9, description="vllm: share of GPU memory vLLM may take")

    def extraction_config(self, strategy: Optional[str] = None, refine: Optional[bool] = None) -> ExtractionConfig:
        return ExtractionConfig(
            backend=self.backend, model=self.model, strategy=strategy or self.strategy,
            refine=self.refine if refine is None else refine, prompt_dir=self.prompt_dir,
            max_pairs_per_document=self.max_pairs_per_document, harvest_pages=self.harvest_pages,
            temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens, seed=self.seed,
            base_url=self.base_url, api_key=self.api_key, max_in_flight=self.max_in_flight, timeout_s=self.timeout_s,
            max_retries=self.max_retries, response_format=self.response_format, tokenizer=self.tokenizer,
            device=self.device, batch_size=self.batch_size, tensor_parallel_size=self.tensor_parallel_size,
            max_model_len=self.max_model_len, gpu_memory_utilization=self.gpu_memory_utilization,
        )

    def build_extractor(self, cache: ResponseCache, log=None, strategy: Optional[str] = None, refine: Optional[bool] = None,
                        ray: Optional[RaySettings] = None):
        """The extractor; with ``ray`` (the ``compute`` resource's), the openai backend's calls fan out over Ray."""
        return build_extractor(self.extraction_config(strategy, refine), cache, log=log, ray=ray)

"""The ``transformers`` backend: a local causal LM (a folder, or a hub id when online), CPU or GPU.

Rules: the model's chat template renders the messages when the tokenizer has one, else a plain
"System: / User: / Assistant:" layout; prompts are left-padded and generated in batches of ``batch_size``;
a prompt longer than ``max_input_tokens`` is cut at the end (the instructions come first); tokens in and out are
counted from the tensors. A batch that fails (out of memory, say) becomes ``backend_error`` generations for its
requests; the run goes on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from equal_dagster.core.extraction.backends.base import BackendUnavailable, Generation, GenerationRequest, SamplingSettings


@dataclass
class TransformersBackend:
    model_path: str
    device: str = "auto"  # auto | cpu | cuda | cuda:1 ...
    batch_size: int | None = 8
    max_input_tokens: int = 2048
    name: str = "transformers"
    _model: Any = field(default=None, init=False, repr=False)
    _tokenizer: Any = field(default=None, init=False, repr=False)

    @property
    def model(self) -> str:
        return self.model_path

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            model = AutoModelForCausalLM.from_pretrained(self.model_path)
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(f"transformers backend: cannot load model {self.model_path!r}: {exc}") from exc
        tokenizer.padding_side = "left"
        tokenizer.truncation_side = "right"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        model.to(device)
        model.eval()
        self._model, self._tokenizer, self._device = model, tokenizer, device

    def prompt_text(self, messages: Sequence[dict[str, str]]) -> str:
        self._load()
        if getattr(self._tokenizer, "chat_template", None):
            return self._tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n\n".join(lines) + "\n\nAssistant:"

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingSettings) -> list[Generation]:
        self._load()
        out: list[Generation] = []
        step = self.batch_size or len(requests) or 1
        for start in range(0, len(requests), step):
            batch = requests[start : start + step]
            began = time.perf_counter()
            try:
                out += self._generate_batch(batch, sampling, began)
            except Exception as exc:  # noqa: BLE001 - one failed batch must not stop the round
                latency = (time.perf_counter() - began) / len(batch)
                out += [Generation("backend_error", error=f"{type(exc).__name__}: {exc}", latency_s=latency) for _ in batch]
        return out

    def _generate_batch(self, batch: Sequence[GenerationRequest], sampling: SamplingSettings, began: float) -> list[Generation]:
        import torch

        tokenizer, model = self._tokenizer, self._model
        texts = [self.prompt_text(r.messages) for r in batch]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                            max_length=self.max_input_tokens, add_special_tokens=False).to(self._device)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_tokens, "pad_token_id": tokenizer.pad_token_id}
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kwargs.update(do_sample=False)
        with torch.inference_mode():
            generated = model.generate(**encoded, **kwargs)
        new_tokens = generated[:, encoded["input_ids"].shape[1]:]
        latency = (time.perf_counter() - began) / len(batch)
        results = []
        for row, mask in zip(new_tokens, encoded["attention_mask"]):
            ids = row.tolist()
            if tokenizer.eos_token_id is not None and tokenizer.eos_token_id in ids:
                ids = ids[: ids.index(tokenizer.eos_token_id) + 1]
            text = tokenizer.decode(ids, skip_special_tokens=True)
            results.append(Generation("ok", text=text, tokens_in=int(mask.sum()), tokens_out=len(ids),
                                      latency_s=latency, tokens_counted_by="backend"))
        return results

    def close(self) -> None:
        self._model = None
        self._tokenizer = None

"""Fine-tuning settings as a Dagster resource: which base model, LoRA or full, and the training hyper-parameters."""

from __future__ import annotations

from typing import Optional

import dagster as dg
from pydantic import Field

from equal_dagster.core.training import TrainingParams


class TrainerResource(dg.ConfigurableResource):
    """The base model and how `fine_tuned_model` trains it; models are saved under ``models_dir``."""

    base_model: str = Field(description="folder of a transformers causal LM (and its tokenizer)")
    models_dir: str = Field(description="where fine-tuned models are saved ($EQUAL_HOME/models)")
    method: str = Field("lora", description="lora | full")
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: Optional[list[str]] = Field(None, description="LoRA target modules (default: every linear layer)")
    learning_rate: float = 2e-4
    epochs: float = 1.0
    batch_size: int = 8
    max_length: int = 512
    max_steps: Optional[int] = Field(None, description="stop after this many steps (overrides epochs)")
    seed: int = 0
    merge: bool = Field(False, description="LoRA: also save the merged model")

    def training_params(self) -> TrainingParams:
        return TrainingParams(
            base_model=self.base_model, method=self.method, lora_r=self.lora_r, lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout, target_modules=tuple(self.target_modules) if self.target_modules else None,
            learning_rate=self.learning_rate, epochs=self.epochs, batch_size=self.batch_size,
            max_length=self.max_length, max_steps=self.max_steps, seed=self.seed, merge=self.merge,
        )

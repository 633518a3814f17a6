"""A fake of the few vLLM names the worker uses (tests only): ``LLM(**engine)`` and ``LLM.chat``. It records what
it was given in $FAKE_VLLM_RECORD and answers each conversation with JSON that names the request's position."""

import json
import os
from dataclasses import dataclass, field

from vllm.sampling_params import SamplingParams, StructuredOutputsParams  # noqa: F401


@dataclass
class CompletionOutput:
    text: str
    token_ids: list = field(default_factory=list)
    finish_reason: str = "stop"


@dataclass
class RequestOutput:
    prompt_token_ids: list
    outputs: list


class LLM:
    def __init__(self, **engine):
        self.engine = engine
        print("INFO fake vLLM engine starting")  # vLLM logs to stdout, its engine core prints at the fd level
        os.write(1, b"INFO engine core ready\n")
        if os.environ.get("FAKE_VLLM_STARTS"):  # one line per engine built: a test counts the model loads
            with open(os.environ["FAKE_VLLM_STARTS"], "a") as f:
                f.write(f"{os.getpid()}\n")

    def chat(self, messages, sampling_params=None, use_tqdm=True):
        record = {
            "engine": self.engine,
            "n_conversations": len(messages),
            "sampling": [p.kwargs for p in sampling_params],
            "structured_json": [p.structured_outputs.json if p.structured_outputs else None for p in sampling_params],
            "use_tqdm": use_tqdm,
        }
        with open(os.environ["FAKE_VLLM_RECORD"], "w") as f:
            json.dump(record, f)
        outputs = []
        for i, conversation in enumerate(messages):
            if "MODE=crash" in conversation[-1]["content"]:
                os._exit(3)  # the engine process dies mid-batch
            if "MODE=garbage" in conversation[-1]["content"]:
                text = "no json"
            else:
                text = json.dumps({"qa_pairs": [{"question": f"Question {i}?", "answer": f"Answer {i}."}]})
            outputs.append(RequestOutput(list(range(10 + i)), [CompletionOutput(text, list(range(5)))]))
        return outputs

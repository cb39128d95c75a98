"""Chat backends of the LLM structurer: one small interface, three implementations.

* ``HTTPChatBackend``: any OpenAI-compatible ``/v1/chat/completions`` server, e.g. ``vllm serve``
  (JSON-schema-constrained output via ``response_format``; batched, concurrent, timeouts, retries).
* ``TransformersChatBackend``: a local causal LM loaded from a path with transformers (no download).
* ``VLLMChatBackend``: in-process vLLM, only when ``import vllm`` works (it cannot share this
  environment's torch/transformers pins, so the HTTP server is the usual way to use vLLM).

Every backend answers ``complete(conversations, schema) -> list[ChatResult]``, one result per
conversation and in order; a failed conversation has ``error`` set instead of raising, so one bad
report never stops a batch.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["ChatResult", "ChatBackend", "HTTPChatBackend", "TransformersChatBackend", "VLLMChatBackend", "vllm_available"]

logger = logging.getLogger(__name__)
Messages = list[dict[str, str]]


@dataclass
class ChatResult:
    text: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


class ChatBackend(Protocol):
    name: str

    def complete(self, conversations: list[Messages], schema: dict | None = None) -> list[ChatResult]: ...


def _schema_hint(messages: Messages, schema: dict | None) -> Messages:
    """For backends without constrained decoding: state the schema in the last user turn."""
    if schema is None:
        return messages
    out = [dict(m) for m in messages]
    out[-1]["content"] = f"{out[-1]['content']}\n\nAnswer with JSON that follows this schema: {json.dumps(schema)}"
    return out


# ------------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP (vllm serve)
# ------------------------------------------------------------------------------------------------
class HTTPChatBackend:
    """Client of an OpenAI-compatible chat-completions server.

    base_url: server root including ``/v1`` (``http://127.0.0.1:8000/v1`` for ``vllm serve``).
    model: the served model name. api_key: sent as a bearer token (default ``$OPENAI_API_KEY``).
    timeout: seconds per request. max_retries: retries after a connection error, a timeout, 429 or
    5xx (exponential backoff from ``backoff`` seconds); other 4xx answers fail at once.
    concurrency: requests in flight at a time. schema_mode: "response_format" (OpenAI/vLLM
    ``json_schema``), "guided_json" (older vLLM extra parameter) or "none".
    """

    name = "http"

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000/v1",
        model: str = "default",
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        concurrency: int = 8,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        schema_mode: str = "response_format",
        extra_body: dict[str, Any] | None = None,
    ):
        import requests  # the `report` extra

        if schema_mode not in ("response_format", "guided_json", "none"):
            raise ValueError(f"HTTPChatBackend: schema_mode must be 'response_format', 'guided_json' or 'none', got {schema_mode!r}")
        self._requests = requests
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.concurrency = max(1, int(concurrency))
        self.temperature = temperature
        self.max_tokens = int(max_tokens)
        self.schema_mode = schema_mode
        self.extra_body = dict(extra_body or {})
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None  # kept between calls so HTTP sessions are reused

    def __getstate__(self) -> dict:
        # a copy for a worker process opens its own sessions and threads
        return {k: v for k, v in self.__dict__.items() if k not in ("_requests", "_local", "_pool")}

    def __setstate__(self, state: dict) -> None:
        import requests

        self.__dict__.update(state, _requests=requests, _local=threading.local(), _pool=None)

    def _session(self):
        if getattr(self._local, "session", None) is None:
            self._local.session = self._requests.Session()
        return self._local.session

    def _payload(self, messages: Messages, schema: dict | None) -> dict[str, Any]:
        payload = {"model": self.model, "messages": messages, "temperature": self.temperature, "max_tokens": self.max_tokens}
        if schema is not None and self.schema_mode == "response_format":
            payload["response_format"] = {"type": "json_schema", "json_schema": {"name": schema.get("title", "answer"), "schema": schema, "strict": True}}
        elif schema is not None and self.schema_mode == "guided_json":
            payload["guided_json"] = schema
        payload.update(self.extra_body)
        return payload

    def _one(self, messages: Messages, schema: dict | None) -> ChatResult:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        payload = self._payload(messages, schema)
        last_error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._session().post(self.url, json=payload, headers=headers, timeout=self.timeout)
            except self._requests.Timeout:
                last_error = f"timeout after {self.timeout:g}s from {self.url}"
                continue
            except self._requests.ConnectionError as err:
                last_error = f"cannot connect to {self.url}: {type(err).__name__}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last_error = f"HTTP {response.status_code} from {self.url}: {response.text[:200]}"
                continue
            if response.status_code != 200:
                return ChatResult(error=f"HTTP {response.status_code} from {self.url}: {response.text[:200]}")
            try:
                body = response.json()
                content = body["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                return ChatResult(error=f"malformed chat-completions response from {self.url}: {response.text[:200]}")
            if not isinstance(content, str):
                return ChatResult(error=f"chat-completions response from {self.url} has no text content")
            return ChatResult(text=content)
        return ChatResult(error=f"{last_error} (after {self.max_retries + 1} attempts)")

    def complete(self, conversations: list[Messages], schema: dict | None = None) -> list[ChatResult]:
        if not conversations:
            return []
        if self.concurrency == 1 or len(conversations) == 1:
            return [self._one(c, schema) for c in conversations]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="chat-http")
        return list(self._pool.map(lambda c: self._one(c, schema), conversations))

    def close(self) -> None:
        """Stop the request threads (they also stop with the process)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


# ------------------------------------------------------------------------------------------------
# Local transformers model
# ------------------------------------------------------------------------------------------------
class TransformersChatBackend:
    """A chat model loaded with transformers from a local directory (``save_pretrained`` layout).

    Greedy decoding in batches of ``batch_size``; the tokenizer's chat template builds the prompt.
    transformers has no JSON-schema decoding here, so the schema is stated in the prompt and the
    structurer validates the answer (one retry, then the rule-based fallback).

    The directory (config.json and a weights file) is checked here; the tokenizer and model load on the
    first :meth:`complete` (or :meth:`load`), in the process that uses them. A pickled copy (for a worker
    process or Ray actor) never carries loaded weights: it loads its own on first use.
    """

    name = "transformers"
    _loaded_attributes = ("tokenizer", "model")
    _weights_patterns = ("model*.safetensors", "pytorch_model*.bin")

    def __init__(self, model_path: str | Path, device: str = "cpu", dtype: str | None = None, max_new_tokens: int = 512,
                 batch_size: int = 4, trust_remote_code: bool = False):
        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"TransformersChatBackend: no config.json in {path} (expected a save_pretrained directory)")
        if not any(next(path.glob(pattern), None) is not None for pattern in self._weights_patterns):
            raise FileNotFoundError(f"TransformersChatBackend: no weights file ({' or '.join(self._weights_patterns)}) in {path}")
        self.path = path
        self.dtype = dtype
        self.trust_remote_code = bool(trust_remote_code)
        self.device = device
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = max(1, int(batch_size))
        self.tokenizer = self.model = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def load(self) -> TransformersChatBackend:
        """Load the tokenizer and model now (a no-op once loaded)."""
        with self._lock:
            if self.model is not None:
                return self
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True, trust_remote_code=self.trust_remote_code)
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            if getattr(tokenizer, "chat_template", None) is None:
                raise ValueError(f"TransformersChatBackend: the tokenizer in {self.path} has no chat template")
            kwargs = {"local_files_only": True, "trust_remote_code": self.trust_remote_code}
            if self.dtype is not None:
                kwargs["dtype"] = getattr(torch, self.dtype)
            self.model = AutoModelForCausalLM.from_pretrained(self.path, **kwargs).to(self.device).eval()
            self.tokenizer = tokenizer
        return self

    def unload(self) -> None:
        """Drop the loaded tokenizer and model (the next use loads them again)."""
        with self._lock:
            self.tokenizer = self.model = None

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k != "_lock"}
        state.update(tokenizer=None, model=None)  # a copy loads its own
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def _generate(self, conversations: list[Messages]) -> list[str]:
        prompts = [self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        import torch

        with torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id)
        new = out[:, enc["input_ids"].shape[1]:]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def complete(self, conversations: list[Messages], schema: dict | None = None) -> list[ChatResult]:
        if conversations:
            self.load()  # a model that cannot load is a configuration error: raised, not recorded per report
        results: list[ChatResult] = []
        for i in range(0, len(conversations), self.batch_size):
            batch = [_schema_hint(c, schema) for c in conversations[i:i + self.batch_size]]
            try:
                results.extend(ChatResult(text=t) for t in self._generate(batch))
            except Exception as err:  # a failing batch is recorded, not raised
                logger.warning("transformers generation failed: %s", err)
                results.extend(ChatResult(error=f"generation failed: {type(err).__name__}: {err}") for _ in batch)
        return results


# ------------------------------------------------------------------------------------------------
# In-process vLLM (optional)
# ------------------------------------------------------------------------------------------------
def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:
        return False
    return True


class VLLMChatBackend:
    """In-process vLLM with JSON-schema guided decoding; raises ImportError when vLLM is not installed."""

    name = "vllm"

    def __init__(self, model_path: str | Path, max_new_tokens: int = 1024, **llm_kwargs: Any):
        try:
            import vllm
        except Exception as err:
            raise ImportError(
                "VLLMChatBackend needs the vllm package, which cannot share this environment's torch pins; "
                "run `vllm serve <model>` and use HTTPChatBackend instead"
            ) from err
        self.vllm = vllm
        self.llm = vllm.LLM(model=str(model_path), **llm_kwargs)
        self.max_new_tokens = int(max_new_tokens)

    def _params(self, schema: dict | None):
        from vllm import SamplingParams

        kwargs: dict[str, Any] = {"temperature": 0.0, "max_tokens": self.max_new_tokens}
        if schema is not None:
            sp = self.vllm.sampling_params
            if hasattr(sp, "StructuredOutputsParams"):
                kwargs["structured_outputs"] = sp.StructuredOutputsParams(json=schema)
            else:
                kwargs["guided_decoding"] = sp.GuidedDecodingParams(json=schema)
        return SamplingParams(**kwargs)

    def complete(self, conversations: list[Messages], schema: dict | None = None) -> list[ChatResult]:
        try:
            outputs = self.llm.chat(conversations, self._params(schema), use_tqdm=False)
        except Exception as err:
            return [ChatResult(error=f"vLLM generation failed: {type(err).__name__}: {err}") for _ in conversations]
        return [ChatResult(text=o.outputs[0].text) for o in outputs]

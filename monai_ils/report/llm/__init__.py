"""LLM report structuring: prompts, chat backends (HTTP / transformers / vLLM) and the validating structurer."""

from monai_ils.report.llm.backends import (
    ChatBackend,
    ChatResult,
    HTTPChatBackend,
    TransformersChatBackend,
    VLLMChatBackend,
    vllm_available,
)
from monai_ils.report.llm.structurer import InvalidLLMAnswer, LLMLocationMapper, LLMStructurer, parse_llm_answer

__all__ = [
    "ChatBackend",
    "ChatResult",
    "HTTPChatBackend",
    "TransformersChatBackend",
    "VLLMChatBackend",
    "vllm_available",
    "LLMStructurer",
    "LLMLocationMapper",
    "InvalidLLMAnswer",
    "parse_llm_answer",
]

"""Teacher construction from config: one place that maps a backend name to its class.

Backends:
- transformers: any causal LM in process (hub id or folder), optionally 4-bit/8-bit.
- llava_next:   LLaVA 1.6 vision-language model in process, for image posts.
- openai:       any OpenAI-compatible endpoint (vLLM serve, TGI, SGLang, llama.cpp, Ollama, OpenAI),
                text and image messages; the way to use many GPUs.
- vllm:         vLLM in process (optional extra, CUDA only).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass
class TeacherSpec:
    """Which model answers and how it is reached: generate builds one from its teacher_* settings
    (`TeacherConfig.spec()`), inference from its own; `make_teacher` turns it into a teacher."""

    model: str
    backend: str = "transformers"
    dtype: str = "auto"
    device_map: str | None = None
    quantization: str = "none"
    batch_size: int = 8  # in-process requests per generate() call
    base_url: str | None = None  # openai
    api_key_env: str | None = None  # openai: the variable holding the key, never the key
    max_in_flight: int = 32  # openai
    timeout_s: float = 300.0  # openai
    max_retries: int = 6  # openai
    tensor_parallel_size: int = 1  # vllm
    trust_remote_code: bool = False


def _transformers(spec: TeacherSpec):
    from .transformers_teacher import TransformersTeacher

    return TransformersTeacher(spec.model, dtype=spec.dtype, device_map=spec.device_map, batch_size=spec.batch_size,
                               quantization=spec.quantization, trust_remote_code=spec.trust_remote_code)


def _llava_next(spec: TeacherSpec):
    from .llava_teacher import LlavaNextTeacher

    return LlavaNextTeacher(spec.model, dtype=spec.dtype, device_map=spec.device_map, batch_size=spec.batch_size,
                            quantization=spec.quantization, trust_remote_code=spec.trust_remote_code)


def _openai(spec: TeacherSpec):
    from .http_teacher import OpenAICompatibleTeacher

    if not spec.base_url:
        raise ConfigError("teacher_backend openai needs teacher_base_url, e.g. http://localhost:8000/v1")
    return OpenAICompatibleTeacher(spec.model, spec.base_url, api_key_env=spec.api_key_env,
                                   max_in_flight=spec.max_in_flight, timeout_s=spec.timeout_s,
                                   max_retries=spec.max_retries)


def _vllm(spec: TeacherSpec):
    from .vllm_teacher import VLLMTeacher

    return VLLMTeacher(spec.model, dtype=spec.dtype, tensor_parallel_size=spec.tensor_parallel_size,
                       trust_remote_code=spec.trust_remote_code)


BACKENDS = {"transformers": _transformers, "llava_next": _llava_next, "openai": _openai, "vllm": _vllm}


def make_teacher(spec: TeacherSpec):
    """Build the teacher `spec` names."""
    try:
        builder = BACKENDS[spec.backend]
    except KeyError:
        raise ConfigError(f"unknown teacher_backend {spec.backend!r}; available: {', '.join(BACKENDS)}") from None
    return builder(spec)

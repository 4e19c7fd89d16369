"""Teacher construction from config: one place that maps a backend name to its class.

Backends:
- transformers: any causal LM in process (hub id or folder), optionally 4-bit/8-bit.
- llava_next:   LLaVA 1.6 vision-language model in process, for image posts.
- openai:       any OpenAI-compatible endpoint (vLLM serve, TGI, SGLang, llama.cpp, Ollama, OpenAI),
                text and image messages; the way to use many GPUs.
- vllm:         vLLM in process (optional extra, CUDA only).
"""

from __future__ import annotations

from ..errors import ConfigError


def _transformers(cfg):
    from .transformers_teacher import TransformersTeacher

    return TransformersTeacher(cfg.teacher, dtype=cfg.teacher_dtype, device_map=cfg.teacher_device_map,
                               batch_size=cfg.teacher_batch_size, quantization=cfg.teacher_quantization,
                               trust_remote_code=cfg.trust_remote_code)


def _llava_next(cfg):
    from .llava_teacher import LlavaNextTeacher

    return LlavaNextTeacher(cfg.teacher, dtype=cfg.teacher_dtype, device_map=cfg.teacher_device_map,
                            batch_size=cfg.teacher_batch_size, quantization=cfg.teacher_quantization,
                            trust_remote_code=cfg.trust_remote_code)


def _openai(cfg):
    from .http_teacher import OpenAICompatibleTeacher

    if not cfg.teacher_base_url:
        raise ConfigError("teacher_backend openai needs teacher_base_url, e.g. http://localhost:8000/v1")
    return OpenAICompatibleTeacher(cfg.teacher, cfg.teacher_base_url, api_key_env=cfg.teacher_api_key_env,
                                   max_in_flight=cfg.teacher_max_in_flight, timeout_s=cfg.teacher_timeout_s,
                                   max_retries=cfg.teacher_max_retries)


def _vllm(cfg):
    from .vllm_teacher import VLLMTeacher

    return VLLMTeacher(cfg.teacher, dtype=cfg.teacher_dtype, tensor_parallel_size=cfg.teacher_tensor_parallel_size,
                       trust_remote_code=cfg.trust_remote_code)


BACKENDS = {"transformers": _transformers, "llava_next": _llava_next, "openai": _openai, "vllm": _vllm}


def make_teacher(cfg):
    """Build the teacher named by `cfg.teacher_backend` (see `tunelab.stages.generate.TeacherConfig`)."""
    try:
        builder = BACKENDS[cfg.teacher_backend]
    except KeyError:
        raise ConfigError(f"unknown teacher_backend {cfg.teacher_backend!r}; available: {', '.join(BACKENDS)}") from None
    return builder(cfg)

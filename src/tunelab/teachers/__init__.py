"""Teachers: one interface for every model that writes data.

`Teacher.generate(requests, params)` answers a batch of requests. Backends: `transformers`
(any causal LM in process, here). The OpenAI-compatible HTTP backend (vLLM serve, TGI, Ollama,
OpenAI) and the vision-language backends register in `BACKENDS` beside it.
"""

from .base import SamplingParams, Teacher, TeacherRequest, TeacherResponse, request_key
from .cache import RequestCache, run_requests
from .factory import BACKENDS, make_teacher

__all__ = [
    "BACKENDS", "RequestCache", "SamplingParams", "Teacher", "TeacherRequest", "TeacherResponse", "make_teacher",
    "request_key", "run_requests",
]

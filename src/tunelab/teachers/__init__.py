"""Teachers: one interface for every model that writes data.

`Teacher.answer(requests, params)` answers a list of requests and yields answers in groups as they
complete. Backends (see `factory.BACKENDS`): transformers and LLaVA-NeXT in process, any
OpenAI-compatible HTTP endpoint, and vLLM in process as an optional extra. `decoding` is the batched
generation loop of models loaded in this process (also inference.py's and evaluate's), `label_probs` the
probability such a model gives each label's name.
"""

from .base import (BatchedTeacher, SamplingParams, Teacher, TeacherError, TeacherRequest, TeacherResponse,
                   request_key, request_seed)
from .cache import RequestCache, RequestProgress, run_requests
from .factory import BACKENDS, make_teacher

__all__ = [
    "BACKENDS", "BatchedTeacher", "RequestCache", "RequestProgress", "SamplingParams", "Teacher", "TeacherError",
    "TeacherRequest", "TeacherResponse", "make_teacher", "request_key", "request_seed", "run_requests",
]

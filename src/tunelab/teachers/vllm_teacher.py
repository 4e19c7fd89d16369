"""vLLM in process (the `vllm` extra, CUDA only). The supported path to many GPUs is the server:
`vllm serve <model> --tensor-parallel-size N` in its own environment, with `teacher_backend: openai`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError
from ..models import resolve_model
from .base import AnswerGroups, SamplingParams, TeacherRequest, TeacherResponse, request_seed
from .http_teacher import OpenAICompatibleTeacher

CHUNK = 256  # requests per llm.generate call: a kill loses at most this many answers


class VLLMTeacher:
    def __init__(self, model: str, *, dtype: str = "auto", tensor_parallel_size: int = 1, trust_remote_code: bool = False):
        try:
            import vllm
        except ImportError:
            raise ConfigError("teacher_backend vllm needs `pip install vllm` (CUDA) in its own environment; "
                              "or run `vllm serve` and use teacher_backend: openai") from None
        self.name = model
        self.in_flight = 0
        self._vllm = vllm
        self.llm = vllm.LLM(model=resolve_model(model), dtype=dtype, tensor_parallel_size=tensor_parallel_size,
                            trust_remote_code=trust_remote_code)

    def answer(self, requests: Sequence[TeacherRequest], params: SamplingParams) -> AnswerGroups:
        """vLLM batches each chunk itself (continuous batching); a chunk is stored before the next starts."""
        for start in range(0, len(requests), CHUNK):
            chunk = list(range(start, min(start + CHUNK, len(requests))))
            self.in_flight = len(chunk)
            try:
                yield self._answer_chunk(requests, chunk, params)
            finally:
                self.in_flight = 0

    def _answer_chunk(self, requests, chunk: list[int], params: SamplingParams) -> list[tuple[int, TeacherResponse]]:
        sampling = {i: self._vllm.SamplingParams(
            max_tokens=params.max_new_tokens, temperature=params.temperature, top_p=params.top_p,
            top_k=params.top_k or -1, repetition_penalty=params.repetition_penalty, stop=list(params.stop) or None,
            seed=request_seed(requests[i], params)) for i in chunk}
        chats = [i for i in chunk if requests[i].messages is not None]
        prompts = [i for i in chunk if requests[i].prompt is not None]
        outputs: dict[int, object] = {}
        if prompts:
            outs = self.llm.generate([requests[i].prompt for i in prompts], [sampling[i] for i in prompts])
            outputs.update(zip(prompts, outs))
        if chats:  # local images travel as data URLs, as over HTTP
            messages = [[OpenAICompatibleTeacher._inline_images(m) for m in requests[i].messages] for i in chats]
            outs = self.llm.chat(messages, [sampling[i] for i in chats])
            outputs.update(zip(chats, outs))
        group = []
        for i, out in sorted(outputs.items()):
            completion = out.outputs[0]
            group.append((i, TeacherResponse(completion.text, "length" if completion.finish_reason == "length" else "stop",
                                             len(out.prompt_token_ids), len(completion.token_ids))))
        return group

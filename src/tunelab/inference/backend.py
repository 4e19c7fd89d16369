"""What answers in an inference run: a model loaded here (a student folder, a merged model, a hub id; a LLaVA
with its processor) or a server's client, with the student's prompt format; everything that can fail on a
setting fails while it is built."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ConfigError
from ..runs import RunRecord
from ..teachers.factory import TeacherSpec, make_teacher
from ..training.student_info import StudentInfo
from .settings import InferenceConfig

LABEL_PROBS_METHOD = ("probability of writing the label's name (all its tokens) where a label can begin: the "
                      "answer's start or after a separator of the list written; the highest over those places")


def resolve_student(model: str) -> tuple[str, str | None, StudentInfo | None]:
    """(base path, adapter folder or None, the folder's StudentInfo) for a model reference.

    A folder without an adapter (a merged model, a full fine-tune) holds the weights itself, so it
    is the base; its info's `base` then names the folder (the original is kept as `merged_from`).
    """
    from ..models import require_safetensors_adapter, resolve_model

    info = StudentInfo.find(model)
    if info is None:
        return resolve_model(model), None, None
    if info.adapter:
        require_safetensors_adapter(Path(model))  # before any weights load
        return resolve_model(info.base), str(model), info
    if (Path(model) / "config.json").exists():
        return str(model), None, replace(info, base=str(model))
    return resolve_model(info.base), None, info


def prompt_format(cfg: InferenceConfig, info: StudentInfo | None, tokenizer):
    """The student's prompt format: --template, else the one saved with the model (cfg.model), else a default.

    Without a tokenizer (a server), `chat` and the default mean chat messages, which the server
    renders with the model's own chat template.
    """
    from ..prompts import CHAT, StudentPrompt, student_prompt

    saved = info.template if info else None
    if cfg.template:
        ref = cfg.template
    elif saved:
        ref = saved if saved == CHAT else str(Path(cfg.model) / saved)
    else:
        ref = "auto"
    if tokenizer is None and ref in (CHAT, "auto"):
        return StudentPrompt(CHAT)
    return student_prompt(ref, tokenizer)


@dataclass
class Backend:
    """What answers: a `Teacher` (in-process model or server client), the prompt format, and how rows name it."""

    teacher: object
    prompt: object  # StudentPrompt
    tokenizer: object | None
    model: str  # what rows record as the model
    adapter: str | None
    local_path: str | None  # the weights folder, when in process
    renders_chat: bool  # True: the chat template is applied here, so requests carry rendered text
    labels: tuple[str, ...] = ()  # scored into each row's label_probs (in-process models only)
    vision: bool = False  # a LLaVA in process: requests are chat messages whose user turn carries the images
    shots: list[dict] = field(default_factory=list)  # solved examples before every example (inference/few_shot.py)

    def label_probs(self, requests, answers: list[str]) -> list[dict[str, float]]:
        from ..teachers.label_probs import label_probabilities

        teacher = self.teacher
        return label_probabilities(teacher.model, teacher.tokenizer, [r.prompt for r in requests], answers,
                                   self.labels, add_special_tokens=teacher.add_special_tokens,
                                   batch_size=teacher.batch_size * 2)

    def request(self, record: dict):
        from ..teachers.base import TeacherRequest
        from ..teachers.images import user_message

        instruction, input_text = record["instruction"], record["input"]
        if self.shots:
            from .few_shot import few_shot_messages, few_shot_prompt

            if self.renders_chat or not self.prompt.is_chat:
                return TeacherRequest(prompt=few_shot_prompt(self.prompt, self.tokenizer, self.shots, instruction,
                                                             input_text))
            return TeacherRequest(messages=few_shot_messages(self.prompt, self.shots, instruction, input_text))
        if self.vision or (self.prompt.is_chat and not self.renders_chat):
            if record.get("user_turn"):  # a chat record's own user turn, its parts in their order
                return TeacherRequest(messages=[record["user_turn"]])
            # As generate's pair_to_chat writes it (and the student trained on it): images first, then the text.
            return TeacherRequest(messages=[user_message(self.prompt.user_text(instruction, input_text),
                                                         record.get("image_paths", []))])
        return TeacherRequest(prompt=self.prompt.render(self.tokenizer, instruction, input_text))


def make_backend(cfg: InferenceConfig, record: RunRecord, examples: Sequence[dict] = (),
                 data_path: Path | None = None) -> Backend:
    """Load the model or connect the client; everything that can fail on a setting fails here.

    `examples` (read_examples') are checked against the model before any weights load: image
    records need a LLaVA (or a server, with the chat format), and a LLaVA needs image records.
    """
    with_image = next((e for e in examples if e.get("image_paths")), None)
    # servers' clients are built as generate builds them
    spec = TeacherSpec(model=cfg.model, backend=cfg.backend, dtype=cfg.dtype, base_url=cfg.base_url,
                       api_key_env=cfg.api_key_env, max_in_flight=cfg.max_in_flight, timeout_s=cfg.timeout_s,
                       max_retries=cfg.max_retries, tensor_parallel_size=cfg.tensor_parallel_size,
                       trust_remote_code=cfg.trust_remote_code)
    if cfg.backend == "openai":
        info = StudentInfo.find(cfg.model)  # a served tunelab folder still brings its prompt format
        prompt = prompt_format(cfg, info, None)
        if with_image and not prompt.is_chat:
            raise ConfigError(f"{data_path}: record {with_image['id']!r} has an image, and the {prompt.name} "
                              "prompt format is text only: use --template chat (the server's chat template)")
        teacher = make_teacher(spec)
        record.models.update({"model": cfg.model, "adapter": None, "backend": "openai", "base_url": cfg.base_url})
        _add_prompt(record, prompt, None)
        return Backend(teacher, prompt, None, cfg.model, None, None, renders_chat=False)

    from ..models import VISION_LANGUAGE_TYPES, load_causal_lm_with_adapter, load_tokenizer, model_type

    base, adapter, info = resolve_student(cfg.model)
    mtype = model_type(base, trust_remote_code=cfg.trust_remote_code)
    vision = mtype in VISION_LANGUAGE_TYPES
    if with_image and not vision:
        raise ConfigError(f"{data_path}: record {with_image['id']!r} has an image, and {cfg.model} is a text-only "
                          f"model ({mtype}): answer image records with a LLaVA student, or leave them out")
    if vision and examples and not with_image:
        raise ConfigError(f"{data_path}: no record has an image (an 'image' field or image_url part), and "
                          f"{cfg.model} is a LLaVA ({mtype}) model: give it the image records it answers")
    record.models.update({"base": info.base if info else cfg.model, "adapter": adapter, "backend": cfg.backend})
    if vision:
        return _vision_backend(cfg, record, base, adapter, mtype)
    tokenizer = load_tokenizer(adapter or base, trust_remote_code=cfg.trust_remote_code)
    prompt = prompt_format(cfg, info, tokenizer)
    _add_prompt(record, prompt, tokenizer)
    if cfg.backend == "vllm":
        if adapter:
            raise ConfigError(f"backend vllm loads whole models; {cfg.model} is an adapter: merge it first "
                              "(python finetune/merge.py --model ...), or serve it with `vllm serve <base> "
                              "--enable-lora --lora-modules student=<folder>` and use --backend openai")
        teacher = make_teacher(replace(spec, model=base))
        return Backend(teacher, prompt, tokenizer, record.models["base"], None, base, renders_chat=False)
    from ..teachers.decoding import LoadedModelTeacher

    model = load_causal_lm_with_adapter(base, adapter, merge=True, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code)
    model.eval()
    teacher = LoadedModelTeacher(model, tokenizer, name=record.models["base"], batch_size=cfg.batch_size,
                                 add_special_tokens=prompt.tokenize_with_special_tokens, dtype=cfg.dtype)
    return Backend(teacher, prompt, tokenizer, record.models["base"], adapter, base, renders_chat=True,
                   labels=scored_labels(cfg, record))


def _vision_backend(cfg: InferenceConfig, record: RunRecord, base: str, adapter: str | None, mtype: str) -> Backend:
    """A LLaVA student (adapter folded in memory, or a merged folder, or a base) behind the LLaVA teacher's
    generation code, prompted with its processor's chat template as it was trained."""
    from ..prompts import CHAT, StudentPrompt
    from ..teachers.llava_teacher import LlavaTeacher, load_llava_student, load_student_processor

    if cfg.backend != "transformers":
        raise ConfigError(f"backend {cfg.backend} with a LLaVA model: use --backend transformers (in process), or "
                          "serve the merged student (vllm serve) and use --backend openai")
    if cfg.template not in (None, "auto", CHAT):
        raise ConfigError(f"template {cfg.template!r}: a LLaVA student is prompted with its processor's chat "
                          "template (template chat or auto), as it was trained")
    if cfg.label_probs:
        raise ConfigError("label_probs reads text-only prompts; it is not available for LLaVA models")
    if cfg.shots:
        raise ConfigError("shots puts solved text examples before each prompt; not available for LLaVA models")
    processor = load_student_processor(adapter or base, base, trust_remote_code=cfg.trust_remote_code)
    record.add_template("chat_template", processor.chat_template)
    model = load_llava_student(base, adapter, mtype, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code,
                               vocab_size=len(processor.tokenizer))
    teacher = LlavaTeacher(model, processor, name=record.models["base"], batch_size=cfg.batch_size, dtype=cfg.dtype)
    return Backend(teacher, StudentPrompt(CHAT), processor.tokenizer, record.models["base"], adapter, base,
                   renders_chat=True, vision=True)


def scored_labels(cfg: InferenceConfig, record: RunRecord) -> tuple[str, ...]:
    """The labels of --label_probs: one taxonomy, or label names."""
    if not cfg.label_probs:
        return ()
    if len(cfg.label_probs) == 1:
        from ..taxonomy import load_taxonomy

        taxonomy = load_taxonomy(cfg.label_probs[0])
        record.add_input("taxonomy", taxonomy.path)
        return taxonomy.labels
    if len(set(cfg.label_probs)) != len(cfg.label_probs) or not all(x.strip() for x in cfg.label_probs):
        raise ConfigError(f"label_probs: label names must be distinct and non-empty, got {cfg.label_probs}")
    return tuple(cfg.label_probs)


def _add_prompt(record: RunRecord, prompt, tokenizer) -> None:
    if not prompt.is_chat:
        record.add_template(prompt.name, prompt.template.source)
    elif tokenizer is not None and tokenizer.chat_template:
        record.add_template(prompt.name, tokenizer.chat_template)
    else:
        record.templates[prompt.name] = "the server's chat template for the model"

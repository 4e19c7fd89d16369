"""inference: a (tuned) model answers a held-aside set; one JSONL row per example, for people to read.

    python inference.py --config demo
    python inference.py --model runs/llama2-lora --data data/alpaca_heldout.json --temperature 0.7 --top_k 50
    python inference.py --config sweep --temperature 0 0.7 --top_k 0 50 --num_beams 1 4
    python inference.py --model meta-llama/Llama-2-7b-chat-hf --backend openai --base_url http://localhost:8000/v1
    python inference.py --model runs/llava-student --data heldout.chat.jsonl --images_root images/

The data is Alpaca records (an `image` field for image-plus-text records) or chat JSONL (one user
turn, whose image_url parts hold image paths, then the answer). A LLaVA student (finetune or merge
folder, or a LLaVA base) answers them with the images, through the same generation code as the
generate stage's LLaVA teacher; rows keep each record's image reference as given.

Decoding settings take lists; their grid is expanded into settings, each answered into its own
file with the setting in every row. One setting writes `predictions.jsonl`; a sweep writes
`predictions/<setting>.jsonl`, and either writes `sweep.json` (the index). Rows are appended,
fsynced, as each batch finishes; a rerun of an unfinished run (or `--resume`) skips the ids
already answered, and refuses when the settings differ. A finished file is rewritten in data order.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..errors import ConfigError, OutputExistsError, RecordError
from ..paths import STAGE_CONFIG_DIRS, resolve_input
from ..predictions import PREDICTIONS, SWEEP_DIR, SWEEP_INDEX, id_key, prediction_files
from ..records import append_jsonl, drop_partial_last_line, iter_json_objects, validate, write_json, write_jsonl
from ..runs import RunRecord, check_resumable_run, claim_output_dir
from ..settings import HelpLayout
from ..teachers.base import SamplingParams
from ..teachers.factory import TeacherSpec, make_teacher
from ..training.student_info import StudentInfo
from .common import quiet_libraries, run_main

BACKENDS = ("transformers", "openai", "vllm")
# Decoding settings that take lists, in the order their grid is expanded.
GRID_FIELDS = ("max_new_tokens", "temperature", "top_k", "top_p", "num_beams", "repetition_penalty")
LABEL_PROBS_METHOD = ("probability of writing the label's name (all its tokens) where a label can begin: the "
                      "answer's start or after a separator of the list written; the highest over those places")
# Settings a resumed run may change: they change how answers are fetched, never what they are.
OPERATIONAL_FIELDS = ("resume", "overwrite", "batch_size", "base_url", "api_key_env", "max_in_flight", "timeout_s",
                      "max_retries")


@dataclass
class InferenceConfig:
    model: str = field(metadata={"help": "A finetune output folder (base + adapter), a merged model, a hub id or "
                                         "tunelab:tiny-llama; for --backend openai, the model name the server serves."})
    data: str = field(default="data/alpaca_heldout.json", metadata={
        "group": "data", "help": "Alpaca records ('output' is kept as the reference; 'image', a path, for LLaVA "
                                 "students) or chat JSONL (a user turn, image_url parts allowed, then the answer)."})
    images_root: str | None = field(default=None, metadata={"group": "data",
        "help": "Folder the data's image paths are relative to (default: the data file's folder); a path "
                "resolving outside it is refused. The generate stage writes paths relative to its own images_root."})
    output_dir: str = field(default="runs/inference", metadata={"group": "output",
        "help": f"Gets {PREDICTIONS} (one setting) or {SWEEP_DIR}/*.jsonl (a sweep), {SWEEP_INDEX}, config.yaml, "
                "provenance.json."})
    template: str | None = field(default=None, metadata={
        "help": "Prompt format: chat, a template in prompts/, or a path; default: the one saved with the model, "
                "else the model's chat template, else alpaca_student (servers: chat)."})
    # Decoding: each takes one value or several; several make a sweep over their grid.
    max_new_tokens: list[int] = field(default_factory=lambda: [128], metadata={"range": (1, None), "group": "decoding",
        "help": "Answer length cap; a row cut by it has finish_reason 'length'."})
    temperature: list[float] = field(default_factory=lambda: [0.0], metadata={"range": (0, None), "group": "decoding",
        "help": "0 = greedy (or beam search); > 0 samples. Greedy ignores top_k and top_p, so those combinations "
                "collapse into one setting."})
    top_k: list[int] = field(default_factory=lambda: [0], metadata={"range": (0, None),
        "group": "decoding", "help": "Sample from the k likeliest tokens; 0 = off."})
    top_p: list[float] = field(default_factory=lambda: [1.0], metadata={"range": (0, 1), "range_open": "low",
        "group": "decoding", "help": "Nucleus sampling mass; 1 = off."})
    num_beams: list[int] = field(default_factory=lambda: [1], metadata={"range": (1, None), "group": "decoding",
        "help": "Beam search width, with temperature 0; a sweep skips beams > 1 with temperature > 0 (beam search "
                "does not sample here)."})
    repetition_penalty: list[float] = field(default_factory=lambda: [1.0], metadata={"range": (0, None), "range_open": "low",
        "group": "decoding", "help": "1 = off; > 1 discourages repeats."})
    seed: int = field(default=0, metadata={"group": "decoding",
        "help": "Sampling is seeded per example from this and the prompt (recorded in each row): an answer does "
                "not depend on its batch."})
    backend: str = field(default="transformers", metadata={"group": "backend",
        "help": "transformers (in process) | openai (any OpenAI-compatible server, e.g. vllm serve) | vllm "
                "(in process, optional extra, CUDA, no adapters)."})
    batch_size: int = field(default=8, metadata={"range": (1, None), "group": "backend",
        "help": "In-process prompts per generate() call, length-sorted: faster, more memory; answers do not change."})
    base_url: str | None = field(default=None, metadata={
        "group": "backend", "help": "openai backend: e.g. http://localhost:8000/v1."})
    api_key_env: str | None = field(default=None, metadata={"group": "backend",
        "help": "openai backend: NAME of the environment variable holding the API key (never the key)."})
    max_in_flight: int = field(default=32, metadata={"range": (1, None),
        "group": "backend", "help": "openai backend: concurrent requests."})
    timeout_s: float = field(default=300.0, metadata={"range": (0, None), "range_open": "low",
        "group": "backend", "help": "openai backend: seconds before a request is retried."})
    max_retries: int = field(default=6, metadata={"range": (0, None),
        "group": "backend", "help": "openai backend: retries on 429/5xx/timeouts/drops."})
    tensor_parallel_size: int = field(default=1, metadata={"range": (1, None), "group": "backend", "help": "vllm backend: GPUs per model."})
    label_probs: list[str] = field(default_factory=list, metadata={"group": "output",
        "help": "Also record each label's probability in every row (label_probs), read from the model's next-token "
                "distributions, for evaluate's ROC and PR curves: a taxonomy (jigsaw, or a YAML file) or the label "
                "names (positive negative). transformers backend only; costs a forward pass per label and place "
                "a label can begin in the answer."})
    limit: int | None = field(default=None, metadata={"range": (1, None), "group": "data", "help": "Answer only the first N examples."})
    dtype: str = field(default="auto", metadata={
        "help": "In-process weights dtype: auto (the checkpoint's; generation under bf16 autocast on CPUs with native "
                "bf16, about 1.5x faster), bfloat16 or float16 (half of float32's memory), float32."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run model code from the hub. Off unless you trust it."})
    resume: bool = field(default=False, metadata={"group": "output",
        "help": "Continue a run in output_dir, finished or not, with the same settings (an unfinished run "
                "continues without it)."})
    overwrite: bool = field(default=False, metadata={
        "group": "output", "help": "Replace an existing, non-empty output_dir."})

    def __post_init__(self):
        # A YAML scalar (`temperature: 0.7`) arrives as one value; the grid wants lists.
        for name in GRID_FIELDS:
            value = getattr(self, name)
            setattr(self, name, list(value) if isinstance(value, (list, tuple)) else [value])


CONFIG_TYPES = (InferenceConfig,)
HELP = HelpLayout(
    prog="inference.py",
    description="Answer a held-aside set with a (tuned) model and chosen decoding settings; lists of settings "
                "sweep their grid.",
    groups={"model": "model", "data": "data", "decoding": "decoding (several values: a sweep over their grid)",
            "backend": "backend and batching", "output": "output"},
    defaults={InferenceConfig: "model"},
)


@dataclass(frozen=True)
class Setting:
    """One point of the decoding grid: its file name and its parameters."""

    name: str
    params: SamplingParams

    @property
    def decoding(self) -> dict:
        """The parameters as every row records them (JSON types: the stop tuple is a list)."""
        return json.loads(json.dumps(asdict(self.params)))


def _fmt(x: float) -> str:
    return f"{x:g}"


def expand_grid(cfg: InferenceConfig) -> tuple[list[Setting], list[dict]]:
    """The distinct settings of the decoding grid (every value checked first), and the combinations skipped with why.

    Greedy decoding (temperature 0) ignores top_k and top_p, so they are reset to off and the
    duplicates dropped. Beam search does not sample here, so temperature > 0 with beams > 1 is
    skipped rather than run as a second, mislabelled copy of beam search.
    """
    check_values(cfg)
    settings: dict[SamplingParams, str] = {}
    skipped: list[dict] = []
    for combo in itertools.product(*(getattr(cfg, f) for f in GRID_FIELDS)):
        given = dict(zip(GRID_FIELDS, combo))
        if given["temperature"] > 0 and given["num_beams"] > 1:
            skipped.append({"setting": given, "reason": "temperature > 0 with num_beams > 1: beam search does not "
                                                        "sample; use temperature 0 for beam search"})
            continue
        canonical = dict(given)
        if canonical["temperature"] == 0:
            canonical.update(top_k=0, top_p=1.0)
        params = SamplingParams(**canonical, seed=cfg.seed)
        if params in settings:
            if canonical != given:
                skipped.append({"setting": given, "reason": "greedy decoding ignores top_k and top_p: same as "
                                                            f"{_name(params, cfg)}"})
            continue
        settings[params] = _name(params, cfg)
    if not settings:
        raise ConfigError("no decoding setting left to run: " + "; ".join(s["reason"] for s in skipped[:1]))
    names = list(settings.values())
    if len(set(names)) != len(names):  # e.g. 0.7 and 0.70000001 print alike
        raise ConfigError(f"decoding settings that differ only below 6 significant digits: {sorted(names)}")
    return [Setting(name, params) for params, name in settings.items()], skipped


def _name(p, cfg: InferenceConfig) -> str:
    """A readable file name: t, k and b always; p and rp when on; n when the grid varies it."""
    name = f"t{_fmt(p.temperature)}_k{p.top_k}_b{p.num_beams}"
    if p.top_p != 1.0:
        name += f"_p{_fmt(p.top_p)}"
    if p.repetition_penalty != 1.0:
        name += f"_rp{_fmt(p.repetition_penalty)}"
    if len(set(cfg.max_new_tokens)) > 1:
        name += f"_n{p.max_new_tokens}"
    return name


def check_values(cfg: InferenceConfig) -> None:
    """Settings that conflict; each number's own range is checked where it is parsed (its field's `range`)."""
    if cfg.backend not in BACKENDS:
        raise ConfigError(f"unknown backend {cfg.backend!r}; choose from {', '.join(BACKENDS)}")
    if cfg.resume and cfg.overwrite:
        raise ConfigError("resume continues the run in output_dir; overwrite would replace it: choose one")
    if cfg.backend != "transformers" and max(cfg.num_beams) > 1:
        raise ConfigError(f"backend {cfg.backend} does not beam search (the OpenAI API and vLLM's sampling "
                          "parameters have no beams); use --backend transformers for num_beams > 1")
    if cfg.label_probs and cfg.backend != "transformers":
        raise ConfigError(f"label_probs needs the model's full next-token distributions, which only --backend "
                          f"transformers gives here ({cfg.backend} returns the sampled tokens)")
    if cfg.backend == "openai" and not cfg.base_url:
        raise ConfigError("backend openai needs --base_url, e.g. http://localhost:8000/v1 (vllm serve's address)")


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


def read_examples(cfg: InferenceConfig) -> tuple[Path, list[dict]]:
    """The records to answer, each with an `id` (its index when the data has none), ids unique.

    Alpaca records, or chat records (one user turn, then the answer) read into the same fields: the
    user turn's text is the instruction, the answer the reference. Image references (an Alpaca
    `image`, chat `image_url` / `image` parts) are resolved under the images root and opened now,
    before any model loads; each example keeps them as given (`image_refs`) and resolved (`image_paths`).
    """
    from ..training.data import detect_format

    path = resolve_input(cfg.data)
    root = resolve_input(cfg.images_root) if cfg.images_root else path.parent
    if cfg.images_root and not root.is_dir():
        raise ConfigError(f"images_root {cfg.images_root}: no such folder")
    kind = detect_format(path)
    if kind not in ("alpaca", "chat"):
        raise RecordError(path, None, f"{kind} records: inference answers Alpaca records or chat records")
    examples, seen = [], {}
    for i, (line, obj) in enumerate(iter_json_objects(path)):
        if cfg.limit is not None and i >= cfg.limit:
            break
        if problem := validate(obj, kind):
            raise RecordError(path, line, f"bad {kind} record: {problem}")
        example = _alpaca_example(obj, path, line) if kind == "alpaca" else _chat_example(obj, path, line)
        example["id"] = obj.get("id", str(i))
        key = id_key(example["id"])
        if key in seen:
            raise RecordError(path, None, f"record #{i} has the id {example['id']!r} of record #{seen[key]}: ids key "
                                          "the answers (a resumed run skips the ids it has), so they must be unique")
        seen[key] = i
        _resolve_images(example, root, cfg.images_root is not None, cfg.backend == "openai", path, line)
        examples.append(example)
    if not examples:
        raise RecordError(path, None, f"holds no {'Alpaca' if kind == 'alpaca' else 'chat'} records to answer")
    return path, examples


def _alpaca_example(obj: dict, path: Path, line: int) -> dict:
    image = obj.get("image")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise RecordError(path, line, "field 'image' must be a path (or null)")
    return {**obj, "input": obj.get("input", ""), "image_refs": [image] if image else []}


def _chat_example(obj: dict, path: Path, line: int) -> dict:
    """A single-turn chat record as an example; `user_turn` keeps its parts in order for LLaVA models."""
    messages = obj["messages"]
    if [m["role"] for m in messages] != ["user", "assistant"]:
        raise RecordError(path, line, "inference answers single-turn chat records: one user turn, then the "
                                      f"assistant's answer (this one: {[m['role'] for m in messages]})")
    texts, refs, parts = [], [], []
    for part in messages[0]["content"] if isinstance(messages[0]["content"], list) else [messages[0]["content"]]:
        kind = "text" if isinstance(part, str) else part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(part if isinstance(part, str) else part.get("text", ""))
            parts.append({"type": "text", "text": texts[-1]})
        elif kind in ("image_url", "image"):
            ref = part.get("image_url") if kind == "image_url" else (part.get("path") or part.get("url") or part.get("image"))
            ref = ref.get("url") if isinstance(ref, dict) else ref
            if not isinstance(ref, str) or not ref.strip():
                raise RecordError(path, line, f"{kind} part without a path")
            refs.append(ref)
            parts.append({"type": "image_url", "image_url": {"url": ref}})
        else:
            raise RecordError(path, line, f"unsupported content part {json.dumps(part)[:60]} (text, image_url or image)")
    answer = messages[1]["content"]
    if isinstance(answer, list):
        answer = "".join(p.get("text", "") for p in answer if isinstance(p, dict) and p.get("type") == "text")
    if not answer.strip():
        raise RecordError(path, line, "the answer (last message) has no text")
    user_turn = {"role": "user", "content": parts if refs else "\n".join(texts)}
    return {"instruction": "\n".join(texts), "input": "", "output": answer, "image_refs": refs,
            "user_turn": user_turn}


def _resolve_images(example: dict, root: Path, root_given: bool, allow_urls: bool, path: Path, line: int) -> None:
    """Each image reference as a checked local path (or URL, for servers), or a RecordError naming the record."""
    from ..teachers.images import is_remote, resolve_image, verify_image

    resolved = []
    for ref in example["image_refs"]:
        try:
            image = resolve_image(ref, root, allow_urls=allow_urls)  # never outside the root
            if not is_remote(image):
                verify_image(image)
        except ValueError as e:
            hint = "" if root_given else " (set --images_root to the folder the paths are relative to)"
            raise RecordError(path, line, f"record {example['id']!r}: {e}{hint}") from None
        resolved.append(image)
    example["image_paths"] = resolved
    if example.get("user_turn") and resolved:  # the request reads the resolved files; rows keep the references
        paths = iter(resolved)
        example["user_turn"] = {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": next(paths)}} if p["type"] == "image_url" else p
            for p in example["user_turn"]["content"]]}


def prediction_path(out: Path, setting: Setting, sweep: bool) -> Path:
    return out / SWEEP_DIR / f"{setting.name}.jsonl" if sweep else out / PREDICTIONS


def prepare_output(cfg: InferenceConfig, record: RunRecord) -> tuple[Path, bool]:
    """Check output_dir before any slow work; returns (folder, whether earlier rows will be kept).

    Fresh or empty: start. --overwrite: the earlier outputs go. A folder with rows and a
    config.yaml is continued when the run never finished (no provenance.json) or with --resume,
    and refused when its settings differ. A run that died before its first row starts over.
    """
    out = Path(cfg.output_dir)
    claim_output_dir(out)  # another live run writing here is refused, whatever the folder holds
    if not out.exists() or not any(out.iterdir()):
        return out, False
    if cfg.overwrite:
        return out, False  # cleared once the model has loaded, so a failed start costs nothing
    finished = (out / "provenance.json").exists()
    has_rows = any(p.stat().st_size for p in prediction_files(out))
    if (out / "config.yaml").exists() and not finished and not has_rows:
        return out, False  # died before answering anything: nothing to keep
    if finished and not cfg.resume:
        raise OutputExistsError(f"output folder {out} holds a finished run; pass --overwrite to replace its outputs "
                                "(or --resume to check it and fill in anything missing)")
    if not (out / "config.yaml").exists() and not cfg.resume:
        raise OutputExistsError(f"output folder {out} already exists and is not empty; pass --overwrite to replace "
                                "its outputs")
    check_resumable_run(out, record, ignore=OPERATIONAL_FIELDS)
    return out, True


def clear_outputs(out: Path) -> None:
    """Remove what an earlier run of this stage wrote here (and nothing else)."""
    for path in [*prediction_files(out), out / SWEEP_INDEX, out / "provenance.json", out / "config.yaml"]:
        path.unlink(missing_ok=True)
    if (out / SWEEP_DIR).is_dir() and not any((out / SWEEP_DIR).iterdir()):
        (out / SWEEP_DIR).rmdir()


def lock_folder(out: Path) -> int:
    """An exclusive lock on the folder itself (no lock file): two runs appending to one file would duplicate rows."""
    import fcntl

    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"another inference run is writing to {out}; wait for it or use another output_dir") from None
    return fd


def load_done(path: Path, setting: Setting, known: set[str]) -> dict[str, dict]:
    """Rows already in a predictions file, by id; a row made with other settings is refused."""
    done: dict[str, dict] = {}
    if not path.exists():
        return done
    drop_partial_last_line(path)  # a row cut by a kill mid-write: that example is answered again
    expected = setting.decoding
    for line, row in iter_json_objects(path):
        if not isinstance(row, dict) or "id" not in row or "prediction" not in row:
            raise RecordError(path, line, "not a predictions row (needs id and prediction); remove the line or "
                                          "rerun with --overwrite")
        if row.get("decoding") != expected:
            raise RecordError(path, line, f"row {row['id']!r} was made with other decoding settings "
                                          f"({row.get('decoding')}, this run: {expected}); use another output_dir "
                                          "or --overwrite")
        key = id_key(row["id"])
        if key not in known:
            raise RecordError(path, line, f"row {row['id']!r} answers an id that is not in the data; the data or "
                                          "--limit changed: use another output_dir or --overwrite")
        done.setdefault(key, row)
    return done


def file_stats(rows: Sequence[dict]) -> dict:
    return {"rows": len(rows), "empty_predictions": sum(bool(r.get("empty")) for r in rows),
            "cut_by_length": sum(r.get("finish_reason") == "length" for r in rows),
            "errors": sum(r.get("finish_reason") == "error" for r in rows)}


def infer(argv: Sequence[str] | None = None) -> dict:
    from ..config import parse_config
    from ..models import is_tiny_random
    from ..report.view import VIEW_NAME, write_view
    from ..teachers.base import TeacherError
    from ..teachers.cache import RequestProgress

    (cfg,), config_file = parse_config(CONFIG_TYPES, argv, configs_dir=STAGE_CONFIG_DIRS["inference"], layout=HELP)
    settings, skipped = expand_grid(cfg)
    quiet_libraries()
    data_path, examples = read_examples(cfg)
    record = RunRecord(cfg.output_dir, "inference", [cfg], config_file)
    record.add_input("data", data_path)
    out, resuming = prepare_output(cfg, record)
    backend = make_backend(cfg, record, examples, data_path)
    out.mkdir(parents=True, exist_ok=True)
    lock = lock_folder(out)
    try:
        if not resuming:
            clear_outputs(out)
        else:
            check_same_data(out, record.inputs["data"])
        record.write_config()  # first, so a killed run is recognised (and its settings checked) on rerun
        sweep = len(settings) > 1
        known = {id_key(e["id"]) for e in examples}
        requests = [backend.request(e) for e in examples]
        done = {s.name: load_done(prediction_path(out, s, sweep), s, known) for s in settings}
        resumed = sum(len(d) for d in done.values())
        index = sweep_index(cfg, backend, record.inputs["data"], len(examples), settings, skipped, done, out, sweep)
        write_json(out / SWEEP_INDEX, index)
        progress = RequestProgress(len(settings) * len(examples), "inference")
        progress.bar.update(resumed)
        try:
            for s, entry in zip(settings, index["settings"], strict=True):
                path = prediction_path(out, s, sweep)
                rows = done[s.name]
                progress.counts.update(setting=s.name, empty=progress.counts.get("empty", 0))
                started = time.monotonic()
                answer_setting(backend, s, examples, requests, rows, path, progress)
                # Complete: rewritten in data order, so a resumed run's file equals an uninterrupted one's.
                ordered = [rows[id_key(e["id"])] for e in examples]
                write_jsonl(path, ordered)
                entry.update(complete=True, seconds=round(time.monotonic() - started, 2), **file_stats(ordered))
                write_json(out / SWEEP_INDEX, index)
                record.add_output(s.name if sweep else "predictions", path)
        except TeacherError as e:
            saved = sum(len(d) for d in done.values())
            raise TeacherError(f"{e}\n{saved} answers are saved in {out}; rerun the same command to continue") from e
        finally:
            progress.close()
        record.add_output("sweep", out / SWEEP_INDEX)
        record.add_output("view", out / VIEW_NAME)
        tiny = bool(backend.local_path) and is_tiny_random(backend.local_path)
        if tiny:
            record.notes["model"] = "tiny random model: its answers are noise"
        if retries := getattr(backend.teacher, "retries", None):
            record.notes["retries"] = dict(retries)
        summary = {
            "examples": len(examples), "settings": len(settings), "skipped_settings": len(skipped),
            **{k: sum(e[k] for e in index["settings"]) for k in ("rows", "empty_predictions", "cut_by_length", "errors")},
            "resumed_rows": resumed, "tiny_random_model": tiny,
            "per_setting": {e["name"]: {k: e[k] for k in ("file", "empty_predictions", "cut_by_length", "errors")}
                            for e in index["settings"]},
        }
        record.notes["summary"] = {k: v for k, v in summary.items() if k != "per_setting"}
        record.write()  # last: its presence marks the run finished
        view = write_view(out)  # a page for reading the answers, derived from the folder (`tunelab view` rewrites it)
    finally:
        os.close(lock)
    print(json.dumps(summary, indent=2))
    where = out / SWEEP_DIR if sweep else out / PREDICTIONS
    print(f"inference: {len(settings)} setting(s), answers in {where}" + (f" (index: {out / SWEEP_INDEX})" if sweep else "")
          + f"; to read them: {view}")
    return summary


def check_same_data(out: Path, data: str) -> None:
    """A resumed folder's rows answer the same data: the same path is not the same data, the index holds its hash."""
    if (out / SWEEP_INDEX).exists():
        then = json.loads((out / SWEEP_INDEX).read_text(encoding="utf-8")).get("data")
        if then != data:
            raise ConfigError(f"cannot resume {out}: the data changed since its rows were written ({then} then, "
                              f"{data} now); use another output_dir or --overwrite")


def sweep_index(cfg: InferenceConfig, backend: Backend, data: str, examples: int, settings: list[Setting],
                skipped: list, done: dict[str, dict], out: Path, sweep: bool) -> dict:
    """sweep.json: what answered which data, and each setting's file, decoding and progress."""
    index = {
        "backend": cfg.backend, "model": backend.model, "adapter": backend.adapter, "data": data,
        "examples": examples, "prompt_format": backend.prompt.name,
        "grid": {f: getattr(cfg, f) for f in GRID_FIELDS} | {"seed": cfg.seed},
        "settings": [{"name": s.name, "file": str(prediction_path(out, s, sweep).relative_to(out)),
                      "decoding": s.decoding, "complete": False, **file_stats(list(done[s.name].values()))}
                     for s in settings],
        "skipped": skipped,
    }
    if backend.labels:
        index["label_probs"] = {"labels": list(backend.labels), "method": LABEL_PROBS_METHOD}
    return index


def answer_setting(backend: Backend, setting: Setting, examples: list[dict], requests: list, rows: dict,
                   path: Path, progress) -> None:
    """Answer the examples `rows` lacks under one setting, appending each batch to `path` as it finishes."""
    from ..teachers.base import request_seed

    todo = [i for i, e in enumerate(examples) if id_key(e["id"]) not in rows]
    if not todo:
        return
    for group in backend.teacher.answer([requests[i] for i in todo], setting.params):
        new = [make_row(examples[todo[j]], response, setting, backend, request_seed(requests[todo[j]], setting.params))
               for j, response in group]
        if backend.labels:
            asked = [requests[todo[j]] for j, _ in group]
            for row, p in zip(new, backend.label_probs(asked, [r["prediction"] for r in new])):
                row["label_probs"] = p
        append_jsonl(path, new)  # fsynced: a kill loses only the batch in flight
        for row in new:
            rows[id_key(row["id"])] = row
        progress.counts["empty"] += sum(r["empty"] for r in new)
        progress.update(len(new), sum(r["completion_tokens"] for r in new), getattr(backend.teacher, "in_flight", 0))


def make_row(example: dict, response, setting: Setting, backend: Backend, seed: int) -> dict:
    """One answer for people to read, with everything that made it. An empty answer is flagged, not an error."""
    row = {
        "id": example["id"], "instruction": example["instruction"], "input": example["input"],
        "reference": example["output"], "prediction": response.text, "empty": not response.text.strip(),
        "finish_reason": response.finish_reason, "prompt_tokens": response.prompt_tokens,
        "completion_tokens": response.completion_tokens, "model": backend.model, "adapter": backend.adapter,
        "setting": setting.name, "seed": seed, "decoding": setting.decoding,
    }
    refs = example.get("image_refs") or []
    if refs:  # the record's own reference(s), as given: relative to the images root, like the data
        row.update({"image": refs[0]} if len(refs) == 1 else {"images": refs})
    if response.error:  # the server refused this one request (e.g. prompt too long): kept, and counted
        row["error"] = response.error
    return row


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(infer, argv)

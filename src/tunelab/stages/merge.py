"""merge: fold a student's LoRA adapter into its base, check the logits, save a standalone model.

    python finetune/merge.py --model runs/demo/student --output_dir runs/demo/merged
    python finetune/merge.py --model runs/llama2-qlora --output_dir runs/llama2-merged --push_to_hub --hub_repo_id me/llama2-student

The base is loaded unquantized (bf16 by default) even when the adapter was trained on a 4-bit
base (QLoRA): merging into 4-bit weights would round the update away. Before anything is saved,
the adapter model (base + adapter, unmerged) and the merged model score the same token
sequences, and the merge is refused when their logits differ by more than `atol`.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..console import get_logger
from ..errors import ConfigError, TunelabError
from ..models import VISION_LANGUAGE_CLASSES as VISION_CLASSES
from ..paths import resolve_input
from ..runs import RunRecord, check_output_dir, ensure_output_dir
from ..settings import HelpLayout
from ..training.classify.predict import CLASSIFIER_INFO
from ..training.student_info import MODEL_INFO, StudentInfo
from .common import quiet_libraries, run_main

_log = get_logger("merge")

# Max |logit difference| allowed between adapter and merged model. In float32 they agree to ~1e-5
# (rounding order only). bf16 stores a logit near 30 in steps of 0.125-0.25 and merging re-rounds
# every adapted weight, so logits move by up to ~1 (0.75 on a random 8-layer model with logits up
# to 30); a broken merge (adapter dropped, wrong scale, 4-bit weights) moves them by several units.
DEFAULT_ATOL = {"float32": 1e-3, "bfloat16": 2.0}
DTYPES = tuple(DEFAULT_ATOL)
# Used when no --check_data is given: short instructions in the student's prompt format.
BUILTIN_CHECKS = (
    ("Give three tips for staying healthy.", ""),
    ("Translate the sentence into French.", "The weather is nice today."),
    ("Write a short poem about the sea.", ""),
    ("Explain why the sky is blue in one sentence.", ""),
    ("Summarize the text.", "The meeting was moved from Monday to Wednesday because the room was booked."),
)
MERGEABLE_TASKS = ("sft", "dpo", "kto", "orpo", "vision_sft")
TINY_MARKER = "TINY_RANDOM_MODEL.txt"


@dataclass
class MergeConfig:
    model: str = field(metadata={"help": "A finetune output folder holding a LoRA adapter (finetune/train.py's output_dir)."})
    output_dir: str = field(metadata={
        "group": "output", "help": "Gets the merged model (safetensors), tokenizer, prompt format, "
                                              "tunelab_model.json, config.yaml, provenance.json."})
    dtype: str = field(default="bfloat16", metadata={
        "help": "Weights dtype of the base and the saved model: bfloat16 (half the size) or float32. Never "
                "quantized, even for a QLoRA adapter: merging into 4-bit weights loses the update."})
    atol: float | None = field(default=None, metadata={"range": (0, None), "range_open": "low", "group": "check",
        "help": f"Largest |logit difference| allowed between adapter and merged model; default "
                f"{DEFAULT_ATOL['bfloat16']:g} for bfloat16 (bf16 rounding of logits and of every merged weight moves "
                f"logits by up to ~1), {DEFAULT_ATOL['float32']:g} for float32 (agreement to ~1e-5)."})
    check_data: str | None = field(default=None, metadata={"group": "check",
        "help": "Alpaca JSON/JSONL for the logits check (prompt + reference answer, in the student's format); "
                "default: a few built-in instructions."})
    check_examples: int = field(default=3, metadata={"range": (1, None),
        "group": "check", "help": "Sequences in the logits check (one forward each, two models)."})
    check_max_tokens: int = field(default=256, metadata={"range": (1, None),
        "group": "check", "help": "Truncate each check sequence to this many tokens."})
    device_map: str | None = field(default=None, metadata={
        "help": "None: merge on CPU (a 7B model needs ~15 GB of RAM in bf16); auto: spread over the GPUs."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run model code from the hub. Off unless you trust it."})
    push_to_hub: bool = field(default=False, metadata={"group": "output",
        "help": "Upload the merged folder to the Hugging Face Hub (token from the HF_TOKEN environment variable only)."})
    hub_repo_id: str | None = field(default=None, metadata={
        "group": "output", "help": "user/name of the hub repository (created if missing)."})
    hub_private: bool = field(default=False, metadata={
        "group": "output", "help": "Create the hub repository as private."})
    overwrite: bool = field(default=False, metadata={
        "group": "output", "help": "Replace an existing, non-empty output_dir."})


CONFIG_TYPES = (MergeConfig,)
HELP = HelpLayout(
    prog="finetune/merge.py",
    description="Merge a student's LoRA adapter into its base (unquantized), check logits, save a standalone model.",
    groups={"model": "model", "check": "logits check", "output": "output and hub"},
    defaults={MergeConfig: "model"},
)


def read_student(folder: str | Path) -> StudentInfo:
    """The finetune folder's tunelab_model.json, refused unless it describes a LoRA adapter to merge."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--model {folder}: no such folder")
    info_path = folder / MODEL_INFO
    if not info_path.exists():
        hint = " (a classifier folder; merge is for students)" if (folder / CLASSIFIER_INFO).exists() else ""
        raise ConfigError(f"{folder} is not a finetune output folder: no {MODEL_INFO}{hint}")
    info = StudentInfo.read(folder)
    if info.merged_from:
        raise ConfigError(f"{folder} is already a merged model (from {info.merged_from}): nothing to merge")
    if not info.adapter:
        raise ConfigError(f"{folder} holds a full fine-tune (adapter false in {MODEL_INFO}): nothing to merge; "
                          "use the folder itself as the model")
    if info.task not in MERGEABLE_TASKS:
        raise ConfigError(f"{info_path}: task {info.task!r} cannot be merged here (expected one of {MERGEABLE_TASKS})")
    from ..models import require_safetensors_adapter

    require_safetensors_adapter(folder)
    if not (folder / "adapter_config.json").exists():
        raise ConfigError(f"{folder} has no adapter_config.json: the adapter was not saved (did training finish?)")
    if not info.base:
        raise ConfigError(f"{info_path}: no 'base' model recorded")
    template = info.template
    if template and template != "chat" and not (folder / template).exists():
        raise ConfigError(f"{folder}: the student's prompt template {template} is missing")
    return info


def validate(cfg: MergeConfig) -> str | None:
    """Every setting problem before any folder is touched or weights are loaded; returns the hub token."""
    from .push import hub_token_for

    if cfg.dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {DTYPES}, got {cfg.dtype!r}")
    if cfg.atol is not None and not cfg.atol > 0:
        raise ConfigError(f"atol must be positive, got {cfg.atol}")
    if cfg.check_examples < 1:
        raise ConfigError("check_examples must be at least 1: the logits check is what makes a merge safe to use")
    if cfg.check_max_tokens < 2:
        raise ConfigError("check_max_tokens must be at least 2")
    if Path(cfg.output_dir).resolve() == Path(cfg.model).resolve():
        raise ConfigError("output_dir is the adapter folder itself: choose a new folder for the merged model")
    if cfg.hub_repo_id and not cfg.push_to_hub:
        raise ConfigError("hub_repo_id is given but push_to_hub is off: add --push_to_hub, or drop --hub_repo_id")
    if not cfg.push_to_hub:
        return None
    return hub_token_for(cfg.hub_repo_id)


def check_records(cfg: MergeConfig) -> tuple[list[tuple[str, str, str | None]], Path | None]:
    """(instruction, input, reference answer or None) for the logits check, and the data file used."""
    if cfg.check_data is None:
        return [(i, x, None) for i, x in BUILTIN_CHECKS[: cfg.check_examples]], None
    from ..records import read_records

    path = resolve_input(cfg.check_data)
    if not path.exists():
        raise ConfigError(f"check_data {cfg.check_data}: no such file")
    records = read_records(path, "alpaca")[: cfg.check_examples]
    if not records:
        raise ConfigError(f"check_data {path} holds no records")
    return [(r["instruction"], r["input"], r["output"]) for r in records], path


def check_inputs(prompt, tokenizer, records, max_tokens: int) -> list[list[int]]:
    """Token ids of each check sequence, laid out exactly as in training and inference.

    The reference answer (when there is one) is appended: those are the positions the adapter
    was trained on, where a bad merge shows most.
    """
    sequences = []
    for instruction, input_text, answer in records:
        if prompt.is_chat:
            messages = prompt.messages(instruction, input_text)
            if answer is not None:
                text = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}], tokenize=False)
            else:
                text = prompt.render(tokenizer, instruction, input_text)
        else:
            text = prompt.render(tokenizer, instruction, input_text)
            if answer is not None:
                text += answer + (tokenizer.eos_token or "")
        sequences.append(tokenizer(text, add_special_tokens=prompt.tokenize_with_special_tokens)["input_ids"][:max_tokens])
    return sequences


def vision_check_inputs(processor, records, max_tokens: int) -> list:
    """Text-only turns in the processor's chat template (content parts, as the LLaVA student is trained),
    then the first one again with a fixed synthetic picture.

    LoRA adapts only the language model, which text reaches; a projector trained beside it
    (train_projector) acts only on image features, so one sequence carries an image. That one is
    not truncated: cutting its image tokens would make it unreadable to the model.
    """
    import numpy as np
    from PIL import Image

    tokenizer = processor.tokenizer
    sequences: list = []
    for k, (instruction, input_text, answer) in enumerate(list(records) + list(records[:1])):
        with_image = k == len(records)
        user = instruction if not input_text else f"{instruction}\n\n{input_text}"
        parts = [{"type": "text", "text": user}]
        messages = [{"role": "user", "content": ([{"type": "image"}] if with_image else []) + parts}]
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=answer is None)
        # Some templates (llava-hf's LLaVA 1.5) leave BOS to the tokenizer; never add it twice.
        has_bos = bool(tokenizer.bos_token) and text.startswith(tokenizer.bos_token)
        if with_image:
            pixels = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
            sequences.append(dict(processor(images=[Image.fromarray(pixels)], text=[text], return_tensors="pt",
                                            add_special_tokens=not has_bos)))
        else:
            sequences.append(tokenizer(text, add_special_tokens=not has_bos)["input_ids"][:max_tokens])
    return sequences


def sequence_logits(model, sequences: list) -> list:
    """Float32 logits on CPU, one sequence per forward (no padding to get wrong). A sequence is token ids,
    or a processor's output (ids with an image's pixel values)."""
    import torch

    param = next(model.parameters())
    out = []
    with torch.no_grad():
        for inputs in sequences:
            if isinstance(inputs, dict):
                kwargs = {k: v.to(param.device) for k, v in inputs.items()}
                kwargs["pixel_values"] = kwargs["pixel_values"].to(model.dtype)  # the tower's dtype (bf16 merges)
            else:
                kwargs = {"input_ids": torch.tensor([inputs], device=param.device)}
            logits = model(**kwargs).logits
            out.append(logits[0].float().cpu())
    return out


def compare_logits(reference: list, candidate: list) -> dict:
    """Max absolute difference and next-token (argmax) agreement over every position."""
    import torch

    max_diff = sum_diff = 0.0
    agree = total = values = 0
    finite = True
    for a, b in zip(reference, candidate, strict=True):
        finite = finite and bool(torch.isfinite(a).all() and torch.isfinite(b).all())
        diff = (a - b).abs()
        max_diff = max(max_diff, diff.max().item())
        sum_diff += diff.sum().item()
        values += diff.numel()
        agree += (a.argmax(-1) == b.argmax(-1)).sum().item()
        total += a.shape[0]
    return {"max_abs_diff": max_diff, "mean_abs_diff": sum_diff / values, "argmax_agree": agree == total,
            "argmax_agreement": agree / total, "positions": total, "finite": finite}


def load_base(path: str, model_type: str, dtype: str, *, trust_remote_code: bool, device_map: str | None):
    """The base in full precision (never quantized), as the class the adapter was trained on."""
    from ..models import hub_token, load_causal_lm, torch_dtype

    if model_type in VISION_CLASSES:
        import transformers

        cls = getattr(transformers, VISION_CLASSES[model_type])
        kwargs = dict(dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code, use_safetensors=True,
                      token=hub_token())
        if device_map:
            kwargs["device_map"] = device_map
        model = cls.from_pretrained(path, **kwargs)
    else:
        model = load_causal_lm(path, dtype=dtype, trust_remote_code=trust_remote_code, device_map=device_map)
    if getattr(model, "is_quantized", False) or getattr(model.config, "quantization_config", None):
        raise ConfigError(f"base {path} is a pre-quantized checkpoint; merging into quantized weights loses the "
                          "adapter's update. Point the student's base at the full-precision model.")
    return model


@dataclass
class LoadedStudent:
    """The adapter on its base, with the student's own tokenizer (or processor) and prompt format."""

    model: object  # a PeftModel
    base: str
    model_type: str
    tokenizer: object
    processor: object | None  # vision students
    prompt: object | None  # StudentPrompt; None for vision students (the processor's chat template)
    sequences: list  # the logits check's inputs


def merge(argv: Sequence[str] | None = None) -> dict:
    """Run the merge stage; returns the logits check and where the model went."""
    from ..config import parse_config

    (cfg,), config_file = parse_config(CONFIG_TYPES, argv, layout=HELP)
    token = validate(cfg)
    student = Path(cfg.model)
    info = read_student(student)
    check_output_dir(cfg.output_dir, cfg.overwrite)
    records, check_path = check_records(cfg)
    record = RunRecord(cfg.output_dir, "merge", [cfg], config_file)  # writes nothing until the merge passed
    quiet_libraries()
    loaded = load_student(cfg, info, student, records, record)
    merged, check = merge_and_check(loaded, cfg, check_path)
    out = ensure_output_dir(cfg.output_dir, cfg.overwrite)
    record.models.update({"base": info.base, "adapter": str(student)})
    record.add_input("adapter", student / "adapter_model.safetensors")
    record.add_input("adapter_config", student / "adapter_config.json")
    if check_path:
        record.add_input("check_data", check_path)
    save_merged(merged, loaded, info, student, out, cfg.dtype)
    record.add_output("model", out)
    record.notes["logits_check"] = check
    from ..cards import write_merged_model_card

    write_merged_model_card(out, student, check, record)  # README.md: the adapter's card facts plus this merge
    if cfg.push_to_hub:
        record.notes["hub"] = {"repo_id": cfg.hub_repo_id, "private": cfg.hub_private}
    record.write()  # before the upload, so the hub copy carries its provenance

    summary = {"output_dir": str(out), "logits_check": check}
    if cfg.push_to_hub:  # the one upload path (finetune/push.py), card included
        from .push import upload_or_explain

        summary["hub_url"] = upload_or_explain(out, cfg.hub_repo_id, private=cfg.hub_private, token=token,
                                               commit_message="Upload merged tunelab student")
        _log.info(f"uploaded to {summary['hub_url']}")
    _log.info(f"merged model in {out}")
    return summary


def load_student(cfg: MergeConfig, info: StudentInfo, student: Path, records, record: RunRecord) -> LoadedStudent:
    """The base in cfg.dtype with the adapter on it, and the check's sequences in the student's own format."""
    from peft import PeftModel

    from ..models import load_tokenizer, model_type, resolve_model
    from ..prompts import student_prompt

    base = resolve_model(info.base)
    mtype = model_type(base, trust_remote_code=cfg.trust_remote_code)
    # The student's own tokenizer (or processor): its pad token and chat template are the ones it was trained with.
    processor = prompt = None
    if mtype in VISION_CLASSES:
        from ..teachers.llava_teacher import load_student_processor

        processor = load_student_processor(student, base, trust_remote_code=cfg.trust_remote_code)
        tokenizer = processor.tokenizer
        sequences = vision_check_inputs(processor, records, cfg.check_max_tokens)
        record.add_template("chat_template", processor.chat_template)
    else:
        template = info.template or "auto"
        tokenizer = load_tokenizer(str(student), trust_remote_code=cfg.trust_remote_code)
        prompt = student_prompt(template if template in ("chat", "auto") else str(student / template), tokenizer)
        sequences = check_inputs(prompt, tokenizer, records, cfg.check_max_tokens)
        record.add_template(prompt.name, tokenizer.chat_template if prompt.is_chat else prompt.template.source)
    model = load_base(base, mtype, cfg.dtype, trust_remote_code=cfg.trust_remote_code, device_map=cfg.device_map)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:  # training added a pad token
        model.resize_token_embeddings(len(tokenizer))
    model = PeftModel.from_pretrained(model, str(student))
    model.eval()
    return LoadedStudent(model, base, mtype, tokenizer, processor, prompt, sequences)


def merge_and_check(loaded: LoadedStudent, cfg: MergeConfig, check_path: Path | None) -> tuple[object, dict]:
    """The merged model, and the logits check of merged against adapter (refused beyond atol: nothing saved)."""
    model, sequences = loaded.model, loaded.sequences
    adapter_logits = sequence_logits(model, sequences)
    with model.disable_adapter():
        # How far the adapter moves the base: agreement with an adapter that changes nothing proves little.
        adapter_effect = compare_logits(sequence_logits(model, sequences), adapter_logits)["max_abs_diff"]
    merged = model.merge_and_unload()
    merged.eval()
    check = compare_logits(adapter_logits, sequence_logits(merged, sequences))
    atol = cfg.atol if cfg.atol is not None else DEFAULT_ATOL[cfg.dtype]
    check.update(atol=atol, dtype=cfg.dtype, sequences=len(sequences), adapter_effect_max_abs=adapter_effect,
                 check_data=str(check_path) if check_path else "built-in instructions")
    check["passed"] = check["finite"] and check["max_abs_diff"] <= atol
    _log.info(f"logits check on {check['positions']} positions ({check['sequences']} sequences, {cfg.dtype}): "
              f"max |adapter - merged| = {check['max_abs_diff']:.3g} (atol {atol:g}), "
              f"next-token agreement {check['argmax_agreement']:.1%}; "
              f"the adapter moves the base by up to {check['adapter_effect_max_abs']:.3g}")
    if check["adapter_effect_max_abs"] == 0:
        _log.warning("the adapter does not change the base's logits at all (was it trained?)")
    elif check["passed"] and check["max_abs_diff"] > 0.5 * check["adapter_effect_max_abs"]:
        _log.warning("the merged model is nearly as far from the adapter model as the base is; the "
                     "adapter's effect is at the level of rounding noise here (try --dtype float32 to see it)")
    if not check["passed"]:
        raise ConfigError(f"merged model's logits differ from the adapter model's by {check['max_abs_diff']:.3g} "
                          f"(atol {atol:g}{'' if check['finite'] else ', non-finite values'}); nothing saved. "
                          "Try --dtype float32, or raise --atol if the difference is bf16 rounding.")
    return merged, check


def save_merged(merged, loaded: LoadedStudent, info: StudentInfo, student: Path, out: Path, dtype: str) -> None:
    """Safetensors weights, the tokenizer or processor, the prompt template and the merged StudentInfo."""
    from ..models import is_tiny_random

    merged.save_pretrained(str(out))  # safetensors; transformers 5 writes nothing else
    if list(out.glob("*.bin")) or not list(out.glob("*.safetensors")):
        raise TunelabError(f"{out}: the merged weights were not written as safetensors")
    (loaded.processor if loaded.processor is not None else loaded.tokenizer).save_pretrained(str(out))
    if loaded.prompt is not None and not loaded.prompt.is_chat:
        shutil.copyfile(student / info.template, out / info.template)
    if is_tiny_random(loaded.base):  # the merged model still knows nothing; inference says so
        shutil.copyfile(Path(loaded.base) / TINY_MARKER, out / TINY_MARKER)
    StudentInfo(task=info.task, base=info.base, model_type=loaded.model_type, adapter=False, merged_from=info.base,
                adapter_source=str(student), trained_quantization=info.quantization, quantization="none",
                dtype=dtype, template=info.template, template_version=info.template_version,
                tiny_random=is_tiny_random(loaded.base)).write(out)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(merge, argv, interrupted_hint="rerun the same command with --overwrite")

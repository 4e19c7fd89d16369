"""LoRA / QLoRA SFT of a LLaVA student on image QA pairs, with TRL's SFTTrainer and the model's processor.

Input: chat records (`{"messages": [...]}`), such as the generate stage's `moderation_qa.chat.jsonl`,
whose user turns carry images as OpenAI `image_url` parts (or HF `image` parts) holding paths
under the images root; text-only records train too. Each record becomes text plus image paths:
- prompt: the processor's chat template up to the assistant's turn, one `<image>` per image
  (the processor expands each into as many tokens as the vision tower yields features);
- completion: the answer as the template writes it, always ending in EOS;
- images: paths, decoded per batch (as RGB) by TRL's vision collator.
With `completion_only_loss` the collator puts only the completion in the loss: prompt, image
tokens and padding are -100.

The vision tower stays frozen (LoRA adapts the language model's projections only); so does the
multi-modal projector, unless `train_projector` trains it in full beside the adapter (LLaVA's own
LoRA recipe), optionally at its own learning rate. Under 4-bit neither is quantized, so the image
features are the ones the language model was trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

from trl import SFTTrainer

from ..errors import ConfigError, RecordError
from ..models import VISION_LANGUAGE_CLASSES, is_tiny_random, model_type
from ..paths import resolve_input
from ..records import iter_json_objects, validate
from .data import SFTData, detect_format, is_dataset_ref
from .lora import lora_from_settings
from .runner import early_stopping_callbacks
from .sft import SFTRecipe
from .student_info import StudentInfo

TASK = "vision_sft"
MODEL_CLASSES = VISION_LANGUAGE_CLASSES
FROZEN_MODULES = ("vision_tower", "multi_modal_projector")
PROJECTOR = "multi_modal_projector"
# bitsandbytes skip patterns (regex from the start of a module name, or a suffix). Giving any
# replaces transformers' default list, so the head is named again.
NOT_QUANTIZED = [r".*vision_tower", r".*multi_modal_projector", "lm_head"]
EXCLUDED_FROM_LORA = r".*\.(vision_tower|multi_modal_projector)(\..*)?"  # PEFT full-matches module names


def in_frozen_part(name: str) -> bool:
    """True for a parameter or module of the vision tower or the multi-modal projector."""
    return any(part in FROZEN_MODULES for part in name.split("."))


def in_projector(name: str) -> bool:
    """True for a parameter of the multi-modal projector (or PEFT's trained copy of it)."""
    return PROJECTOR in name.split(".")


class ChatFormat:
    """The processor's chat template, split into the prompt and the completion that TRL tokenizes.

    TRL tokenizes both without special tokens (the template places them), so BOS is added here
    when the template leaves it to the tokenizer (llava-hf's LLaVA 1.5 template does), and EOS
    when the template ends an answer without one (same template): a student that never sees
    EOS in its loss never learns to stop.
    """

    def __init__(self, processor):
        tokenizer = processor.tokenizer
        if not processor.chat_template:
            raise ConfigError("the base's processor has no chat template: a LLaVA student needs one "
                              "(llava-hf checkpoints ship chat_template.json)")
        self.processor = processor
        self.image_token = processor.image_token
        adds_bos = tokenizer.bos_token_id is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
        self.bos = tokenizer.bos_token if adds_bos else ""
        self.eos = tokenizer.eos_token

    def render(self, messages: list[dict]) -> tuple[str, str]:
        """(prompt, completion) text of HF-format messages whose last one is the assistant's answer."""
        apply = self.processor.apply_chat_template
        prompt = apply(messages[:-1], add_generation_prompt=True, tokenize=False)
        full = apply(messages, tokenize=False)
        if not full.startswith(prompt):
            raise ConfigError("the chat template renders a conversation differently from its prompt with "
                              "add_generation_prompt, so the answer cannot be split off; fix chat_template.json")
        completion = full[len(prompt):].rstrip()
        if not completion.endswith(self.eos):
            completion += self.eos
        if self.bos and not prompt.startswith(self.bos):
            prompt = self.bos + prompt
        return prompt, completion


def _image_ref(part: dict) -> str:
    value = part.get("image_url") if part["type"] == "image_url" else (
        part.get("path") or part.get("url") or part.get("image"))
    if isinstance(value, dict):
        value = value.get("url")
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{part['type']} part without a path")
    return value


def to_hf_message(message: dict) -> tuple[dict, list[str]]:
    """A chat message with HF content parts (`{"type": "image"}` placeholders) and its image references."""
    content = message["content"]
    if isinstance(content, str):  # llava-hf templates iterate over parts: a plain string would be read letter by letter
        return {"role": message["role"], "content": [{"type": "text", "text": content}]}, []
    parts, refs = [], []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind in ("image_url", "image"):
            refs.append(_image_ref(part))
            parts.append({"type": "image"})
        else:
            raise ValueError(f"unsupported content part {json.dumps(part)[:60]} (expected text, image_url or image)")
    return {"role": message["role"], "content": parts}, refs


class ImageChecker:
    """Resolves image references under a root and opens each file once (size kept, errors remembered)."""

    def __init__(self, root: Path, root_given: bool):
        self.root, self.root_given = root, root_given
        self.seen: dict[str, tuple[str, tuple[int, int]] | str] = {}
        self.failures = 0

    def check(self, ref: str) -> tuple[str, tuple[int, int]]:
        """(absolute path, (height, width)); ValueError says why the image cannot be used."""
        if ref not in self.seen:
            try:
                self.seen[ref] = self._open(ref)
            except ValueError as e:
                self.seen[ref] = str(e)
        result = self.seen[ref]
        if isinstance(result, str):
            self.failures += 1
            raise ValueError(result)
        return result

    def _open(self, ref: str) -> tuple[str, tuple[int, int]]:
        from PIL import Image

        from ..teachers.images import resolve_image, verify_image

        try:
            path = resolve_image(ref, self.root)  # no URLs, nothing outside the root
        except ValueError as e:
            hint = "" if self.root_given else " (set images_root to the folder the images are in)"
            raise ValueError(f"{e}{hint}") from None
        verify_image(path)
        try:
            with Image.open(path) as image:
                image.load()  # a truncated file fails here, not in the middle of training
                return path, (image.height, image.width)
        except (OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"{Path(path).name} cannot be decoded ({type(e).__name__})") from None


def _example(obj: dict, fmt: ChatFormat, images: ImageChecker) -> dict | str:
    """One chat record as {prompt, completion, images, image_sizes}, or the reason it cannot be one."""
    if (problem := validate(obj, "chat")) is not None:
        return problem
    messages = obj["messages"]
    if messages[-1]["role"] != "assistant":
        return "the last message must be the assistant's answer"
    try:
        converted = [to_hf_message(m) for m in messages]
    except ValueError as e:
        return str(e)
    if converted[-1][1]:
        return "the answer (last message) carries an image; images belong in the prompt's turns"
    if not any(p["type"] == "text" and p["text"].strip() for p in converted[-1][0]["content"]):
        return "the answer (last message) has no text"
    paths, sizes = [], []
    for ref in (ref for _, refs in converted for ref in refs):
        try:
            path, size = images.check(ref)
        except ValueError as e:
            return str(e)
        paths.append(path)
        sizes.append(size)
    prompt, completion = fmt.render([m for m, _ in converted])
    if prompt.count(fmt.image_token) != len(paths):
        return (f"the prompt holds {prompt.count(fmt.image_token)} {fmt.image_token} token(s) for {len(paths)} "
                f"image(s): text containing {fmt.image_token}, or images in a turn the chat template drops")
    return {"prompt": prompt, "completion": completion, "images": paths, "image_sizes": sizes}


def load_vision_examples(paths: list[str | Path], fmt: ChatFormat, images_root: Path | None = None,
                         *, bad_records: str = "error") -> SFTData:
    """Read chat files into prompt/completion/images rows (ids, file and line kept).

    Images resolve under `images_root`, default each file's folder. A record with a missing,
    unreadable or out-of-root image (or a malformed message) is listed in `SFTData.skipped`
    ("skip") or raises `RecordError` naming file and line ("error").
    """
    data = SFTData()
    image_skips: list[dict] = []
    for path in map(Path, paths):
        if (found := detect_format(path)) != "chat":
            raise RecordError(path, None, f"{found} records: the LLaVA student trains on chat records "
                                          "({messages}), e.g. the generate stage's moderation_qa.chat.jsonl")
        images = ImageChecker(Path(images_root) if images_root else path.parent, images_root is not None)
        for i, (line, obj) in enumerate(iter_json_objects(path)):
            rid = obj.get("id", f"{path.stem}:{i}") if isinstance(obj, dict) else f"{path.stem}:{i}"
            failures = images.failures
            try:
                example = _example(obj, fmt, images)
            except ConfigError as e:
                raise ConfigError(f"{path}:{line}: {e}") from None
            if isinstance(example, str):
                if bad_records == "error":
                    raise RecordError(path, line, f"bad record: {example}")
                data.skip(path, line, example, rid)
                if images.failures > failures:
                    image_skips.append(data.skipped[-1])
                continue
            data.examples.append({"id": rid, "file": str(path), "line": line, **example})
    where = ", ".join(map(str, paths))
    if image_skips and not any(ex["images"] for ex in data.examples):
        # Every image failed: most likely the images root, not the records; training text-only would hide it.
        first = image_skips[0]
        raise ConfigError(f"none of the images in {where} could be used ({len(image_skips)} records); the first, "
                          f"{first['file']}:{first['line']}: {first['reason']}")
    if not data.examples:
        raise RecordError(where, None, "no training examples in these files"
                          + (f" ({len(data.skipped)} bad records skipped)" if data.skipped else ""))
    return data


def example_lengths(examples: list[dict], processor) -> list[tuple[int, int]]:
    """(prompt tokens, total tokens) per example, image tokens included, as the collator will make them."""
    if not examples:
        return []
    tokenizer = processor.tokenizer
    prompts = tokenizer([ex["prompt"] for ex in examples], add_special_tokens=False)["input_ids"]
    completions = tokenizer([ex["completion"] for ex in examples], add_special_tokens=False)["input_ids"]
    sizes = [size for ex in examples for size in ex["image_sizes"]]
    # Tokens per image from its size, without processing the pixels (LLaVA-NeXT's count depends on the size).
    per_image = iter(processor._get_num_multimodal_tokens(image_sizes=sizes).num_image_tokens if sizes else [])
    lengths = []
    for ex, p, c in zip(examples, prompts, completions, strict=True):
        n_prompt = len(p) + sum(next(per_image) - 1 for _ in ex["image_sizes"])  # each <image> is one token of p
        lengths.append((n_prompt, n_prompt + len(c)))
    return lengths


def fit_to_max_length(examples: list[dict], processor, max_length: int | None, overlength: str,
                      skipped: list[dict]) -> tuple[list[dict], int, int]:
    """Drop what cannot train within max_length; returns (kept, over-long count, dropped for no answer left).

    An example whose prompt alone fills max_length has no answer token left to learn, and its
    truncation could cut the image's tokens (the model then refuses the batch): always dropped.
    Longer ones lose the end of their answer (truncate, TRL keeps the start) or are dropped.
    """
    if max_length is None:
        return examples, 0, 0
    kept, over, no_answer = [], 0, 0
    for ex, (n_prompt, n_total) in zip(examples, example_lengths(examples, processor), strict=True):
        if n_prompt >= max_length:
            no_answer += 1
            reason = f"prompt of {n_prompt} tokens (images included) leaves no answer token within max_length {max_length}"
        elif n_total > max_length:
            over += 1
            if overlength != "drop":
                kept.append(ex)
                continue
            reason = f"{n_total} tokens, longer than max_length {max_length} (overlength: drop)"
        else:
            kept.append(ex)
            continue
        skipped.append({"file": ex["file"], "line": ex["line"], "id": ex["id"], "reason": reason})
    return kept, over, no_answer


class VisionSFTTrainer(SFTTrainer):
    """SFTTrainer whose optimizer gives the multi-modal projector its own learning rate (LLaVA's
    `mm_projector_lr`) when `projector_learning_rate` is set; otherwise the stock optimizer."""

    def __init__(self, *args, projector_learning_rate: float | None = None, **kwargs):
        self.projector_learning_rate = projector_learning_rate
        super().__init__(*args, **kwargs)
        import torch

        # TRL casts a quantized model's trainable parameters to bf16; a fully trained projector's small Adam
        # steps would round away there, so it trains in float32 (as TRL keeps DoRA's magnitudes).
        for name, param in self.model.named_parameters():
            if param.requires_grad and in_projector(name) and param.dtype != torch.float32:
                param.data = param.data.float()

    def create_optimizer(self, model=None):
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if fresh and self.projector_learning_rate is not None:
            opt_model = self.model if model is None else model
            projector = {id(p) for n, p in opt_model.named_parameters() if p.requires_grad and in_projector(n)}
            # Each group (weight decay or not) splits in two before any step: the state is still empty,
            # and the scheduler reads each group's own initial rate.
            for group in list(optimizer.param_groups):
                moved = [p for p in group["params"] if id(p) in projector]
                if moved:
                    group["params"] = [p for p in group["params"] if id(p) not in projector]
                    optimizer.add_param_group({**{k: v for k, v in group.items() if k != "params"},
                                               "params": moved, "lr": self.projector_learning_rate,
                                               "initial_lr": self.projector_learning_rate})
            optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
        return optimizer


def build_vision_trainer(model, processor, train_examples: list[dict], eval_examples: list[dict] | None, args,
                         peft_config=None, callbacks=None, projector_learning_rate: float | None = None):
    """An SFTTrainer over prompt/completion text with an `images` column.

    The processor as `processing_class` makes TRL use its vision collator: images are loaded and
    processed per batch, and `completion_only_loss` masks the prompt (image tokens included).
    """
    from datasets import Dataset, Image, List

    def to_dataset(rows):
        dataset = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"], "images": r["images"]}
                                     for r in rows])
        return dataset.cast_column("images", List(Image(mode="RGB")))  # paths until a batch decodes them

    return VisionSFTTrainer(
        model=model, args=args, train_dataset=to_dataset(train_examples),
        eval_dataset=to_dataset(eval_examples) if eval_examples else None,
        processing_class=processor, peft_config=peft_config, callbacks=callbacks,
        projector_learning_rate=projector_learning_rate,
    )


def load_processor(path: str, *, trust_remote_code: bool = False):
    """The base's processor (tokenizer, image processor, chat template), with a pad token that is not EOS."""
    from transformers import AutoProcessor

    from ..models import ensure_pad_token, hub_token

    processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code, token=hub_token())
    if not hasattr(processor, "image_processor"):
        raise ConfigError(f"{path} has no image processor: a LLaVA student needs the base's processor files")
    ensure_pad_token(processor.tokenizer)
    return processor


def load_vision_model(path: str, mtype: str, *, dtype: str = "auto", quantization_config=None,
                      trust_remote_code: bool = False):
    """A LLaVA 1.5 / 1.6 model, vision tower and projector frozen; with `quantization_config`, the language
    model only is quantized."""
    import transformers

    from ..models import hub_token, torch_dtype

    if mtype not in MODEL_CLASSES:
        raise ConfigError(f"{path} is a {mtype!r} model; the vision student takes {sorted(MODEL_CLASSES)}")
    kwargs = dict(dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code, use_safetensors=True,
                  token=hub_token())
    if quantization_config is not None:
        # The frozen tower and projector are a small share of a 7B model in 16 bits; kept out of
        # 4-bit, the image features stay exactly those the language model learned from.
        quantization_config.llm_int8_skip_modules = NOT_QUANTIZED
        kwargs["quantization_config"] = quantization_config
    model = getattr(transformers, MODEL_CLASSES[mtype]).from_pretrained(path, **kwargs)
    for name, param in model.named_parameters():
        if in_frozen_part(name):
            param.requires_grad_(False)  # also with full fine-tuning (use_lora false)
    return model


def check_settings(dcfg, args) -> None:
    if dcfg.template not in ("auto", "chat"):
        raise ConfigError(f"template {dcfg.template!r}: a LLaVA student uses its processor's chat template "
                          "(template auto or chat)")
    if dcfg.data_format not in ("auto", "chat"):
        raise ConfigError(f"data_format {dcfg.data_format!r}: a LLaVA student trains on chat records")
    if args.completion_only_loss is False or args.assistant_only_loss:
        raise ConfigError("a LLaVA student learns the answer only: completion_only_loss must stay on and "
                          "assistant_only_loss off (image tokens cannot be predicted)")


class VisionRecipe(SFTRecipe):
    """LoRA (or QLoRA, or full) SFT of a LLaVA student: SFT with the processor's chat template and TRL's vision
    collator; saves adapter, processor and tunelab_model.json."""

    task = TASK

    def setup_data(self) -> None:
        dcfg, vcfg, args = self.ctx.data, self.ctx.vision, self.ctx.train
        check_settings(dcfg, args)
        self.model_type = model_type(self.base, trust_remote_code=args.trust_remote_code)
        self.processor = load_processor(self.base, trust_remote_code=args.trust_remote_code)
        self.ctx.record.add_template("chat_template", self.processor.chat_template)
        fmt = ChatFormat(self.processor)
        images_root = resolve_input(vcfg.images_root) if vcfg.images_root else None
        if images_root is not None and not images_root.is_dir():
            raise ConfigError(f"images_root {vcfg.images_root}: no such folder")
        for ref in dcfg.data + dcfg.eval_data:
            if is_dataset_ref(ref):
                raise ConfigError(f"data {ref}: a LLaVA student reads .json/.jsonl chat files whose image paths "
                                  "resolve under images_root, not dataset folders or hub datasets")
        self.train, self.evals = self.load_examples(
            lambda paths: load_vision_examples(paths, fmt, images_root, bad_records=dcfg.bad_records))
        self.bad = len(self.skipped)
        self.train, self.over, self.no_answer = fit_to_max_length(self.train, self.processor, args.max_length,
                                                                  dcfg.overlength, self.skipped)
        if not self.train:
            raise ConfigError(f"no training example fits max_length ({args.max_length}) with an answer token left "
                              f"(overlength: {dcfg.overlength}); raise --max_length")
        if self.evals:
            self.evals, _, _ = fit_to_max_length(self.evals, self.processor, args.max_length, dcfg.overlength,
                                                 self.skipped)

    def setup_trainer(self):
        mcfg, vcfg, args = self.ctx.model, self.ctx.vision, self.ctx.train
        model = self.load_student(lambda dtype, quant: load_vision_model(
            self.base, self.model_type, dtype=dtype, quantization_config=quant,
            trust_remote_code=args.trust_remote_code), self.processor.tokenizer)
        peft_config = None
        if mcfg.use_lora:
            peft_config = lora_from_settings(mcfg, self.model_type, "sft", "CAUSAL_LM")
            # Names like q_proj (or all-linear) also match the CLIP tower's layers: only the language model is adapted.
            peft_config.exclude_modules = EXCLUDED_FROM_LORA
            if vcfg.train_projector:  # a trained full copy of the projector, saved in the adapter (safetensors)
                peft_config.modules_to_save = [PROJECTOR]
        elif vcfg.train_projector:
            for name, param in model.named_parameters():
                if in_projector(name):
                    param.requires_grad_(True)
        return build_vision_trainer(model, self.processor, self.train, self.evals, args, peft_config,
                                    callbacks=early_stopping_callbacks(args) + self.ctx.callbacks,
                                    projector_learning_rate=vcfg.projector_learning_rate)

    def data_summary(self, trainer) -> dict:
        return {"examples": len(self.train), "eval_examples": len(self.evals) if self.evals else 0,
                "image_examples": sum(bool(ex["images"]) for ex in self.train), "skipped_records": self.bad,
                "overlength": self.over, "overlength_action": self.ctx.data.overlength,
                "dropped_no_response_left": self.no_answer}

    def save(self) -> None:  # the adapter and the processor are saved by train_and_save
        mcfg = self.ctx.model
        StudentInfo(task=TASK, base=mcfg.base, base_path=self.base, model_type=self.model_type, adapter=mcfg.use_lora,
                    quantization=mcfg.quantization, template="chat", template_version=None,
                    tiny_random=is_tiny_random(self.base), train_projector=self.ctx.vision.train_projector).write(
            self.ctx.out)

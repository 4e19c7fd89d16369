"""Model cards: the README.md of a student adapter, a full fine-tune, a classifier or a merged model.

The YAML front matter comes from huggingface_hub's `ModelCardData`, so the Hub reads the base model,
library, pipeline and tags; the body is Markdown built from the run's facts (`RunFacts`): the base
model as the user named it, the data files with their SHA-256 and record counts, the key settings,
the training result, the scores of any evaluation, and the limitations. Trainers write a README.md
of their own when they save (TRL's "fine-tuned version of [None]", peft's "More Information Needed");
the card replaces it.

    write_model_card(out, record, summary)      # finetune: student adapter, full model, classifier
    write_merged_model_card(out, student, ...)  # merge: the adapter's facts plus the merge and its check
    ensure_model_card(folder)                   # push: a folder without a tunelab card gets one
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..models import VISION_LANGUAGE_TYPES
from .facts import (CARD, CARD_PACKAGES, MODEL_CARD_MARKER, SAMPLE_LIMITS, RunFacts, beside_dataset_card,
                    count_records, describe_base, display_path, fmt, folder_kind, front_matter, hub_model_id,
                    is_hub_repo, is_random_base, parse_inputs, read_json, shipped_sample, shipped_samples, table, write_card)

_SETTINGS = (  # (config key, label) of the settings a reader needs; absent or unset ones are left out
    ("task", "task"), ("use_lora", "LoRA"), ("lora_r", "LoRA r"), ("lora_alpha", "LoRA alpha"),
    ("lora_dropout", "LoRA dropout"), ("use_dora", "DoRA"), ("use_rslora", "rsLoRA"),
    ("quantization", "quantization"), ("dtype", "weights dtype"), ("template", "prompt template"),
    ("data_format", "data format"), ("max_examples", "max examples"), ("eval_split", "eval split"),
    ("num_train_epochs", "epochs"), ("max_steps", "max steps"), ("learning_rate", "learning rate"),
    ("lr_scheduler_type", "LR schedule"), ("warmup_steps", "warmup steps"), ("warmup_ratio", "warmup ratio"),
    ("per_device_train_batch_size", "batch size per device"),
    ("gradient_accumulation_steps", "gradient accumulation"), ("max_length", "max length (tokens)"),
    ("overlength", "longer examples"), ("packing", "packing"), ("completion_only_loss", "loss on the response only"),
    ("bf16", "bf16"), ("optim", "optimizer"), ("weight_decay", "weight decay"),
    ("early_stopping_patience", "early stopping patience"), ("seed", "seed"),
    # classifiers
    ("taxonomy", "taxonomy"), ("problem_type", "problem type"), ("class_weighting", "class weighting"),
    ("balanced_sampling", "balanced sampling"), ("pooling", "pooling"), ("truncation", "truncation"),
    ("test_split", "test split"), ("tune_thresholds", "tune thresholds"),
)
_NOT_SET = (None, "", [], -1)
_ZERO_IS_OFF = {"eval_split", "test_split", "warmup_steps", "warmup_ratio", "weight_decay", "max_examples"}
_SFT_ONLY = {"template", "data_format", "completion_only_loss", "packing"}
_CLASSIFIER_ONLY = {"problem_type", "class_weighting", "pooling", "truncation", "test_split", "tune_thresholds",
                    "taxonomy", "balanced_sampling"}


def _module_names(modules) -> Any:
    """Distinct module names (`q_proj`, not one entry per layer); a regular expression as it is."""
    if isinstance(modules, str) or not modules:
        return modules
    return sorted({str(m).rsplit(".", 1)[-1] for m in modules})


def _settings_rows(kind: str, facts: RunFacts, info: dict, adapter: dict | None) -> list[tuple[str, Any]]:
    config = dict(facts.config)
    rows = []
    lora_keys = {"lora_r", "lora_alpha", "lora_dropout", "use_dora", "use_rslora"}
    for key, label in _SETTINGS:
        value = config.get(key)
        if kind == "classifier" and key == "problem_type":
            value = info.get("problem_type") or value  # what auto chose
        if value in _NOT_SET or (key in lora_keys and not config.get("use_lora", True)):
            continue
        if not value and (key in _ZERO_IS_OFF or key in ("use_dora", "use_rslora", "packing", "balanced_sampling")):
            continue
        if key in (_SFT_ONLY if kind == "classifier" else _CLASSIFIER_ONLY):
            continue
        if key == "quantization" and value == "4bit":
            value = "4bit (QLoRA: NF4 with double quantization)"
        if key == "template" and info.get("template_version"):
            value = f"{value} (version {info['template_version']})"
        rows.append((label, value))
        if key == "lora_alpha" and adapter:
            rows.append(("LoRA target modules", _module_names(adapter.get("target_modules"))))
            if adapter.get("modules_to_save"):
                rows.append(("trained in full", _module_names(adapter["modules_to_save"])))
    if kind == "classifier":  # the max_length it trained with (clipped to the model's positions), and its labels
        rows = [(label, info.get("max_length") or v) if label == "max length (tokens)" else (label, v)
                for label, v in rows]
        if info.get("labels"):
            rows.append(("labels", info["labels"]))
    return rows


def _data_section(facts: RunFacts) -> tuple[list[str], list[str], list[str]]:
    """(Markdown lines, hub dataset ids, limitation lines) of the training data."""
    samples = shipped_samples()
    header = not facts.config.get("column_names")
    rows, hub_datasets, limits, licenses = [], [], [], []
    for file in parse_inputs(facts.inputs):
        count = None
        if file.local is not None:
            count = count_records(file.local, header=header)
        elif file.note == "hub reference" and is_hub_repo(file.path.partition(":")[0]):
            hub_datasets.append(file.path.partition(":")[0])
        sample = shipped_sample(file, samples) if file.sha256 else None
        source = None
        if sample:
            source = f"shipped sample; {samples[sample]['license']}"
            if SAMPLE_LIMITS.get(sample):
                limits.append(f"`{sample}`: {SAMPLE_LIMITS[sample]}")
            licenses.append(f"`{sample}`: {samples[sample]['license']} (source: {samples[sample]['source']})")
        elif beside_dataset_card(file):
            source = "written by tunelab generate (see the dataset card beside it)"
            limits.append(f"`{Path(file.path).name}` was generated: its limits are in the dataset card of "
                          f"`{display_path(Path(file.path).parent)}`.")
        elif Path(file.path).suffix in (".yaml", ".yml"):
            source = "taxonomy (label names)"
        rows.append((file.role, f"`{display_path(file.path)}`",
                     f"`{file.sha256}`" if file.sha256 else (file.note or "—"),
                     "—" if count is None else count, source or "—"))
    lines = []
    if rows:
        lines.append(table(("role", "file", "sha256", "records in file", "source / license"), rows))
    else:
        lines.append("Not recorded.")
    s = facts.summary
    used = [("training examples", s.get("examples")), ("evaluation examples", s.get("eval_examples")),
            ("test examples (held out, not trained on)", s.get("test_examples")),
            ("records left out as unreadable", s.get("skipped_records")),
            ("longer than max_length", s.get("overlength")),
            ("of the training examples, dropped by the trainer: no response left after truncation",
             s.get("dropped_no_response_left"))]
    used = [(k, v) for k, v in used if v not in (None, 0) or k == "training examples"]
    if any(v is not None for _, v in used):
        lines.append("")
        lines.append("Used in this run: " + "; ".join(f"{k}: {fmt(v)}" for k, v in used if v is not None) + ".")
    limits, licenses = list(dict.fromkeys(limits)), list(dict.fromkeys(licenses))
    if licenses:
        lines.append("")
        lines.append("Licenses of the shipped data: " + "; ".join(licenses) + ".")
    return lines, hub_datasets, limits


def _results_section(kind: str, facts: RunFacts) -> list[str]:
    s = facts.summary
    rows = [("optimizer steps", s.get("steps")), ("mean training loss", s.get("train_loss")),
            ("first logged loss", s.get("first_loss")), ("final logged loss", s.get("last_loss")),
            ("best eval loss", s.get("best_eval_loss")), ("training seconds", s.get("train_seconds"))]
    rows = [(k, v) for k, v in rows if v is not None]
    lines = [table(("result", "value"), rows)] if rows else ["No training result was recorded."]
    evals = s.get("eval") or {}
    if evals:
        lines += ["", f"Scores on the evaluation set ({fmt(s.get('eval_examples'))} examples, after training):", ""]
        timing = ("runtime", "samples_per_second", "steps_per_second", "epoch")
        scores = [(k.removeprefix("eval_"), v) for k, v in evals.items() if not isinstance(v, (dict, list))]
        lines.append(table(("metric", "value"), [(k, v) for k, v in scores if k not in timing]))
    tuned = s.get("eval_tuned_thresholds")
    if tuned:
        lines += ["", f"With per-label thresholds tuned on that same set (optimistic): micro F1 "
                      f"{fmt(tuned.get('micro_f1'))}, macro F1 {fmt(tuned.get('macro_f1'))}."]
    if not evals and s.get("best_eval_loss") is None:
        lines += ["", "No evaluation ran during training. Score the model on held-out data with "
                      "`python evaluate/score.py` before relying on it."]
    return lines


def _usage(kind: str, base_hub: str | None, info: dict) -> list[str]:
    base = base_hub or "<the base model>"
    if kind == "classifier":
        code = ("from tunelab.training.classify.predict import load_classifier, predict_proba\n\n"
                "model, tokenizer, info = load_classifier(\"path/to/this/folder\")\n"
                "probs = predict_proba(model, tokenizer, [\"some text\"], info.max_length)")
    else:
        vision = kind == "vision" or info.get("model_type") in VISION_LANGUAGE_TYPES
        model_class, text_class = (("AutoModelForImageTextToText", "AutoProcessor") if vision
                                   else ("AutoModelForCausalLM", "AutoTokenizer"))
        name = "processor" if vision else "tokenizer"
        if kind == "merged" or not info.get("adapter", True):
            code = (f"from transformers import {model_class}, {text_class}\n\n"
                    f"model = {model_class}.from_pretrained(\"path/to/this/folder\")\n"
                    f"{name} = {text_class}.from_pretrained(\"path/to/this/folder\")")
        else:
            code = (f"from peft import PeftModel\nfrom transformers import {model_class}, {text_class}\n\n"
                    f"base = {model_class}.from_pretrained(\"{base}\")\n"
                    "model = PeftModel.from_pretrained(base, \"path/to/this/folder\")\n"
                    f"{name} = {text_class}.from_pretrained(\"path/to/this/folder\")")
    lines = ["```python", code, "```"]
    if kind in ("student", "merged"):
        template = info.get("template")
        if template and template != "chat":
            lines += ["", f"Prompts must be laid out with `{template}` (in this folder), exactly as in training; "
                          "`python inference.py --model <this folder>` does that."]
        else:
            lines += ["", "Prompts go through the tokenizer's chat template saved in this folder, as in training."]
    return lines


def _limitations(kind: str, facts: RunFacts, info: dict, data_limits: list[str]) -> list[str]:
    out = []
    if is_random_base(facts.base):
        out.append(f"The base, `{facts.base}`, is a tiny random model: this model knows nothing, and its outputs "
                   "are noise. It exists to exercise the pipeline end to end; do not use it for anything else.")
    s = facts.summary
    if s.get("examples") is not None:
        out.append(f"Trained on {s['examples']} examples for {fmt(s.get('steps', '?'))} optimizer steps: what it "
                   "learned is limited to what those examples show.")
    if kind == "classifier":
        out.append("Its labels are only as good as the training labels; a label seen rarely in training is "
                   "predicted poorly, and scores on one corpus do not carry over to other kinds of text.")
        if s.get("eval_tuned_thresholds"):
            out.append("The decision thresholds were tuned on the evaluation set, so scores on that set overstate "
                       "how well they generalise.")
    else:
        out.append("It inherits the base model's knowledge, biases and license terms, and the training data's "
                   "style and errors; it was not checked for safety or factual accuracy.")
    if (facts.config.get("quantization") or info.get("trained_quantization")) in ("4bit", "8bit"):
        out.append("The adapter was trained on a quantized base; merge it into the full-precision base "
                   "(`finetune/merge.py`), never into quantized weights.")
    out += data_limits
    if not s.get("eval") and s.get("best_eval_loss") is None:
        out.append("No held-out evaluation is recorded in this card.")
    return [f"- {x}" for x in out]


def model_card_text(folder: Path, facts: RunFacts, *, merge: dict | None = None) -> str:
    """The README.md of a model folder: front matter (huggingface_hub) and a Markdown body."""
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(folder)
    kind, info = folder_kind(folder)
    adapter = read_json(folder / "adapter_config.json") or None
    if merge is not None:
        adapter = merge.get("adapter_config") or adapter
    is_adapter = kind != "merged" and (folder / "adapter_config.json").exists()
    base_hub = hub_model_id(facts.base)
    task_name = {"classifier": "text classification", "vision": "vision-language SFT", "merged": "SFT",
                 "student": "SFT"}[kind]
    vision = kind == "vision" or info.get("model_type") in VISION_LANGUAGE_TYPES
    pipeline = "text-classification" if kind == "classifier" else "image-text-to-text" if vision else "text-generation"
    quant = facts.config.get("quantization") or info.get("trained_quantization") or "none"
    method = "full fine-tuning" if not (adapter or info.get("lora") or info.get("adapter")) else (
        "QLoRA" if quant == "4bit" else "LoRA")
    tags = ["tunelab", "generated_from_trainer"]
    tags += {"classifier": ["text-classification"], "vision": ["sft", "trl", "llava"], "merged": ["sft", "merged"],
             "student": ["sft", "trl"]}[kind]
    tags += [method.lower().replace(" ", "-")]
    if vision and "llava" not in tags:  # a merged LLaVA student
        tags.append("llava")
    if kind == "classifier" and info.get("problem_type"):
        tags.append(info["problem_type"].replace("_", "-"))
    if is_random_base(facts.base):
        tags.append("tiny-random")
    data_lines, hub_datasets, data_limits = _data_section(facts)
    card_data = ModelCardData(
        base_model=base_hub, library_name="peft" if is_adapter else "transformers", pipeline_tag=pipeline,
        tags=tags, datasets=hub_datasets or None, model_name=folder.name)

    what = {"classifier": "an encoder text classifier", "vision": "a vision-language (LLaVA) student",
            "student": "a causal language-model student",
            "merged": "a vision-language (LLaVA) student" if vision else "a causal language-model student"}[kind]
    base_name = f"`{facts.base}`" if facts.base else "its base"
    trained = ("Trained with `tunelab` (`finetune/train.py`: "
               + ("the Hugging Face `Trainer`" if kind == "classifier" else "TRL's `SFTTrainer`") + ")")
    if kind == "merged":
        intro = (f"{what.capitalize()}: a {method} adapter merged into its base, {base_name}, and saved as a "
                 f"standalone model in {fmt(info.get('dtype'))}. {trained}; merged by `finetune/merge.py`.")
    else:
        form = "a LoRA adapter" if is_adapter else "a full fine-tune"
        intro = f"{what.capitalize()}: {form} ({method}, {task_name}) on {base_name}. {trained}."
    body = [f"# {folder.name}", "", MODEL_CARD_MARKER, "", intro, ""]
    body += ["## Base model", "", describe_base(facts.base), ""]
    if merge is not None:
        check = merge.get("check") or {}
        body += ["## Merge", "",
                 f"The LoRA adapter in `{display_path(merge['adapter'])}` was folded into the base loaded "
                 f"unquantized in {fmt(info.get('dtype'))}"
                 + (f" (the adapter was trained on a {info['trained_quantization']} base)"
                    if info.get("trained_quantization") not in (None, "none") else "") + ".",
                 "", "Logits check before saving (adapter model vs merged model on the same tokens):", "",
                 table(("check", "value"), [(k, check[k]) for k in ("passed", "max_abs_diff", "atol",
                                                                         "argmax_agreement", "positions",
                                                                         "adapter_effect_max_abs", "check_data")
                                             if k in check]), ""]
    body += ["## Training data", "", *data_lines, ""]
    settings = _settings_rows(kind, facts, info, adapter)
    if settings:
        body += ["## Training settings", "", table(("setting", "value"), settings), ""]
    body += ["## Training result", "", *_results_section(kind, facts), ""]
    body += ["## How to use", "", *_usage(kind, base_hub, info), ""]
    body += ["## Limitations", "", *_limitations(kind, facts, info, data_limits), ""]
    provenance = []
    versions = [f"{k} {v}" for k, v in facts.packages.items() if v]
    if versions:
        provenance.append("Framework versions: " + ", ".join(versions) + ".")
    if facts.git.get("commit"):
        dirty = " (with local changes)" if facts.git.get("dirty") else ""
        provenance.append(f"tunelab commit `{facts.git['commit'][:12]}`{dirty}.")
    provenance.append("`config.yaml` holds every setting and `provenance.json` the command, versions, hardware and "
                      "input hashes of this run.")
    body += ["## Provenance", "", " ".join(provenance), ""]
    return str(ModelCard(front_matter(card_data) + "\n" + "\n".join(body)))


def write_model_card(out: str | Path, record, summary: dict) -> Path:
    """Write (or replace the trainer's) README.md in a finetune run folder, from its record and summary."""
    out = Path(out)
    path = write_card(out / CARD, model_card_text(out, RunFacts.from_record(record, summary)))
    record.add_output("model_card", path)
    return path


def merged_model_card_text(out: Path, student: Path, check: dict, *, base: str | None = None,
                           packages: dict | None = None, git: dict | None = None) -> str:
    """The merged model's card: the adapter run's facts (read from its folder) plus the merge and its check."""
    facts = RunFacts.from_folder(student) if student.is_dir() else RunFacts(base=None)
    facts.base = facts.base or base
    if packages is not None:
        facts.packages, facts.git = packages, git or {}
    merge = {"adapter": str(student), "check": check, "adapter_config": read_json(student / "adapter_config.json")}
    return model_card_text(out, facts, merge=merge)


def write_merged_model_card(out: str | Path, student: str | Path, check: dict, record=None) -> Path:
    """Write the merged folder's README.md (and list it in the merge run's record)."""
    from ..runs import git_state, package_versions

    out, student = Path(out), Path(student)
    text = merged_model_card_text(out, student, check, packages=package_versions(CARD_PACKAGES), git=git_state())
    path = write_card(out / CARD, text)
    if record is not None:
        record.add_output("model_card", path)
    return path


def has_tunelab_card(folder: str | Path) -> bool:
    try:
        return MODEL_CARD_MARKER in (Path(folder) / CARD).read_text(encoding="utf-8")
    except OSError:
        return False


def ensure_model_card(folder: str | Path) -> Path:
    """A tunelab card in `folder`: kept when there is one, else written from config.yaml and provenance.json
    (replacing a trainer's auto-written README); a merged folder's from its adapter folder's, when that is here."""
    folder = Path(folder)
    if not has_tunelab_card(folder):
        kind, info = folder_kind(folder)
        if kind == "merged":
            provenance = read_json(folder / "provenance.json")
            check = (provenance.get("notes") or {}).get("logits_check") or {}
            text = merged_model_card_text(folder, Path(info.get("adapter_source") or folder / "missing-adapter"),
                                          check, base=info.get("base"),
                                          packages={k: v for k, v in (provenance.get("packages") or {}).items()
                                                    if k in CARD_PACKAGES}, git=provenance.get("git"))
        else:
            text = model_card_text(folder, RunFacts.from_folder(folder))
        write_card(folder / CARD, text)
    return folder / CARD


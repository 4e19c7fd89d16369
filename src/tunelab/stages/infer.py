"""inference: a (tuned) model answers a held-aside set; one JSONL row per example, for people to read.

    python inference.py --config demo
    python inference.py --model runs/llama2-lora --data data/alpaca_heldout.json --temperature 0.7 --top_k 50
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..paths import STAGE_CONFIG_DIRS, resolve_input
from ..records import read_records, write_jsonl
from ..runs import RunRecord, ensure_output_dir
from .common import quiet_libraries, run_main

PREDICTIONS = "predictions.jsonl"


@dataclass
class InferenceConfig:
    model: str = field(metadata={"help": "A finetune output folder (base + adapter), a merged model, a hub id or tunelab:tiny-llama."})
    data: str = field(default="data/alpaca_heldout.json", metadata={"help": "Alpaca records; 'output' is kept as the reference."})
    output_dir: str = field(default="runs/inference", metadata={"help": f"Gets {PREDICTIONS}, config.yaml, provenance.json."})
    template: str | None = field(default=None, metadata={
        "help": "Prompt format: chat, a template in prompts/, or a path; default: the one saved with the model, "
                "else the model's chat template, else alpaca_student."})
    max_new_tokens: int = field(default=128)
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy (or beam search); > 0 samples."})
    top_k: int = field(default=0, metadata={"help": "Sample from the k likeliest tokens; 0 = off."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    num_beams: int = field(default=1, metadata={"help": "Beam search width (with temperature 0)."})
    repetition_penalty: float = field(default=1.0)
    seed: int = field(default=0)
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate() call."})
    limit: int | None = field(default=None, metadata={"help": "Answer only the first N examples."})
    dtype: str = field(default="auto")
    trust_remote_code: bool = field(default=False, metadata={"help": "Run model code from the hub. Off unless you trust it."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing, non-empty output_dir."})


def resolve_student(model: str) -> tuple[str, str | None, dict]:
    """(base path, adapter folder or None, the folder's tunelab_model.json) for a model reference.

    A folder without an adapter (a merged model, a full fine-tune) holds the weights itself, so it
    is the base; its info's `base` then names the folder (the original is kept as `merged_from`).
    """
    from ..models import resolve_model
    from ..training.sft import MODEL_INFO

    folder = Path(model)
    info_path = folder / MODEL_INFO
    if info_path.exists():
        info = json.loads(info_path.read_text(encoding="utf-8")) | {"folder": str(folder)}
        if info.get("adapter"):
            return resolve_model(info["base"]), str(folder), info
        if (folder / "config.json").exists():
            return str(folder), None, info | {"base": str(folder)}
        return resolve_model(info["base"]), None, info
    return resolve_model(model), None, {}


def infer(argv: Sequence[str] | None = None) -> dict:
    from ..config import parse_config
    from ..inference import generate_texts
    from ..models import is_tiny_random, load_causal_lm_with_adapter, load_tokenizer
    from ..prompts import student_prompt
    from ..teachers.base import SamplingParams

    (cfg,), config_file = parse_config(
        (InferenceConfig,), argv, configs_dir=STAGE_CONFIG_DIRS["inference"], prog="inference.py",
        description="Answer a held-aside set with a (tuned) model and chosen decoding settings.")
    quiet_libraries()
    data_path = resolve_input(cfg.data)
    records = read_records(data_path, "alpaca")[: cfg.limit]
    out = ensure_output_dir(cfg.output_dir, cfg.overwrite)
    record = RunRecord(out, "inference", [cfg], config_file)
    record.add_input("data", data_path)

    base, adapter, info = resolve_student(cfg.model)
    record.models.update({"base": info.get("base", cfg.model), "adapter": adapter})
    tokenizer = load_tokenizer(adapter or base, trust_remote_code=cfg.trust_remote_code)
    saved = info.get("template")
    if cfg.template:
        template_ref = cfg.template
    elif saved:
        template_ref = saved if saved == "chat" else str(Path(info["folder"]) / saved)
    else:
        template_ref = "auto"
    prompt = student_prompt(template_ref, tokenizer)
    record.add_template(prompt.name, tokenizer.chat_template if prompt.is_chat else prompt.template.source)
    model = load_causal_lm_with_adapter(base, adapter, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code)
    model.eval()
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                            top_k=cfg.top_k, num_beams=cfg.num_beams, repetition_penalty=cfg.repetition_penalty,
                            seed=cfg.seed)
    prompts = [prompt.render(tokenizer, r["instruction"], r["input"]) for r in records]
    generations = generate_texts(model, tokenizer, prompts, params, batch_size=cfg.batch_size, desc="inference",
                                 add_special_tokens=prompt.tokenize_with_special_tokens)
    decoding = asdict(params)
    rows = [{
        "id": r.get("id", str(i)), "instruction": r["instruction"], "input": r["input"], "reference": r["output"],
        "prediction": g.text, "finish_reason": g.finish_reason, "prompt_tokens": g.prompt_tokens,
        "completion_tokens": g.completion_tokens, "model": record.models["base"], "adapter": adapter,
        "decoding": decoding,
    } for i, (r, g) in enumerate(zip(records, generations, strict=True))]
    write_jsonl(out / PREDICTIONS, rows)
    record.add_output("predictions", out / PREDICTIONS)
    tiny = is_tiny_random(base)
    if tiny:
        record.notes["model"] = "tiny random model: its answers are noise"
    record.write()
    summary = {"examples": len(rows), "empty_predictions": sum(not r["prediction"].strip() for r in rows),
               "cut_by_length": sum(r["finish_reason"] == "length" for r in rows), "tiny_random_model": tiny}
    print(json.dumps(summary, indent=2))
    print(f"inference: answers in {out / PREDICTIONS}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(infer, argv)

"""Packing efficiency on Stanford Alpaca: real tokens / all tokens, TRL's bfd packing vs padded batches.

    .venv/bin/python bench/packing.py [--limit 5000] [--tokenizer minilm|tiny-llama] [--lengths 512 1024]

The 52,002 records are rendered with the student template (prompts/alpaca_student.jinja2) into the
prompt/completion examples finetune trains on, and tokenized as TRL tokenizes them (prompt +
response + EOS). Then, at each max_length, in one process:
  * baseline, no packing: examples truncated to max_length, batches of --batch-size in a seeded
    random order (the trainer's sampler), each padded to its longest example (TRL's collator);
    efficiency = real tokens / (batch size x longest) summed over the batches;
  * packing (`--packing true`): TRL's own `pack_dataset(..., "bfd")`, exactly as SFTTrainer calls it
    (best-fit decreasing within map batches of 1,000 examples; an example longer than max_length is
    truncated); efficiency = real tokens / (packed rows x max_length), the share of each packed row
    that holds real tokens. TRL then feeds the rows padding-free (a batch's rows end to end, no pad
    token at all), so this is also the share of a full batch_size x max_length step that is real.
Target: packing efficiency >= 0.95 at every length. Exits 1 if missed.

Tokenizer: `minilm` (default) is a real one available offline, all-MiniLM-L6-v2's BERT WordPiece
(uncased, 30,522 tokens; [CLS] ... [SEP] stand where Llama's <s> ... </s> go). It tends to give
somewhat fewer tokens than Llama-2's SentencePiece (which also spends tokens on newlines), so rows
hold a few more examples. `tiny-llama` is the tiny model's 1,024-token BPE (many more tokens per
word; exactly the tokenization `--config demo_student` trains with).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

from _sizes import script_main  # bench/ is on sys.path when a script in it runs
from _table import print_table

ROOT = Path(__file__).resolve().parents[1]
MIN_PACKED_EFFICIENCY = 0.95
# bench/suite.py's quick mode: the first 5,000 records (tokenizing all 52,002 takes most of a full run).
QUICK = {"limit": 5000}


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    from tunelab.models import resolve_model

    described = {"minilm": "all-MiniLM-L6-v2 WordPiece (BERT, uncased)",
                 "tiny-llama": "tunelab:tiny-llama byte-level BPE"}
    return AutoTokenizer.from_pretrained(resolve_model(f"tunelab:{name}")), described[name]


def alpaca_examples(path: Path, limit: int | None) -> tuple[list[dict], int]:
    """Prompt/completion rows rendered with the student template, and the records without a response.

    The same rows `load_sft_examples(..., student_prompt("alpaca_student"))` gives (checked on the first
    records), made with `json.load` and one compiled template: the library loader is far slower on 52k
    records (it recompiles the template per record and finds each element's line number from the file start).
    """
    import jinja2

    from tunelab.prompts import load_template, student_prompt
    from tunelab.training.data import load_sft_examples

    records = json.loads(path.read_text(encoding="utf-8"))[:limit]
    template = load_template("alpaca_student")
    render = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                autoescape=False).from_string(template.source).render
    examples = [{"prompt": render(instruction=r["instruction"], input=r.get("input", "")), "completion": r["output"]}
                for r in records if r["instruction"].strip() and r["output"].strip()]
    with tempfile.TemporaryDirectory() as tmp:  # the library's own rendering, on a sample
        sample = Path(tmp) / "sample.json"
        sample.write_text(json.dumps(records[:50]), encoding="utf-8")
        reference = load_sft_examples([sample], student_prompt("alpaca_student"), bad_records="skip").examples
    assert [(e["prompt"], e["completion"]) for e in reference] == \
        [(e["prompt"], e["completion"]) for e in examples[: len(reference)]], "rendering differs from the library's"
    return examples, len(records) - len(examples)


def padded_efficiency(lengths: list[int], max_length: int, batch_size: int, seed: int) -> tuple[float, int]:
    """Real / all tokens in batches of `batch_size` (seeded random order), each padded to its longest."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    real = total = 0
    for i in range(0, len(order), batch_size):
        batch = [min(lengths[j], max_length) for j in order[i: i + batch_size]]
        real += sum(batch)
        total += len(batch) * max(batch)
    return real / total, -(-len(order) // batch_size)


def packed_rows(lengths: list[int], max_length: int, map_batch_size: int | None = 1000) -> list[list[int]]:
    """Example lengths in each row of TRL's bfd packing (the same function SFTTrainer calls)."""
    from datasets import Dataset
    from trl.data_utils import pack_dataset

    ds = Dataset.from_dict({"input_ids": [[0] * n for n in lengths]})
    packed = pack_dataset(ds, max_length, "bfd", {"batch_size": map_batch_size})
    return packed["seq_lengths"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alpaca", type=Path, default=ROOT.parent / "shared/data/alpaca/alpaca_data.json")
    parser.add_argument("--tokenizer", default="minilm", choices=["minilm", "tiny-llama"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024], help="max_length values")
    parser.add_argument("--batch-size", type=int, default=8, help="per_device_train_batch_size of the padded baseline")
    parser.add_argument("--limit", type=int, help="use only the first N records (quick runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser


def measure(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """Run the benchmark, print its table, write --json; the results and the targets missed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    from datasets.utils.logging import disable_progress_bar
    from transformers.utils import logging as hf_logging

    from tunelab.training.data import example_lengths

    disable_progress_bar()
    hf_logging.set_verbosity_error()  # the WordPiece tokenizer's "longer than 512" notice
    start = time.perf_counter()
    tokenizer, tokenizer_name = load_tokenizer(args.tokenizer)
    examples, skipped = alpaca_examples(args.alpaca, args.limit)
    lengths = example_lengths(examples, tokenizer)  # prompt + response + EOS, as TRL tokenizes them
    prep_s = time.perf_counter() - start
    n_tokens = sum(lengths)
    print(f"{len(examples):,} Alpaca examples ({skipped} records without a response skipped), "
          f"{n_tokens:,} tokens, mean {n_tokens / len(examples):.1f}, max {max(lengths)}; tokenizer: {tokenizer_name}; "
          f"rendered and tokenized in {prep_s:.1f} s; python {platform.python_version()}, {os.cpu_count()} CPUs",
          flush=True)

    results = {"examples": len(examples), "skipped_records": skipped, "tokenizer": tokenizer_name,
               "tokens": n_tokens, "batch_size": args.batch_size, "lengths": {}}
    rows, missed = [], []
    for max_length in args.lengths:
        kept = sum(min(n, max_length) for n in lengths)
        over = sum(n > max_length for n in lengths)
        padded, padded_steps = padded_efficiency(lengths, max_length, args.batch_size, args.seed)
        t0 = time.perf_counter()
        packed = packed_rows(lengths, max_length)
        pack_s = time.perf_counter() - t0
        packed_real = sum(map(sum, packed))
        assert packed_real == kept, (packed_real, kept)  # bfd keeps every token but the truncated overflow
        efficiency = packed_real / (len(packed) * max_length)
        per_row = len(examples) / len(packed)
        whole = packed_rows(lengths, max_length, None)  # one bfd over the whole set, for comparison
        whole_eff = packed_real / (len(whole) * max_length)
        packed_steps = -(-len(packed) // args.batch_size)
        results["lengths"][str(max_length)] = {
            "truncated_examples": over, "truncated_tokens": n_tokens - kept,
            "padded_efficiency": padded, "padded_steps_per_epoch": padded_steps,
            "packed_efficiency": efficiency, "packed_rows": len(packed), "examples_per_row": per_row,
            "packed_steps_per_epoch": packed_steps, "packing_seconds": pack_s,
            "packed_efficiency_one_batch": whole_eff, "ratio_packed_to_padded": efficiency / padded,
        }
        rows += [
            (f"max_length {max_length}", "padded batches (no packing)", f"{padded:.1%}",
             f"{padded_steps:,} steps of {args.batch_size} examples; {over} examples truncated"),
            ("", "bfd packing (TRL, as SFTTrainer)", f"{efficiency:.1%}",
             f"{len(packed):,} rows, {per_row:.1f} examples/row, {packed_steps:,} steps of {args.batch_size} rows; "
             f"packed in {pack_s:.1f} s"),
            ("", "bfd, whole set in one batch", f"{whole_eff:.1%}", f"{len(whole):,} rows (for comparison)"),
            ("", "packed / padded", f"{efficiency / padded:.2f}x", "real-token share per step"),
        ]
        if efficiency < MIN_PACKED_EFFICIENCY:
            missed.append(f"packing efficiency {efficiency:.1%} at max_length {max_length} < "
                          f"{MIN_PACKED_EFFICIENCY:.0%}")

    print()
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results, missed


def main(argv: list[str] | None = None) -> int:
    return script_main(build_parser, measure, argv)


def describe(args, results: dict, missed: list[str]) -> dict:
    """bench/suite.py's row: the figure is the max_length where packing does worst (the target holds at every
    length)."""
    max_length, worst = min(results["lengths"].items(), key=lambda item: item[1]["packed_efficiency"])
    return {
        "measures": f"real-token share of a training step on {results['examples']:,} Alpaca examples, "
                    f"max_length {max_length} (lowest of {', '.join(results['lengths'])})",
        "figure": {"label": "TRL bfd packing", "value": 100 * worst["packed_efficiency"], "unit": "%"},
        "baseline": {"label": "padded batches", "value": 100 * worst["padded_efficiency"], "unit": "%"},
        "ratio": {"value": worst["ratio_packed_to_padded"], "label": "packed / padded"},
        "target": f"packed >= {MIN_PACKED_EFFICIENCY:.0%} at every max_length",
        "sizes": {"examples": results["examples"], "lengths": args.lengths, "batch_size": args.batch_size},
    }


if __name__ == "__main__":
    sys.exit(main())

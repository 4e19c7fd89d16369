"""A 34B teacher in 4-bit on a GPU: LLaVA-1.6-34B's language model, decoding batched vs one request at a time.

    .venv/bin/python bench/gpu_teacher.py [--prompts 64] [--batch-size 32] [--max-new-tokens 128] [--json FILE]
    .venv/bin/python bench/gpu_teacher.py --smoke      # a tiny config, any device: checks the plumbing only

Needs a CUDA GPU with about 75 GB free (a few minutes on an H200); without one it prints SKIPPED and exits 0.

Model: the language model of llava-hf/llava-v1.6-34b-hf (Yi-34B: hidden 7168, 60 layers, 56 attention heads
sharing 8 KV heads, MLP 20480, vocab 64064) with random weights. Its bf16 checkpoint would be 69 GB, more
than a 64 GB disk holds, so no checkpoint is written: the model is built on the GPU in bf16 and each linear
layer is quantized there into bitsandbytes' Linear4bit (NF4, double quantization, bf16 compute; lm_head
stays bf16), the layers `from_pretrained(..., quantization_config=quantization_config("4bit"))` makes while
loading a real checkpoint; every run first checks that on a tiny model, on the same device and kernels:
both ways must give the same logits. The vision tower and projector of the full LLaVA (0.3B weights,
bf16) are left out, and the prompts are text: an image post adds 576 to 2,880 image tokens to its
prompt, so its KV cache (0.23 MiB a token here) and prefill cost more than these prompts show.
Tokenizer: the tiny model's BPE (its ids fit the vocabulary). Prompts: the Alpaca seed tasks' instructions.
Decoding: `tunelab.teachers.decoding.generate_texts`, the loop behind the generate stage's transformers teacher and
inference.py (left padding, length-sorted batches, sampling seeded per request), temperature 0.7.
Figures: completion tokens per second with --batch-size requests at a time over --prompts prompts, against
one at a time over the first --baseline-prompts; GPU memory held by the 4-bit weights after loading, and
the peak while decoding the batched run (`torch.cuda.max_memory_allocated`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

from _sizes import gpu_script_main, gpu_suite_run, llama_config, save_results, smoke_config  # bench/ helpers (bench/ is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
# bench/suite.py's quick mode: fewer and shorter answers; building the model costs the same.
QUICK = {"prompts": 32, "baseline_prompts": 4, "max_new_tokens": 64}
NEEDS = "a 34B teacher in 4-bit"  # why it needs a GPU, for the SKIPPED line

# text_config of llava-hf/llava-v1.6-34b-hf (Nous-Hermes-2-Yi-34B).
YI_34B = llama_config(64064, 7168, 20480, layers=60, heads=56, kv_heads=8, rope_theta=5000000.0)
SMOKE = smoke_config(YI_34B, kv_heads=2)
GiB = 2**30


def build_model(sizes: dict, tokenizer, device: str):
    """A random bf16 Llama of `sizes` on `device`, with generation settings matching `tokenizer`."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig

    assert len(tokenizer) <= sizes["vocab_size"]
    config = LlamaConfig(**sizes, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    return model.eval()


def quantize_linears(model, skip: tuple[str, ...] = ("lm_head",)):
    """Replace every nn.Linear (but `skip`) by a 4-bit NF4 Linear4bit of the same weights, where they lie.

    As transformers' bitsandbytes loader does for `quantization_config("4bit")`: double quantization,
    bf16 compute, uint8 storage, the output layer left as it is. Each bf16 weight is freed once quantized.
    """
    import bitsandbytes as bnb
    import torch

    # names, not modules: a list of the modules would keep every bf16 weight alive until the end
    names = [name for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and name not in skip]
    for full_name in names:
        parent_name, _, name = full_name.rpartition(".")
        parent = model.get_submodule(parent_name)
        child = getattr(parent, name)
        layer = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                  compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4",
                                  quant_storage=torch.uint8, device="meta")
        weight = child.weight.data
        layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, compress_statistics=True, quant_type="nf4",
                                         quant_storage=torch.uint8).to(weight.device)  # .to() quantizes
        if child.bias is not None:
            layer.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
        layer.train(child.training)  # on CPUs bitsandbytes picks its kernel by mode
        setattr(parent, name, layer)
        del child, weight  # the bf16 weight goes with the old layer
    model.is_loaded_in_4bit = True
    return len(names)


def check_same_as_loading(tokenizer) -> float:
    """Tiny model: quantized in memory vs saved and loaded 4-bit by transformers; the largest logit gap."""
    import copy
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM

    from tunelab.models import quantization_config

    model = build_model(SMOKE, tokenizer, "cuda" if torch.cuda.is_available() else "cpu")
    device = next(model.parameters()).device
    with tempfile.TemporaryDirectory(prefix="tunelab-teacher-") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        loaded = AutoModelForCausalLM.from_pretrained(tmp, quantization_config=quantization_config("4bit"),
                                                      dtype=torch.bfloat16, device_map={"": device})
    ours = copy.deepcopy(model)
    quantize_linears(ours)
    kinds = lambda m: [type(x).__name__ for x in m.modules()]  # noqa: E731
    if kinds(ours) != kinds(loaded):
        raise AssertionError(f"layer types differ from transformers' 4-bit load: {kinds(ours)} vs {kinds(loaded)}")
    ids = torch.tensor([tokenizer("Give three tips for staying healthy.")["input_ids"]], device=device)
    with torch.no_grad():
        gap = (ours(ids).logits.float() - loaded(ids).logits.float()).abs().max().item()
    if gap > 1e-3:
        raise AssertionError(f"in-memory 4-bit differs from transformers' 4-bit load: logits {gap:.3g} apart")
    return gap


def seed_prompts(count: int) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "data/seed_tasks.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    prompts = []
    for row in rows:
        instance = (row.get("instances") or [{}])[0]
        text = f"### Instruction:\n{row['instruction']}\n\n"
        if instance.get("input"):
            text += f"### Input:\n{instance['input']}\n\n"
        prompts.append(text + "### Response:\n")
    return [prompts[i % len(prompts)] for i in range(count)]


def decode(model, tokenizer, prompts: list[str], batch_size: int, max_new_tokens: int) -> dict:
    """Answer `prompts` `batch_size` at a time through the teachers' decoding loop; tokens and seconds."""
    import torch

    from tunelab.teachers.decoding import generate_texts
    from tunelab.teachers.base import SamplingParams

    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.7, seed=0)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    outputs = generate_texts(model, tokenizer, prompts, params, batch_size=batch_size, progress=False,
                             seeds=list(range(len(prompts))))
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = sum(o.completion_tokens for o in outputs)
    return {"prompts": len(prompts), "batch_size": batch_size, "completion_tokens": tokens, "seconds": seconds,
            "tokens_per_s": tokens / seconds,
            "mean_prompt_tokens": sum(o.prompt_tokens for o in outputs) / len(outputs)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=64, help="requests answered batched")
    parser.add_argument("--batch-size", type=int, default=32, help="requests decoded together")
    parser.add_argument("--baseline-prompts", type=int, default=8, help="requests answered one at a time")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--smoke", action="store_true", help="a tiny config on any device, to check the script")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser


def invalid(args: argparse.Namespace) -> str | None:
    if min(args.prompts, args.batch_size, args.baseline_prompts, args.max_new_tokens) < 1:
        return "--prompts, --batch-size, --baseline-prompts and --max-new-tokens must be at least 1"
    if args.baseline_prompts > args.prompts:
        return "--baseline-prompts (answered one at a time) are the first of --prompts: at most as many"
    return None



def measure(args: argparse.Namespace) -> dict:
    """Run the benchmark (on a GPU, or --smoke), print its figures, write --json; the results."""
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tunelab.stages.common import quiet_libraries
    from tunelab.tiny import build_tokenizer

    quiet_libraries()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    name = torch.cuda.get_device_name() if cuda else "CPU"
    sizes = SMOKE if args.smoke else YI_34B
    print(f"{'tiny smoke config' if args.smoke else 'LLaVA-1.6-34B language model'} (hidden {sizes['hidden_size']}, "
          f"{sizes['num_hidden_layers']} layers), random weights, NF4; {args.max_new_tokens} new tokens per request; "
          f"{name}; torch {torch.__version__}", flush=True)
    tokenizer = build_tokenizer()
    results: dict = {"logit_gap_vs_transformers_load": check_same_as_loading(tokenizer)}
    print(f"tiny model: in-memory 4-bit = transformers' 4-bit load (largest logit gap "
          f"{results['logit_gap_vs_transformers_load']:.2g})", flush=True)

    start = time.perf_counter()
    model = build_model(sizes, tokenizer, device)
    built = time.perf_counter() - start
    bf16_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    layers = quantize_linears(model)
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.synchronize()
        results["weights_gpu_bytes"] = torch.cuda.memory_allocated()
    print(f"built in {built:.0f} s ({bf16_bytes / GiB:.1f} GiB in bf16), {layers} linear layers quantized "
          f"in {time.perf_counter() - start - built:.0f} s"
          + (f"; the 4-bit model holds {results['weights_gpu_bytes'] / GiB:.1f} GiB of GPU memory" if cuda else ""),
          flush=True)

    prompts = seed_prompts(args.prompts)
    decode(model, tokenizer, prompts[:2], 2, 4)  # warm-up: kernels, allocator
    one = decode(model, tokenizer, prompts[:args.baseline_prompts], 1, args.max_new_tokens)
    print(f"one at a time: {one['tokens_per_s']:,.1f} tokens/s ({one['completion_tokens']} tokens, "
          f"{one['seconds']:.1f} s)", flush=True)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    batched = decode(model, tokenizer, prompts, args.batch_size, args.max_new_tokens)
    if cuda:
        results["peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
    peak = f"{results['peak_gpu_bytes'] / GiB:.1f} GiB" if cuda else "n/a (no GPU)"
    print(f"{args.batch_size} at a time: {batched['tokens_per_s']:,.1f} tokens/s ({batched['completion_tokens']} "
          f"tokens, {batched['seconds']:.1f} s), peak {peak}", flush=True)

    results.update(one_at_a_time=one, batched=batched, ratio_tokens_per_s=batched["tokens_per_s"] / one["tokens_per_s"])
    print(f"\ntokens/s {args.batch_size} at a time / one at a time: {results['ratio_tokens_per_s']:.1f}x")
    return save_results(args, results, bf16_weight_bytes=bf16_bytes, quantized_linears=layers, device=name,
                        model="tiny" if args.smoke else "LLaVA-1.6-34B language model (Yi-34B)")


def main(argv: list[str] | None = None) -> int:
    return gpu_script_main("gpu_teacher.py", NEEDS, build_parser, invalid, measure, argv)


def suite_entry(args: argparse.Namespace, results: dict) -> dict:
    """What bench/suite.py records of a measured run."""
    weights = results.get("weights_gpu_bytes")
    return {
        "measures": f"4-bit teacher decoding of text prompts, completion tokens/s, random {results['model']}, "
                    f"{results['device']}"
                    + (f"; weights {weights / GiB:.1f} GiB, peak {results['peak_gpu_bytes'] / GiB:.1f} GiB"
                       if weights else ""),
        "figure": {"label": f"{args.batch_size} requests at a time", "value": results["batched"]["tokens_per_s"],
                   "unit": "tokens/s"},
        "baseline": {"label": "one at a time", "value": results["one_at_a_time"]["tokens_per_s"], "unit": "tokens/s"},
        "ratio": {"value": results["ratio_tokens_per_s"], "label": "batched / one at a time"},
        "target": None, "met": None, "missed": [],
        "sizes": {"prompts": args.prompts, "batch_size": args.batch_size, "baseline_prompts": args.baseline_prompts,
                  "max_new_tokens": args.max_new_tokens, "smoke": args.smoke},
        "details": results,
    }


def run(quick: bool = True, **sizes) -> dict:
    """bench/suite.py's entry: QUICK sizes (or the command line's defaults), `sizes` overriding."""
    return gpu_suite_run(build_parser, invalid, measure, suite_entry, NEEDS, {**(QUICK if quick else {}), **sizes})


if __name__ == "__main__":
    sys.exit(main())

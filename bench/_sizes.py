"""What every bench script shares: sizes set through its own argument parser (for bench/suite.py), how a
missed target is reported, and its command-line entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any


def print_missed(missed: list[str]) -> None:
    for line in missed:
        print(f"MISSED: {line}", file=sys.stderr)


def script_main(build_parser: Callable[[], argparse.ArgumentParser], measure: Callable, argv=None) -> int:
    """Run a bench script from its command line: exit status 1 when it missed its target."""
    _, missed = measure(build_parser().parse_args(argv))
    print_missed(missed)
    return 1 if missed else 0


def suite_run(build_parser: Callable[[], argparse.ArgumentParser], measure: Callable, describe: Callable,
              sizes: dict[str, Any]) -> dict:
    """A CPU benchmark measured for bench/suite.py: `sizes` through its parser, measured; `describe(args,
    results, missed)` gives the row (measures, figure, baseline, ratio, target, sizes, and met where a miss
    is not the whole story), to which met, missed and the details are added."""
    args = args_with(build_parser(), sizes)
    results, missed = measure(args)
    print_missed(missed)
    row = describe(args, results, missed)
    return {**row, "met": row.get("met", not missed), "missed": missed, "details": results}


def args_with(parser: argparse.ArgumentParser, sizes: dict[str, Any]) -> argparse.Namespace:
    """The parser's arguments with `sizes` ({dest: value}) given as if typed on the command line.

    Going through the parser gives values from the suite the same types (Path, int), choices and
    defaults as the script's own command line. A value of None sets the argument to None (e.g. no limit).
    """
    actions = {action.dest: action for action in parser._actions if action.option_strings and action.dest != "help"}
    argv: list[str] = []
    for dest, value in sizes.items():
        if dest not in actions:
            raise ValueError(f"unknown setting {dest!r}; this benchmark takes {', '.join(sorted(actions))}")
        action = actions[dest]
        flag = next(s for s in action.option_strings if s.startswith("--"))
        if value is None:
            continue
        if action.nargs == 0:  # a store_true flag
            if value:
                argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    parser.exit_on_error = False  # a bad value raises ArgumentError for the suite to record, not SystemExit
    args = parser.parse_args(argv)
    for dest, value in sizes.items():
        if value is None:
            setattr(args, dest, None)
    return args


def cuda_missing(args: argparse.Namespace) -> bool:
    """A GPU benchmark's arguments: True when there is no GPU to run on and no --smoke to run without one."""
    import torch

    return not torch.cuda.is_available() and not args.smoke


def gpu_script_main(script: str, needs: str, build_parser: Callable[[], argparse.ArgumentParser],
                    invalid: Callable, measure: Callable, argv=None) -> int:
    """A GPU benchmark's command line: measure, or say why it is skipped (exit 0) where there is no GPU."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if problem := invalid(args):
        parser.error(problem)
    if cuda_missing(args):
        print(f"SKIPPED: bench/{script} needs a CUDA GPU ({needs}); none is visible here. "
              "Run it on a GPU machine, or with --smoke to check the script on a tiny config.")
        return 0
    measure(args)
    return 0


def gpu_suite_run(build_parser: Callable[[], argparse.ArgumentParser], invalid: Callable, measure: Callable,
                  suite_entry: Callable, needs: str, sizes: dict[str, Any]) -> dict:
    """A GPU benchmark's `run()` for bench/suite.py: `sizes` through its parser, checked as its command line
    is; without a GPU (and without smoke) nothing runs and the result says why it is skipped."""
    args = args_with(build_parser(), sizes)
    if problem := invalid(args):
        raise ValueError(problem)
    if cuda_missing(args):
        return {"skipped": f"no CUDA GPU visible ({needs} needs one)"}
    return suite_entry(args, measure(args))


def llama_config(vocab_size: int, hidden_size: int, intermediate_size: int, layers: int, heads: int, kv_heads: int,
                 rope_theta: float) -> dict[str, Any]:
    """A Llama-architecture config.json's numbers (Llama-2, Vicuna, Yi)."""
    return dict(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads, hidden_act="silu",
                max_position_embeddings=4096, initializer_range=0.02, rms_norm_eps=1e-5, attention_bias=False,
                rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
                tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)


def smoke_config(full: dict[str, Any], kv_heads: int) -> dict[str, Any]:
    """`full` shrunk to two layers of width 128: the --smoke model, to check a script anywhere."""
    return dict(full, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=kv_heads)


def save_results(args: argparse.Namespace, results: dict, **recorded: Any) -> dict:
    """A GPU benchmark's results with what it ran with (`recorded`, and smoke), written to --json when asked."""
    import json

    results.update(smoke=args.smoke, **recorded)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


def peak_memory_ratio(results: dict, ours: str, baseline: str) -> float | None:
    """results[ours] / results[baseline] peak GPU memory, stored as ratio_peak_memory; None without a GPU."""
    if results[ours]["peak_gpu_bytes"] and results[baseline]["peak_gpu_bytes"]:
        results["ratio_peak_memory"] = results[ours]["peak_gpu_bytes"] / results[baseline]["peak_gpu_bytes"]
        return results["ratio_peak_memory"]
    return None

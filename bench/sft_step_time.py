"""Step time of tunelab's SFT path against plain TRL, same model, data and settings, in one process.

    .venv/bin/python bench/sft_step_time.py [--rounds 4] [--steps 20] [--packing] [--model smollm2] [--bf16 auto]

Model: a random Llama (hidden 256, 4 layers, 4 heads, the tiny BPE tokenizer) built into a temporary
folder, big enough that a step is not all overhead; or, with --model smollm2, SmolLM2-135M-Instruct
(tunelab:smollm2), a real model. Data: data/alpaca_sample.json (320 examples) rendered with the
alpaca_student template. Settings: LoRA r 8 / alpha 16 on every linear layer, batch 8, max_length 256,
lr 1e-3 constant, no activation checkpointing; both paths under the same precision, --bf16 auto being
the stage's own default (bf16 autocast on CPUs with native bf16, on CUDA GPUs that support it).
  * ours: `tunelab.stages.finetune.finetune([...])` in process, the real stage: TrainConfig,
    load_causal_lm, the LoRA config of training/lora.py, build_sft_trainer, train_and_save;
  * plain: `trl.SFTTrainer` with an `SFTConfig` and a `peft.LoraConfig` written out by hand (the model
    from `AutoModelForCausalLM.from_pretrained`), on the same prompt/completion rows. The fields in
    which the two resolved configs differ are printed.
The two run in lockstep: each in its own thread, taking turns one optimizer step at a time, so
only one computes at any moment and every step of ours is timed next to one of plain's; a burst of
load from elsewhere on the machine hits both alike. A step's time runs from getting the turn to the
next `on_step_end` (data loading, forward, backward, optimizer, logging). The first --warmup steps
of a run are left out; rounds swap which path starts. Target: median step time of ours / plain
<= 1.05 (the median of the step-by-step ratios is printed too). Exits 1 if missed.
On a shared machine, `--control` (plain against plain) shows how far the ratio moves by noise alone,
and `--threads 1` adds a CPU-time ratio of all the work, which other processes disturb less.
bench/packed_vs_padded.py uses the same lockstep to compare the stage packed against itself padded.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from _sizes import script_main  # bench/ is on sys.path when a script in it runs

ROOT = Path(__file__).resolve().parents[1]
MAX_RATIO = 1.05
# bench/suite.py's quick mode: 2 rounds (one with each path first) of 10 timed steps.
QUICK = {"rounds": 2, "steps": 10}
# Fields that name the run rather than change the training.
RUN_NAMING = {"output_dir", "logging_dir", "run_name", "hub_model_id"}


class Lockstep:
    """Two trainers in two threads, taking turns one optimizer step at a time.

    Only one path computes at any moment, and each of its steps is timed right next to one of the
    other's, so a burst of load from elsewhere on the machine hits both alike.
    """

    def __init__(self, paths: tuple[str, str]):
        self.cond = threading.Condition()
        self.turn = paths[0]
        self.paths = paths
        self.done: set[str] = set()
        self.steps: dict[str, list[float]] = {p: [] for p in paths}
        self.cpu: dict[str, list[float]] = {p: [] for p in paths}  # CPU seconds of the training thread
        self.tokens: dict[str, list[int]] = {p: [] for p in paths}  # the Trainer's tokens seen after each step


    def _other(self, path: str) -> str:
        return self.paths[1] if path == self.paths[0] else self.paths[0]

    def _wait_turn(self, path: str) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.turn == path or self._other(path) in self.done)

    def _pass(self, path: str, finished: bool = False) -> None:
        with self.cond:
            if finished:
                self.done.add(path)
            self.turn = self._other(path)
            self.cond.notify_all()

    def callback(self, path: str):
        from transformers import TrainerCallback

        lockstep = self

        class Turns(TrainerCallback):
            start = cpu_start = 0.0

            def on_train_begin(self, args, state, control, **kwargs):
                lockstep._wait_turn(path)
                self.start, self.cpu_start = time.perf_counter(), time.thread_time()

            def on_step_end(self, args, state, control, **kwargs):
                lockstep.steps[path].append(time.perf_counter() - self.start)
                lockstep.cpu[path].append(time.thread_time() - self.cpu_start)
                lockstep.tokens[path].append(state.num_input_tokens_seen)
                lockstep._pass(path)
                lockstep._wait_turn(path)
                self.start, self.cpu_start = time.perf_counter(), time.thread_time()

            def on_train_end(self, args, state, control, **kwargs):
                lockstep._pass(path, finished=True)

        return Turns()

    def release(self, path: str) -> None:
        """A path that failed before or during training must not keep the other waiting."""
        self._pass(path, finished=True)

    @staticmethod
    def start(workers: list[threading.Thread]) -> None:
        """Start the paths' threads together, their model loading one at a time: transformers' loading is
        not thread-safe (one thread's meta-device initialisation reaches the other's weights)."""
        serialize_model_loading()
        for worker in workers:
            worker.start()


_LOADING = threading.Lock()


def serialize_model_loading() -> None:
    """Make `from_pretrained` take a process-wide lock (once); each path's training still runs in turn."""
    from transformers import PreTrainedModel

    if getattr(PreTrainedModel.from_pretrained, "serialized", False):
        return
    load = PreTrainedModel.from_pretrained.__func__

    def locked(cls, *args, **kwargs):
        with _LOADING:
            return load(cls, *args, **kwargs)

    locked.serialized = True
    PreTrainedModel.from_pretrained = classmethod(locked)


def settings(args) -> dict:
    """The shared training settings, as CLI flags for the stage and keywords for SFTConfig."""
    return {"bf16": args.bf16 == "true" or (args.bf16 == "auto" and bf16_by_default()), "max_length": args.max_length, "per_device_train_batch_size": args.batch_size, "learning_rate": 1e-3,
            "lr_scheduler_type": "constant", "logging_steps": 5, "save_strategy": "no", "report_to": "none",
            "seed": 0, "max_steps": args.warmup + args.steps, "packing": args.packing, "disable_tqdm": True}


def bf16_by_default() -> bool:
    """What TrainConfig turns on when bf16 is not given (the stage's default)."""
    from tunelab.training.arguments import TrainConfig

    return TrainConfig(output_dir=tempfile.gettempdir()).bf16


def run_ours(model_dir: Path, out: Path, args, timer, packing: bool | None = None) -> None:
    from tunelab.stages import finetune

    flags = []
    shared = settings(args)
    if packing is not None:  # bench/packed_vs_padded.py: real tokens counted (packed rows hold no padding)
        shared |= {"packing": packing, "include_num_input_tokens_seen": "all" if packing else "non_padding"}
    for key, value in shared.items():
        flags += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    finetune.finetune(["--base", str(model_dir), "--data", "data/alpaca_sample.json", "--template", "alpaca_student",
                       "--use_lora", "true", "--lora_r", "8", "--lora_alpha", "16", "--lora_dropout", "0.0",
                       "--lora_target_modules", "all-linear", "--activation_checkpointing", "false",
                       "--output_dir", str(out), "--overwrite", "true", *flags], callbacks=[timer])


def plain_config(out: Path, args):
    from trl import SFTConfig

    import torch

    # What TrainConfig resolves to on CPU, said explicitly: TRL's own defaults turn activation checkpointing
    # on (about 20% slower), which would not be the same training.
    cuda = torch.cuda.is_available()
    return SFTConfig(output_dir=str(out), gradient_checkpointing=cuda, dataloader_pin_memory=cuda, use_cpu=not cuda, **settings(args))


def run_plain(model_dir: Path, rows: list[dict], out: Path, args, timer) -> None:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=plain_config(out, args), train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=lora, callbacks=[timer])
    trainer.train()


def config_differences(out: Path, args) -> list[str]:
    """Training fields in which TrainConfig (as the stage parses it) and the plain SFTConfig differ."""
    from tunelab.training.arguments import TrainConfig

    flags = {**settings(args), "activation_checkpointing": False}
    ours = TrainConfig(output_dir=str(out), **flags).to_dict()
    plain = plain_config(out, args).to_dict()
    return [f"{k}: ours {ours.get(k, '-')!r}, plain {plain.get(k, '-')!r}" for k in sorted(set(ours) | set(plain))
            if k not in RUN_NAMING and ours.get(k, "-") != plain.get(k, "-")]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="runs of each path (alternating)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="steps left out at the start of every run")
    parser.add_argument("--model", choices=("random", "smollm2"), default="random",
                        help="random: a random Llama of --hidden and --layers; smollm2: SmolLM2-135M-Instruct")
    parser.add_argument("--bf16", choices=("auto", "true", "false"), default="auto",
                        help="both paths' precision; auto: the stage's default on this machine")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--packing", action="store_true", help="both paths with packing (bfd, padding-free)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's); 1 makes the CPU-time figure "
                        "cover all the work, which load from other processes disturbs less than wall time")
    parser.add_argument("--control", action="store_true", help="an A/A run: plain TRL in place of ours too, to "
                        "see the noise floor of this machine (the ratio should be 1)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser


def measure(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """Run the benchmark, print its figures, write --json; the results and the targets missed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.chdir(ROOT)  # the stage resolves data/ from here
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    from tunelab.prompts import student_prompt
    from tunelab.stages.common import quiet_libraries
    from tunelab.tiny import build_tiny_llama
    from tunelab.training.data import load_sft_examples

    quiet_libraries()  # the stage does this anyway; do it before the first run so both paths log alike
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    with tempfile.TemporaryDirectory(prefix="tunelab-bench-") as tmp:
        tmp = Path(tmp)
        if args.model == "smollm2":
            from tunelab.models import resolve_model

            model_dir = Path(resolve_model("tunelab:smollm2"))
            described = "SmolLM2-135M-Instruct"
        else:
            model_dir = build_tiny_llama(tmp / "model", hidden_size=args.hidden, layers=args.layers)
            described = f"random Llama hidden {args.hidden}, {args.layers} layers"
        rows = [{"prompt": ex["prompt"], "completion": ex["completion"]} for ex in
                load_sft_examples([ROOT / "data/alpaca_sample.json"], student_prompt("alpaca_student")).examples]
        print(f"{described}; {len(rows)} examples, bf16 {settings(args)['bf16']}, "
              f"batch {args.batch_size}, max_length {args.max_length}, packing {args.packing}; {args.rounds} rounds "
              f"x {args.steps} steps in lockstep (+{args.warmup} warm-up); torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, python {platform.python_version()}, {os.cpu_count()} CPUs",
              flush=True)
        differences = config_differences(tmp / "cfg", args)
        times: dict[str, list[float]] = {"ours": [], "plain": []}
        cpu: dict[str, list[float]] = {"ours": [], "plain": []}
        pair_ratios: list[float] = []
        for r in range(args.rounds):
            order = ("ours", "plain") if r % 2 == 0 else ("plain", "ours")
            lockstep = Lockstep(order)
            errors: list[BaseException] = []

            def work(path: str, out: Path, lockstep=lockstep, errors=errors) -> None:
                torch.set_num_threads(threads)  # per thread, as OpenMP keeps it
                try:
                    if path == "ours" and not args.control:
                        run_ours(model_dir, out, args, lockstep.callback(path))
                    else:
                        run_plain(model_dir, rows, out, args, lockstep.callback(path))
                except BaseException as e:  # noqa: BLE001 (re-raised below, in the main thread)
                    errors.append(e)
                finally:
                    lockstep.release(path)

            workers = [threading.Thread(target=work, args=(path, tmp / f"{path}-{r}")) for path in order]
            with contextlib.redirect_stdout(io.StringIO()):  # the stage's summary, the trainers' log lines
                lockstep.start(workers)
                for worker in workers:
                    worker.join()
            if errors:
                raise errors[0]
            ours, plain = (lockstep.steps[p][args.warmup:] for p in ("ours", "plain"))
            cpu["ours"] += lockstep.cpu["ours"][args.warmup:]
            cpu["plain"] += lockstep.cpu["plain"][args.warmup:]
            assert len(ours) == len(plain) == args.steps, (len(ours), len(plain))
            times["ours"] += ours
            times["plain"] += plain
            pair_ratios += [o / p for o, p in zip(ours, plain)]
            print(f"round {r + 1}: ours {statistics.median(ours) * 1e3:7.1f} ms/step, "
                  f"plain {statistics.median(plain) * 1e3:7.1f} ms/step (medians of {len(ours)} steps each)",
                  flush=True)

    med = {path: statistics.median(values) for path, values in times.items()}
    ratio = med["ours"] / med["plain"]
    paired = statistics.median(pair_ratios)
    cpu_ratio = statistics.median(cpu["ours"]) / statistics.median(cpu["plain"])
    results = {"model": args.model, "hidden": args.hidden, "layers": args.layers, "bf16": settings(args)["bf16"],
               "batch_size": args.batch_size,
               "max_length": args.max_length, "packing": args.packing, "rounds": args.rounds, "steps": args.steps,
               "median_step_s_ours": med["ours"], "median_step_s_plain": med["plain"], "ratio": ratio,
               "median_paired_ratio": paired, "cpu_time_ratio": cpu_ratio, "threads": threads, "control": args.control,
               "config_differences": differences, "target_ratio": MAX_RATIO}
    print()
    if args.control:
        print("CONTROL RUN: 'ours' below is a second plain TRL trainer")
    print(f"ours   median {med['ours'] * 1e3:7.1f} ms/step  ({len(times['ours'])} steps)")
    print(f"plain  median {med['plain'] * 1e3:7.1f} ms/step  ({len(times['plain'])} steps)")
    print(f"ratio ours / plain  {ratio:.3f}  (median of step-by-step ratios {paired:.3f}; target <= {MAX_RATIO})")
    print(f"CPU time of the training thread, ours / plain  {cpu_ratio:.3f}  "
          + ("(all the work with --threads 1; less disturbed by other load)" if threads == 1 else
             "(that thread only; torch's other threads not counted: use --threads 1 for the whole of it)"))
    print("config fields that differ: " + ("; ".join(differences) if differences else "none"))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    missed = []
    if ratio > MAX_RATIO:
        missed.append(f"our step takes {ratio:.3f} x plain TRL's (> {MAX_RATIO})")
    return results, missed


def main(argv: list[str] | None = None) -> int:
    return script_main(build_parser, measure, argv)


def describe(args, results: dict, missed: list[str]) -> dict:
    return {
        "measures": "median SFT step time, LoRA on " + (
                        "SmolLM2-135M-Instruct" if args.model == "smollm2" else
                        f"a random Llama (hidden {args.hidden}, {args.layers} layers)")
                    + f", batch {args.batch_size}, max_length {args.max_length}, packing {args.packing}, "
                      f"bf16 {results['bf16']}"
                    + (" (CONTROL: plain against plain)" if args.control else ""),
        "figure": {"label": "tunelab finetune stage", "value": 1e3 * results["median_step_s_ours"], "unit": "ms/step"},
        "baseline": {"label": "plain TRL SFTTrainer", "value": 1e3 * results["median_step_s_plain"],
                     "unit": "ms/step"},
        "ratio": {"value": results["ratio"], "label": "ours / plain (lower is better)"},
        "target": f"<= {MAX_RATIO}", 
        "sizes": {"model": args.model, "rounds": args.rounds, "steps": args.steps, "warmup": args.warmup},
    }


if __name__ == "__main__":
    sys.exit(main())

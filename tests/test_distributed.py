"""Many processes: `accelerate launch` with the shipped configs in finetune/configs/accelerate/.

Two real CPU ranks talk over gloo. `accelerate launch --cpu` or a MULTI_CPU config would start ONE
process here (that path expects MPI); what starts two is a `distributed_type: MULTI_GPU` config
(ddp.yaml) with ACCELERATE_USE_CPU=1, so every run asserts the world size each rank saw, or it would prove nothing.

- ddp.yaml: one launch runs LoRA, then QLoRA (4-bit) SFT of the tiny Llama for 3 steps on both ranks
  (tests/helpers/dist_finetune.py; its probe writes what each rank saw).
- fsdp.yaml: accelerate never turns FSDP on for CPU (the run silently becomes DDP), so the helper adds
  that one branch (--fsdp-on-cpu); everything else (fully_shard, sharded saving) is the real path.
- zero2/zero3 (DeepSpeed is not installed) and fsdp_qlora (FSDP1 needs a GPU device to sync module
  states): parsed by accelerate's own launcher and turned into its plugin objects, in process.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tunelab.paths import PROJECT_ROOT
from fakes import TINY_STUDENT_CONFIG

ACCELERATE_CONFIGS = PROJECT_ROOT / "finetune" / "configs" / "accelerate"
HELPER = Path(__file__).parent / "helpers" / "dist_finetune.py"
EXPECTED = {  # config -> what it is to accelerate
    "ddp": "MULTI_GPU", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "fsdp": "FSDP", "fsdp_qlora": "FSDP",
}
STEPS = 3
# A few steps of the tiny student on the shipped Alpaca sample, small enough for seconds; in float32, so the
# logged loss is exactly the token-weighted mean of the ranks' own (bf16 would round each).
TRAIN_ARGS = ["--config", TINY_STUDENT_CONFIG, "--data", str(PROJECT_ROOT / "data" / "alpaca_sample.json"), "--max_examples", "32",
              "--max_length", "128", "--per_device_train_batch_size", "2", "--max_steps", str(STEPS),
              "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
              "--bf16", "false"]


def _launch_env() -> dict[str, str]:
    """The test's environment (TUNELAB_CACHE with the tiny model already built), minus anything distributed."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ACCELERATE_", "FSDP_")) and k not in (
               "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(ACCELERATE_USE_CPU="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    return env


def launch(config: str, runs: list[list[str]], probe_dir: Path, cwd: Path, *helper_flags: str) -> float:
    """`accelerate launch --config_file <config> --num_processes 2` of the helper; returns seconds taken."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE_CONFIGS / f"{config}.yaml"),
           "--num_processes", "2", "--main_process_port", "0", str(HELPER), *helper_flags, str(probe_dir)]
    for run_args in runs:
        cmd += ["--", *run_args]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=_launch_env(), capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - start
    assert proc.returncode == 0, f"accelerate launch failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return seconds


def probes(probe_dir: Path, run: int) -> list[dict]:
    found = sorted((probe_dir / f"run{run}").glob("rank*.json"))
    assert [p.name for p in found] == ["rank0.json", "rank1.json"], f"expected one probe per rank, got {found}"
    return [json.loads(p.read_text(encoding="utf-8")) for p in found]


@pytest.fixture(scope="module")
def ddp_runs(tiny_llama, tmp_path_factory):
    """One 2-rank launch with ddp.yaml: LoRA, then QLoRA. The tiny model is built (by the tiny_llama
    fixture) before launching, so the two ranks never race to build it."""
    root = tmp_path_factory.mktemp("ddp")
    outs = {"lora": root / "lora", "qlora": root / "qlora"}
    seconds = launch("ddp", [TRAIN_ARGS + ["--output_dir", str(outs["lora"])],
                             TRAIN_ARGS + ["--output_dir", str(outs["qlora"]), "--quantization", "4bit"]],
                     root / "probe", root)
    print(f"ddp.yaml launch (LoRA + QLoRA, 2 ranks x {STEPS} steps each): {seconds:.1f}s")
    return {"lora": (outs["lora"], probes(root / "probe", 0)), "qlora": (outs["qlora"], probes(root / "probe", 1))}


@pytest.fixture(scope="module")
def fsdp_run(tiny_llama, tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp")
    out = root / "lora"
    seconds = launch("fsdp", [TRAIN_ARGS + ["--output_dir", str(out)]], root / "probe", root, "--fsdp-on-cpu")
    print(f"fsdp.yaml launch (LoRA, 2 ranks x {STEPS} steps): {seconds:.1f}s")
    return out, probes(root / "probe", 0)


def assert_two_ranks_trained_together(ranks: list[dict], distributed_type: str) -> None:
    r0, r1 = ranks
    for rank, info in enumerate(ranks):
        assert info["world_size"] == 2 and info["args_world_size"] == 2 and info["env_world_size"] == "2"
        assert info["rank"] == rank == info["args_process_index"]
        assert info["backend"] == "gloo"
        assert info["distributed_type"] == distributed_type
        assert info["global_step"] == STEPS
        # this rank's own losses, before any averaging across ranks
        assert len(info["forward_losses"]) == STEPS and len(info["logged_losses"]) == STEPS
        assert info["all_finite"] and all(math.isfinite(x) for x in info["forward_losses"])
        assert info["trainable_checksum"] != info["trainable_checksum_start"], "the adapter did not change"
    assert r0["is_world_process_zero"] and not r1["is_world_process_zero"]
    assert r0["pid"] != r1["pid"]
    assert r0["first_batch"] != r1["first_batch"], "both ranks trained on the same examples"
    assert r0["forward_losses"] != r1["forward_losses"]
    # what the trainer logs is the same on both ranks: the mean over both ranks' response tokens
    assert r0["logged_losses"] == r1["logged_losses"]
    for step, logged in enumerate(r0["logged_losses"]):
        (a, na), (b, nb) = [(r["forward_losses"][step], r["label_tokens"][step]) for r in ranks]
        assert na > 0 and nb > 0
        assert logged == pytest.approx((a * na + b * nb) / (na + nb), rel=1e-5)
    # gradients were averaged: both ranks end with the same adapter (they saw different data)
    assert r0["trainable_checksum"] == pytest.approx(r1["trainable_checksum"], rel=1e-12)
    assert r0["trainable_checksum_start"] == pytest.approx(r1["trainable_checksum_start"], rel=1e-12)
    # only rank 0 writes the run record: config.yaml before training (for --resume), then both files once
    assert r1["record_writes"] == {"write": 0, "write_config": 0}
    assert r0["record_writes"]["write"] == 1


def assert_one_loadable_adapter(out: Path, base: str, ranks: list[dict]) -> None:
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    adapters = sorted(p.relative_to(out).as_posix() for p in out.rglob("adapter_model.safetensors"))
    assert adapters == ["adapter_model.safetensors"], adapters
    assert not list(out.glob("checkpoint-*"))
    saved = load_file(str(out / "adapter_model.safetensors"))
    checksum = sum(float(t.double().sum()) + float(t.double().abs().sum()) for t in saved.values())
    assert checksum == pytest.approx(ranks[0]["trainable_checksum"], rel=1e-9), "saved adapter is not the trained one"
    assert sum(t.numel() for t in saved.values()) == ranks[0]["trainable_numel"]

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(out))
    loaded = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert len(loaded) == len(saved)
    assert sum(float(p.double().sum()) + float(p.double().abs().sum()) for p in loaded.values()) == pytest.approx(checksum, rel=1e-9)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[1, 5, 9, 42]])).logits
    assert torch.isfinite(logits).all()


def assert_run_record_intact(out: Path, quantization: str) -> None:
    config = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    assert config["base"] == "tunelab:tiny-llama" and config["quantization"] == quantization
    assert config["output_dir"] == str(out) and config["max_steps"] == STEPS
    provenance = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["stage"] == "finetune"
    assert provenance["notes"]["summary"]["steps"] == STEPS
    assert math.isfinite(provenance["notes"]["summary"]["train_loss"])
    assert set(provenance["outputs"]) >= {"train_log", "curves"}
    assert "alpaca_sample.json sha256:" in provenance["inputs"]["data[0]"]
    log = json.loads((out / "train_log.json").read_text(encoding="utf-8"))["log_history"]
    assert len([e for e in log if "loss" in e]) == STEPS
    model_info = json.loads((out / "tunelab_model.json").read_text(encoding="utf-8"))
    assert model_info["adapter"] is True and model_info["quantization"] == quantization


@pytest.mark.parametrize("kind", ["lora", "qlora"])
def test_ddp_two_cpu_ranks_train_one_adapter(ddp_runs, tiny_llama, kind):
    out, ranks = ddp_runs[kind]
    assert_two_ranks_trained_together(ranks, "MULTI_CPU")
    for info in ranks:
        assert info["fsdp"] is False and info["sharded_params"] == 0
        assert info["linear4bit_layers"] == (14 if kind == "qlora" else 0)  # 7 linears x 2 layers, in 4 bits
    assert_one_loadable_adapter(out, tiny_llama, ranks)
    assert_run_record_intact(out, "4bit" if kind == "qlora" else "none")


def test_fsdp_two_cpu_ranks_shard_and_save_one_adapter(fsdp_run, tiny_llama):
    out, ranks = fsdp_run
    assert_two_ranks_trained_together(ranks, "FSDP")
    for info in ranks:
        assert info["fsdp"] is True
        assert info["sharded_params"] == info["params"] > 0, "FSDP2 did not shard the model"
    assert_one_loadable_adapter(out, tiny_llama, ranks)
    assert_run_record_intact(out, "none")


# --- every shipped accelerate config, read by accelerate itself (no processes started) ---


def _configs() -> list[Path]:
    return sorted(ACCELERATE_CONFIGS.glob("*.yaml"))


def test_the_five_configs_are_shipped():
    assert sorted(p.stem for p in _configs()) == sorted(EXPECTED)


@pytest.mark.parametrize("path", _configs(), ids=lambda p: p.stem)
def test_accelerate_config_parses_and_says_how_to_use_it(path):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(f"# accelerate launch --config_file finetune/configs/accelerate/{path.name} finetune/train.py")
    config = load_config_from_file(str(path))  # unknown top-level keys are errors here
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type.value == EXPECTED[path.stem]
    assert config.num_machines == 1 and config.num_processes == 2 and config.mixed_precision == "no"
    # accelerate ignores unknown keys inside deepspeed_config / fsdp_config: each must be a launcher option
    options = {a.dest for a in launch_command_parser()._actions}
    for key in {**config.deepspeed_config, **config.fsdp_config}:
        assert key in options, f"{path.name}: {key} is not an accelerate launch option"


def _launcher_env(path: Path) -> tuple[object, dict[str, str]]:
    """What `accelerate launch --config_file path` would export to each process."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(path), "--main_process_port", "0", "train.py"])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    return args, {k: v for k, v in env.items() if k.startswith(("ACCELERATE_", "FSDP_"))}


@pytest.fixture
def clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith(("ACCELERATE_", "FSDP_")):
            monkeypatch.delenv(key)
    return monkeypatch


def test_ddp_config_launches_two_processes(clean_env):
    args, env = _launcher_env(ACCELERATE_CONFIGS / "ddp.yaml")
    assert args.multi_gpu and not args.use_deepspeed and not args.use_fsdp and args.num_processes == 2
    assert env["ACCELERATE_MIXED_PRECISION"] == "no"  # bf16 comes from the training config


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs_leave_batch_and_accumulation_to_the_training_config(clean_env, stage):
    from accelerate.utils import DeepSpeedPlugin

    args, env = _launcher_env(ACCELERATE_CONFIGS / f"zero{stage}.yaml")
    assert args.use_deepspeed and args.num_processes == 2
    for key, value in env.items():
        clean_env.setenv(key, value)
    plugin = DeepSpeedPlugin()  # DeepSpeed itself is not needed to build the config
    ds = plugin.deepspeed_config
    assert plugin.zero_stage == stage == ds["zero_optimization"]["stage"]
    # 'auto': transformers fills them from per_device_train_batch_size, gradient_accumulation_steps, max_grad_norm
    assert ds["train_micro_batch_size_per_gpu"] == ds["gradient_accumulation_steps"] == ds["gradient_clipping"] == "auto"
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "none"
    if stage == 3:
        assert plugin.zero3_init_flag and plugin.zero3_save_16bit_model
        assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    else:
        assert not plugin.zero3_init_flag


def test_fsdp_config_is_fsdp2_saving_a_full_state_dict(clean_env):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import StateDictType

    args, env = _launcher_env(ACCELERATE_CONFIGS / "fsdp.yaml")
    assert args.use_fsdp and args.num_processes == 2
    for key, value in env.items():
        clean_env.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT  # one ordinary adapter file on save
    assert plugin.cpu_ram_efficient_loading is True and plugin.reshard_after_forward is True
    assert plugin.activation_checkpointing is False  # transformers refuses it together with --activation_checkpointing
    assert env["FSDP_OFFLOAD_PARAMS"] == "false"


def test_fsdp_qlora_config_is_the_fsdp1_qlora_recipe(clean_env):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import ShardingStrategy, StateDictType

    args, env = _launcher_env(ACCELERATE_CONFIGS / "fsdp_qlora.yaml")
    assert args.use_fsdp and args.num_processes == 2
    assert env["FSDP_VERSION"] == "1"
    assert env["FSDP_USE_ORIG_PARAMS"] == "false"
    assert env["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "true" and env["FSDP_SYNC_MODULE_STATES"] == "true"
    assert env["FSDP_ACTIVATION_CHECKPOINTING"] == "false"
    # Syncing module states (which cpu_ram_efficient_loading turns on) needs a GPU device to build the
    # plugin; the rest of the recipe is checked without them.
    env.update(FSDP_SYNC_MODULE_STATES="false", FSDP_CPU_RAM_EFFICIENT_LOADING="false")
    for key, value in env.items():
        clean_env.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 1 and plugin.use_orig_params is False
    assert plugin.sharding_strategy == ShardingStrategy.FULL_SHARD
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT

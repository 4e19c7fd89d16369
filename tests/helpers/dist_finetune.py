"""Test-only entry for `accelerate launch`: finetune runs plus a probe that writes what each rank saw.

    ACCELERATE_USE_CPU=1 accelerate launch --config_file finetune/configs/accelerate/ddp.yaml \
        tests/helpers/dist_finetune.py [--fsdp-on-cpu] PROBE_DIR -- <finetune/train.py arguments> [-- <2nd run> ...]

Each `--` group is one call of `tunelab.stages.finetune.finetune` (the function behind
finetune/train.py), run one after the other in the same launched processes, so the slow imports
and the process-group start are paid once. Every rank writes PROBE_DIR/run<I>/rank<R>.json with:
the world size, rank and backend as torch.distributed, the trainer and accelerate see them; the
loss of each of its own forward passes (the model's mean over this rank's response tokens, before
any averaging across ranks) and how many tokens it averaged; the losses the trainer logged (TRL
averages over all ranks' tokens); a fingerprint of its first batch (the ranks must get different examples);
checksums of the trainable weights before and after training (they must change, and end equal
on every rank: the gradients were averaged); how many 4-bit layers it trained on and how many
parameters FSDP sharded (DTensors); and how often
it wrote the run record (config.yaml / provenance.json), which only rank 0 may do.

--fsdp-on-cpu: accelerate 1.15 never enables FSDP on CPU (with ACCELERATE_USE_CPU the state is
MULTI_CPU and the FSDP plugin of an FSDP config is silently dropped: the run is plain DDP). This
flag adds the one missing branch (MULTI_CPU + ACCELERATE_USE_FSDP -> FSDP with the config's plugin)
so the real FSDP path (fully_shard, sharded saving) runs on gloo. Test-only; GPUs need no patch.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from transformers import TrainerCallback

_RECORD_WRITES = {"write": 0, "write_config": 0}


def _count_record_writes() -> None:
    """Count RunRecord.write / write_config calls in this process (patched on the class, so every caller counts)."""
    from tunelab.runs import RunRecord

    for name in _RECORD_WRITES:
        original = getattr(RunRecord, name)

        def counted(self, *a, _name=name, _original=original, **kw):
            _RECORD_WRITES[_name] += 1
            return _original(self, *a, **kw)

        setattr(RunRecord, name, counted)


def _checksum(model) -> tuple[float, int]:
    """Sum and L1 norm of the trainable weights, in name order (collective under FSDP2: every rank calls it)."""
    total, count = 0.0, 0
    for _, p in sorted(model.named_parameters(), key=lambda item: item[0]):
        if p.requires_grad:
            full = p.detach()
            full = full.full_tensor() if hasattr(full, "full_tensor") else full
            total += float(full.double().sum()) + float(full.double().abs().sum())
            count += full.numel()
    return total, count


class RankProbe(TrainerCallback):
    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.info: dict = {"forward_losses": [], "label_tokens": [], "logged_losses": [], "first_batch": None}
        self._hook = None
        self._writes_before = dict(_RECORD_WRITES)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        import torch.distributed as dist
        from accelerate.state import AcceleratorState

        try:
            import bitsandbytes as bnb

            linear4bit = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
        except ImportError:
            linear4bit = 0
        acc = AcceleratorState()
        params = list(model.parameters())
        sharded = [p for p in params if hasattr(p, "full_tensor")]  # DTensor: sharded by FSDP2
        self.info.update(
            dist_initialized=dist.is_initialized(),
            world_size=dist.get_world_size() if dist.is_initialized() else 1,
            rank=dist.get_rank() if dist.is_initialized() else 0,
            backend=dist.get_backend() if dist.is_initialized() else None,
            args_world_size=args.world_size, args_process_index=args.process_index,
            is_world_process_zero=state.is_world_process_zero,
            distributed_type=str(acc.distributed_type).split(".")[-1],
            fsdp=getattr(acc, "fsdp_plugin", None) is not None,
            env_rank=os.environ.get("RANK"), env_world_size=os.environ.get("WORLD_SIZE"),
            linear4bit_layers=linear4bit, params=len(params), sharded_params=len(sharded),
            pid=os.getpid(),
        )
        self.info["trainable_checksum_start"], _ = _checksum(model)

        def record(module, inputs, kw, output):
            loss = getattr(output, "loss", None)
            labels = kw.get("labels")
            if loss is not None and module.training:
                self.info["forward_losses"].append(float(loss.detach().float()))
                # tokens this rank's loss averages over (labels are shifted by one inside the model)
                self.info["label_tokens"].append(int(labels[:, 1:].ne(-100).sum()) if labels is not None else None)
            ids = kw.get("input_ids")
            if self.info["first_batch"] is None and ids is not None:
                self.info["first_batch"] = [int(ids.shape[0]), int(ids.sum())]

        self._hook = model.register_forward_hook(record, with_kwargs=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.info["logged_losses"].append(float(logs["loss"]))

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self._hook is not None:
            self._hook.remove()
        self.info["trainable_checksum"], self.info["trainable_numel"] = _checksum(model)
        self.info["global_step"] = state.global_step
        self.info["all_finite"] = all(math.isfinite(x) for x in self.info["forward_losses"] + self.info["logged_losses"])

    def save(self) -> None:
        """After the run: also the run-record writes this rank made during it."""
        self.info["record_writes"] = {k: _RECORD_WRITES[k] - self._writes_before[k] for k in _RECORD_WRITES}
        rank = self.info.get("rank", int(os.environ.get("RANK", 0)))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{rank}.json").write_text(json.dumps(self.info, indent=2), encoding="utf-8")


def enable_fsdp_on_cpu() -> None:
    """Let an FSDP accelerate config really shard on CPU/gloo (see the module docstring)."""
    import accelerate.state as state
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    original = state.AcceleratorState.__init__

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if (os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
                and self.distributed_type == DistributedType.MULTI_CPU):
            self.distributed_type = DistributedType.FSDP
            plugin = fsdp_plugin if fsdp_plugin is not None else FullyShardedDataParallelPlugin()
            if self._mixed_precision != "no":
                plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = plugin

    state.AcceleratorState.__init__ = init


def split_runs(argv: list[str]) -> list[list[str]]:
    runs, current = [], None
    for a in argv:
        if a == "--":
            current = []
            runs.append(current)
        elif current is None:
            raise SystemExit("usage: dist_finetune.py PROBE_DIR -- ARGS [-- ARGS ...]")
        else:
            current.append(a)
    return [r for r in runs if r]


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--fsdp-on-cpu":
        enable_fsdp_on_cpu()
        argv = argv[1:]
    probe_dir = Path(argv[0])
    _count_record_writes()
    from tunelab.stages.finetune import finetune

    for i, run_argv in enumerate(split_runs(argv[1:])):
        probe = RankProbe(probe_dir / f"run{i}")
        finetune(run_argv, callbacks=[probe])
        probe.save()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

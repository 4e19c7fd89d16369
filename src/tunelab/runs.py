"""Run folders: refuse to clobber, one writer at a time, and record how every output was made.

Each run writes next to its outputs:
- `config.yaml`: the resolved config (YAML values after command-line overrides);
- `provenance.json`: package versions, git commit, hardware, the command line, and SHA-256 of
  every input file and prompt template it read.
Secrets never reach either file: values of environment variables whose names look like
credentials are masked wherever they appear, and credential-named config fields are blanked.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from .config import to_plain
from .errors import OutputExistsError
from .paths import CHECKOUT
from .records import atomic_write_text, honour_umask_tree

TRACKED_PACKAGES = (
    "tunelab", "torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "datasets",
    "tokenizers", "sacrebleu", "rouge-score", "bert-score", "scikit-learn", "numpy",
)
_SECRET_NAME = re.compile(r"(TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
_SECRET_FIELD = re.compile(r"(^|_)(token|api_key|secret|password)$", re.IGNORECASE)
_TOKENIZER_FIELDS = {"pad_token", "eos_token", "bos_token", "unk_token", "sep_token", "cls_token", "mask_token"}
MASK = "***"


_CLAIMS: dict[Path, Any] = {}  # output folder -> the open lock file this process holds for it
_CREATED: list[Path] = []  # folders that did not exist when claimed: a run that fails leaves none of them empty


def check_not_a_file(path: str | os.PathLike) -> None:
    """An output folder cannot be, or be inside, an existing file: say so in one line."""
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise OutputExistsError(f"output folder {path}: {folder} is a file, not a folder; "
                                        "give another output_dir")
            return


def _first_missing(folder: Path) -> Path:
    """The outermost ancestor of `folder` (or itself) that does not exist yet."""
    missing = folder
    while not missing.parent.exists():
        missing = missing.parent
    return missing


def claim_output_dir(path: str | os.PathLike) -> None:
    """Take `path` for this process until `release_output_dirs()` (or exit): a second run writing the same
    folder at the same time (two terminals, a restarted queue) is refused instead of mixing its files in.

    The lock is an OS file lock on `.<name>.lock` beside the folder, so it dies with its process; the
    folder itself need not exist yet. Under torchrun only rank 0 claims. No-op where the OS has no flock.
    """
    check_not_a_file(path)
    try:
        import fcntl
    except ImportError:  # Windows
        return
    path = Path(path).resolve()
    if path in _CLAIMS or int(os.environ.get("RANK", "0")) != 0:
        return
    if not path.parent.exists():
        _CREATED.append(_first_missing(path.parent))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _CREATED.append(path)
    handle = open(path.parent / f".{path.name}.lock", "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise OutputExistsError(f"{path} is being written by another run ({holder}); wait for it to finish, "
                                "or give another output_dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {platform.node()}")
    handle.flush()
    _CLAIMS[path] = handle


def release_output_dirs(*, failed: bool = False) -> None:
    """Let go of every folder this process claimed (each stage's entry point does, when the stage ends).
    After a failure, the folders this run created and left empty are removed: an early error leaves nothing."""
    created, _CREATED[:] = list(_CREATED), []
    if _CLAIMS:  # none where the OS has no flock
        import fcntl

        while _CLAIMS:
            path, handle = _CLAIMS.popitem()
            Path(handle.name).unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
    if failed:
        for folder in reversed(created):
            try:
                if folder.is_dir() and not any(p for p in folder.rglob("*") if not p.is_dir()):
                    shutil.rmtree(folder)
            except OSError:
                pass  # not ours to force


def check_output_dir(path: str | os.PathLike, overwrite: bool, *, what: str = "output folder",
                     unfinished_hint: str | None = None) -> Path:
    """Refuse, before any slow work, when `path` already holds files and `overwrite` is off, or when
    another run is writing it; otherwise claim it for this run. `unfinished_hint` says how to continue a run
    that was interrupted there (its config.yaml without provenance.json)."""
    path = Path(path)
    claim_output_dir(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        if unfinished_hint and (path / "config.yaml").exists() and not (path / "provenance.json").exists():
            raise OutputExistsError(f"{what} {path} holds a run that did not finish: {unfinished_hint}, or pass "
                                    "--overwrite to start again")
        raise OutputExistsError(f"{what} {path} already exists and is not empty; pass --overwrite to replace its outputs")
    return path


def ensure_output_dir(path: str | os.PathLike, overwrite: bool, *, what: str = "output folder") -> Path:
    """Create `path`, or refuse when it already holds files and `overwrite` is off."""
    path = check_output_dir(path, overwrite, what=what)
    path.mkdir(parents=True, exist_ok=True)
    return path


def drop_finished_record(path: Path) -> None:
    """provenance.json, written last, marks a finished run. A run replacing another removes the old one's
    when it writes its own config.yaml (its inputs checked, its work about to start), so a replacement
    that stops half way never reads as the old finished run beside the new settings (the results runner
    would skip it, and RESULTS.md would pair the old scores with the new settings)."""
    (Path(path) / "provenance.json").unlink(missing_ok=True)


def clear_earlier_run(path: str | os.PathLike, patterns: Iterable[str] = ("*",)) -> None:
    """Remove an earlier run's outputs (those matching `patterns`) for the run replacing it: provenance.json
    first, so whatever a kill leaves never reads as the finished earlier run."""
    path = Path(path)
    drop_finished_record(path)
    for pattern in patterns:
        for found in path.glob(pattern):
            shutil.rmtree(found) if found.is_dir() and not found.is_symlink() else found.unlink()


def settings_differences(path: str | os.PathLike, record: "RunRecord", *, ignore: Iterable[str] = ()) -> list[str]:
    """How the settings saved in `path`/config.yaml differ from `record`'s, as 'key: then, now' lines."""
    saved = yaml.safe_load((Path(path) / "config.yaml").read_text(encoding="utf-8")) or {}
    current = record.resolved_config()
    skip = set(ignore)
    differ = sorted(k for k in set(saved) | set(current) if k not in skip and saved.get(k) != current.get(k))
    return [f"{k}: {saved.get(k)!r} then, {current.get(k)!r} now" for k in differ]


def check_resumable_run(path: str | os.PathLike, record: "RunRecord", *, ignore: Iterable[str] = ()) -> Path:
    """For `--resume`: the folder of an interrupted run whose resolved config matches this one.

    A missing or empty folder is a fresh start. A folder without config.yaml, or one whose
    settings differ (other than `ignore`), is refused: resuming would mix two different runs.
    """
    from .errors import ConfigError

    path = Path(path)
    claim_output_dir(path)
    if path.exists() and any(path.iterdir()):
        if not (path / "config.yaml").exists():
            raise ConfigError(f"{path} holds files but no config.yaml: not a run folder to resume")
        if differ := settings_differences(path, record, ignore=ignore):
            raise ConfigError(f"cannot resume {path}: its settings differ from this run's ({'; '.join(differ[:5])}); "
                              "rerun with the same settings, or start a new output_dir")
    return path


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _secret_values() -> list[str]:
    return [v for k, v in os.environ.items() if _SECRET_NAME.search(k) and v and len(v) >= 6]


def _credential_name(name: str) -> bool:
    """A setting that holds a credential itself (`hub_token`, `api_key`), not the name of a variable holding
    one (`api_key_env`) and not a tokenizer's special token (`eos_token`)."""
    return bool(_SECRET_FIELD.search(name)) and not name.endswith("_env") and name not in _TOKENIZER_FIELDS


def redact_command(argv: list[str]) -> list[str]:
    """A command line with the value of every credential flag masked (`--hub_token X`, `--hub_token=X`)."""
    masked, mask_next = [], False
    for arg in argv:
        if mask_next:
            masked.append(MASK)
            mask_next = False
            continue
        flag, eq, _ = arg.partition("=")
        is_credential = arg.startswith("-") and _credential_name(flag.lstrip("-").replace("-", "_"))
        if is_credential and eq:
            masked.append(f"{flag}={MASK}")
            continue
        mask_next = is_credential
        masked.append(arg)
    return masked


_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_SECRET_QUERY = re.compile(r"(key|token|secret|password|passwd|sig|signature|auth|credential)", re.IGNORECASE)


def _redact_url(match: re.Match) -> str:
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    url = match.group(0)
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password:
            netloc = f"{parts.username}:{MASK}@{netloc.rsplit('@', 1)[1]}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, MASK if _SECRET_QUERY.search(k) and v else v) for k, v in pairs], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # not a URL after all
        return url


def redact(obj: Any, secrets: list[str] | None = None) -> Any:
    """Mask secret values in strings (known secrets, credentials in URLs) and blank credential-named fields,
    recursively."""
    secrets = _secret_values() if secrets is None else secrets
    if isinstance(obj, dict):
        return {k: (MASK if _credential_name(str(k)) and obj[k] not in (None, "", [])
                    else redact(v, secrets)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v, secrets) for v in obj]
    if isinstance(obj, str):
        for s in secrets:
            obj = obj.replace(s, MASK)
        return _URL.sub(_redact_url, obj) if "://" in obj else obj
    return obj


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str | None]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(root: Path | None = CHECKOUT) -> dict[str, Any]:
    """The checkout's commit and whether it has changes; both None for a wheel's install (an enclosing
    repository, a user's project holding the venv, says nothing about tunelab's code)."""
    if root is None:
        return {"commit": None, "dirty": None}

    def git(*args: str) -> str | None:
        try:
            # No optional locks: reading never takes the index lock a concurrent git command may need.
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                                 env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(dirty) if dirty is not None else None}


def cpu_model() -> str | None:
    """The CPU's marketing name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                            "python": sys.version.split()[0]}
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        # Other work on the machine stretches every timing in the record: say how busy it was.
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.is_available()
        if info["cuda"]:
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return info


class RunRecord:
    """Collects what a run read and made, and writes config.yaml + provenance.json into `out_dir`."""

    def __init__(self, out_dir: str | os.PathLike, stage: str, configs: Iterable[Any], config_file: Path | None = None):
        self.out_dir = Path(out_dir)
        self.stage = stage
        self.configs = list(configs)
        self.config_file = config_file
        self.inputs: dict[str, str] = {}
        self.templates: dict[str, str] = {}
        self.models: dict[str, str] = {}
        self.outputs: dict[str, str] = {}
        self.notes: dict[str, Any] = {}
        self.started = time.time()

    def add_input(self, name: str, path: str | os.PathLike) -> None:
        from .records import split_joined_path

        parts = split_joined_path(path)
        path = Path(path)
        if parts and all(p.is_file() for p in parts):  # texts+labels files
            self.inputs[name] = " + ".join(f"{p} sha256:{sha256_file(p)}" for p in parts)
        elif path.is_file():
            self.inputs[name] = f"{path} sha256:{sha256_file(path)}"
        elif path.exists():
            self.inputs[name] = str(path)
        else:  # a hub id (dataset or model), loaded by reference
            self.inputs[name] = f"{path} (hub reference)"

    def add_template(self, name: str, text: str) -> None:
        self.templates[name] = f"sha256:{sha256_text(text)}"

    def add_output(self, name: str, path: str | os.PathLike) -> None:
        self.outputs[name] = str(path)

    def resolved_config(self) -> dict[str, Any]:
        """The merged, redacted config as plain data (what config.yaml holds)."""
        merged: dict[str, Any] = {}
        for cfg in self.configs:
            merged.update(to_plain(cfg))
        # YAML round trip, so a comparison with a saved config.yaml sees the same types (tuples, floats)
        return yaml.safe_load(yaml.safe_dump(redact(merged), sort_keys=False))

    def write_config(self) -> Path:
        drop_finished_record(self.out_dir)  # written again by write(), once this run has finished
        return atomic_write_text(self.out_dir / "config.yaml", yaml.safe_dump(self.resolved_config(), sort_keys=False))

    def write(self) -> Path:
        self.write_config()
        record = {
            "stage": self.stage,
            "command": redact(redact_command(list(sys.argv))),
            "config_file": str(self.config_file) if self.config_file else None,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "seconds": round(time.time() - self.started, 2),
            "git": git_state(),
            "packages": package_versions(),
            "hardware": hardware(),
            "models": self.models,
            "inputs": self.inputs,
            "templates": self.templates,
            "outputs": self.outputs,
            **({"notes": self.notes} if self.notes else {}),
        }
        path = atomic_write_text(self.out_dir / "provenance.json", json.dumps(redact(record), indent=2) + "\n")
        honour_umask_tree(self.out_dir)
        return path


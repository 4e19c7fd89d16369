import json
import sys
from dataclasses import dataclass

import pytest
import yaml

from tunelab.errors import OutputExistsError
from tunelab.runs import RunRecord, ensure_output_dir


@dataclass
class Cfg:
    api_key_env: str = "MY_API_KEY"
    hub_token: str | None = None
    note: str = ""


def test_secrets_never_reach_run_records(tmp_path, monkeypatch):
    secret = "sk-very-secret-123456"
    monkeypatch.setenv("MY_API_KEY", secret)
    monkeypatch.setattr(sys, "argv", ["train.py", "--note", secret])
    record = RunRecord(tmp_path, "test", [Cfg(hub_token="hf_abcdefgh", note=f"key={secret}")])
    record.write()
    text = (tmp_path / "config.yaml").read_text() + (tmp_path / "provenance.json").read_text()
    assert secret not in text and "hf_abcdefgh" not in text
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config["api_key_env"] == "MY_API_KEY"  # the variable's name is fine to record
    provenance = json.loads((tmp_path / "provenance.json").read_text())
    assert provenance["packages"]["torch"] and "commit" in provenance["git"]


def test_existing_output_folder_needs_overwrite(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("keep")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        ensure_output_dir(tmp_path / "x", overwrite=False)
    ensure_output_dir(tmp_path / "x", overwrite=True)
    assert (tmp_path / "x" / "f").read_text() == "keep"


def test_a_run_replacing_another_never_reads_as_the_finished_old_one(tmp_path):
    """--overwrite that stops half way must not leave the old provenance.json beside the new settings."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "provenance.json").write_text('{"stage": "finetune"}')  # the old, finished run
    (out / "model.safetensors").write_text("old weights")
    ensure_output_dir(out, overwrite=True)  # bad input may still stop the new run: the old one stays whole
    assert (out / "provenance.json").exists()
    RunRecord(out, "finetune", [Cfg()]).write_config()  # finetune and inference, as their work starts
    assert not (out / "provenance.json").exists() and (out / "model.safetensors").exists()
    record = RunRecord(out, "finetune", [Cfg()])
    record.write()  # finishing writes it again
    assert json.loads((out / "provenance.json").read_text())["stage"] == "finetune"


def test_two_runs_cannot_write_one_folder_at_once(tmp_path):
    """A folder another live process is writing is refused, overwrite or not; the claim dies with that
    process (killed, no clean-up) and is let go by release_output_dirs."""
    import subprocess

    from tunelab.runs import check_output_dir, release_output_dirs

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from tunelab.runs import check_output_dir; "
                               f"check_output_dir({str(out)!r}, False); print('held', flush=True); time.sleep(120)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputExistsError, match=rf"being written by another run \(pid {holder.pid} on "):
            check_output_dir(out, overwrite=True)
    finally:
        holder.kill()
        holder.wait()
    check_output_dir(out, overwrite=True)  # its lock went with it
    check_output_dir(out, overwrite=True)  # this process holds it: a second check is fine
    lock = tmp_path / ".run.lock"
    assert lock.exists()
    release_output_dirs()
    assert not lock.exists()

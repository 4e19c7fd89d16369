"""The README is executable: its quick start and the commands it offers next run as written, in order,
in a fresh copy of the repository. A README edit that breaks one of them fails here."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tunelab.paths import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
RUN_SECTIONS = ("Quick start", "Try next")  # the sections whose shell blocks a new user runs first, in this order
# Text in those commands, and what the test runs instead (hub ids would need the network). Nothing else is rewritten.
OFFLINE_STAND_INS: dict[str, str] = {
    # The default demo is the quick one's stages at more steps and rows (minutes more on a CPU): the suite runs the
    # quick size, so every command after it still reads a finished demo through runs/demo/latest.
    "make demo ": "make demo DEMO_ARGS=--quick ",
}
MAX_README_LINES = 250


def section_blocks(text: str, title: str) -> list[str]:
    """The ```bash blocks of the `## title` section."""
    match = re.search(rf"^## {re.escape(title)}\b.*?$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return re.findall(r"^```bash\n(.*?)^```", match.group(1), re.M | re.S)


def readme_script() -> str:
    text = README.read_text(encoding="utf-8")
    blocks = [block for title in RUN_SECTIONS for block in section_blocks(text, title)]
    assert blocks, "the README's first sections hold no ```bash blocks"
    script = "\n".join(blocks)
    for original, stand_in in OFFLINE_STAND_INS.items():
        assert original in script, f"the README's commands no longer hold {original!r}: update OFFLINE_STAND_INS"
        script = script.replace(original, stand_in)
    return script


def test_the_readme_stays_short_and_links_only_to_files_that_exist():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_README_LINES
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (PROJECT_ROOT / target).exists(), f"README links to {target}, which does not exist"


def repo_copy(destination: Path) -> Path:
    """The files git tracks plus the untracked ones it does not ignore: a fresh clone of this checkout."""
    listed = subprocess.run(["git", "-C", str(PROJECT_ROOT), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = PROJECT_ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)  # mtimes kept: make sees the installed venv as up to date
    return destination


@pytest.mark.skipif(not (PROJECT_ROOT / ".venv/.tunelab-installed").exists(),
                    reason="runs the README's make commands on the installed .venv (make install)")
def test_the_quick_start_and_the_next_commands_run_as_written(tmp_path):
    repo = repo_copy(tmp_path / "repo")
    (repo / ".venv").symlink_to(PROJECT_ROOT / ".venv")  # installed once: the copy's own code runs through PYTHONPATH
    # make must see that venv as installed: never reinstall the checkout's venv from a copy that will vanish.
    installed = (PROJECT_ROOT / ".venv/.tunelab-installed").stat().st_mtime
    for name in ("pyproject.toml", "constraints.txt"):
        os.utime(repo / name, (installed - 1, installed - 1))
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    script = readme_script()
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=1500)
    assert done.returncode == 0, f"README commands failed:\n{script}\n--- stdout\n{done.stdout[-4000:]}\n" \
                                 f"--- stderr\n{done.stderr[-4000:]}"
    latest = repo / "runs/demo/latest"
    assert latest.is_symlink() and (latest / "summary.json").exists()
    # The copy's own code and configs ran, not the checkout's the venv was installed from.
    assert json.loads((latest / "generate/provenance.json").read_text())["config_file"].startswith(str(repo))
    judged = json.loads((latest / "scores-judged/scores.json").read_text())["judge"]
    assert [r["name"] for r in judged["runs"]] == ["base", "tuned"] and judged["win_rates"][0]["run"] == "tuned"

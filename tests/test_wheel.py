"""tunelab installed from its wheel works away from a checkout: the wheel carries the prompts, data
samples and every stage's configs, and `tunelab demo --quick` runs every stage from another directory
(the suite's one run of the whole demo)."""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from tunelab.paths import PROJECT_ROOT

from test_readme import repo_copy


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_the_wheel_installed_in_a_fresh_venv_runs_the_quick_demo_from_another_directory(tmp_path):
    repo = repo_copy(tmp_path / "repo")  # a fresh clone's files: nothing the checkout has but git does not
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--disable-pip-version-check",
         "-w", tmp_path / "dist", repo])
    (wheel,) = (tmp_path / "dist").glob("tunelab-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
         "--disable-pip-version-check", wheel])
    # The dependencies are this environment's (installing torch again would take minutes): a path entry
    # only, so this environment's own tunelab (an editable install, a .pth hook) is not seen there.
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run([python, "-c", "import tunelab.paths as p; print(p.PROJECT_ROOT, p.CHECKOUT)"], cwd=elsewhere)
    root, checkout = where.stdout.split()
    assert root.startswith(site) and checkout == "None"

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    done = run([venv / "bin" / "tunelab", "demo", "--quick", "--output_dir", tmp_path / "demo"], cwd=elsewhere,
               env=env, timeout=900)
    # every stage ran and says where its outputs went
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert [r["stage"] for r in summary["rows"]] == ["generate", "generate", "generate", "finetune", "finetune",
                                                     "inference", "inference", "evaluate", "evaluate"]
    assert all(Path(r["where"]).exists() for r in summary["rows"])
    assert "SmolLM2" in summary["note"] and len(summary["examples"]["answers"]) == 3
    assert all(a["base.prediction"] is not None and a["tuned.prediction"] is not None
               for a in summary["examples"]["answers"])
    reasons = json.loads((tmp_path / "demo/generate/stats.json").read_text())["self_instruct"]["reject_reasons"]
    assert reasons and summary["examples"]["self_instruct_rejects"] == dict(list(reasons.items())[:4])
    assert "before and after tuning" in done.stdout and "BERTScore" in done.stdout and " -> " in done.stdout
    provenance = json.loads((tmp_path / "demo" / "generate" / "provenance.json").read_text())
    assert provenance["config_file"].startswith(root)  # the wheel's shipped config, not the checkout's
    assert provenance["git"] == {"commit": None, "dirty": None}
    for run_folder in ("generate", "student", "scores_text"):
        recorded = (tmp_path / "demo" / run_folder / "provenance.json").read_text()
        for shipped in ("data", "prompts", "generate", "finetune", "evaluate", "configs"):
            assert str(PROJECT_ROOT / shipped) not in recorded, f"{run_folder} read {shipped}/ from the checkout"

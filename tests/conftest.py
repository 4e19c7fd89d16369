"""Shared fixtures: tiny random models built once per session, offline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

from tunelab.paths import PROJECT_ROOT


@pytest.fixture(scope="session", autouse=True)
def tunelab_cache(tmp_path_factory):
    """Built-in models (tunelab:tiny-llama) are built into a per-session cache, not the user's."""
    cache = tmp_path_factory.mktemp("tunelab-cache")
    old = os.environ.get("TUNELAB_CACHE")
    os.environ["TUNELAB_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("TUNELAB_CACHE", None)
    else:
        os.environ["TUNELAB_CACHE"] = old


@pytest.fixture(autouse=True)
def released_output_dirs():
    """Stages called in process keep their output folders claimed (run_main lets go at the end of a
    command); let go after each test, as a finished command would."""
    from tunelab.runs import release_output_dirs

    yield
    release_output_dirs()


@pytest.fixture(scope="session")
def tiny_llama(tunelab_cache) -> str:
    """Folder of a tiny random Llama (2 layers, hidden 64) with a byte-level BPE tokenizer."""
    from tunelab.models import resolve_model

    return resolve_model("tunelab:tiny-llama")


@pytest.fixture(scope="session")
def minilm() -> str:
    from tunelab.models import resolve_model

    return resolve_model("tunelab:minilm")


@pytest.fixture
def project_root():
    return PROJECT_ROOT


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in a temporary working directory: relative outputs land there, inputs fall back to the project."""
    monkeypatch.chdir(tmp_path)
    return tmp_path

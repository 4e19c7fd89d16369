import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_docs_architecture_draws_the_code_and_no_two_parts_import_each_other():
    # layers() raises on a cycle between parts; --check fails when the chart is not the code's
    done = subprocess.run([sys.executable, str(ROOT / "docs/draw_architecture.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_cycle_between_parts_is_named_and_implied_arrows_are_left_out():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import draw_architecture
    finally:
        sys.path.remove(str(ROOT / "docs"))
    graph = {"tunelab.a": {"tunelab.b"}, "tunelab.b": {"tunelab.c"}, "tunelab.c": {"tunelab.a"}}
    with pytest.raises(ValueError, match="tunelab.a -> tunelab.b -> tunelab.c -> tunelab.a"):
        draw_architecture.layers(graph)
    assert draw_architecture.reduced({"tunelab.a": {"tunelab.b", "tunelab.c"}, "tunelab.b": {"tunelab.c"},
                                      "tunelab.c": set()}) == {"tunelab.a": {"tunelab.b"}, "tunelab.b": {"tunelab.c"},
                                                              "tunelab.c": set()}

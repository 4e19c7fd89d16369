"""Messages go through `logging`: --quiet keeps warnings and errors, --verbose adds debug lines."""

from dataclasses import dataclass

import pytest

from tunelab.config import parse_config
from tunelab.console import get_logger, set_verbosity, show_progress
from tunelab.errors import ConfigError


@dataclass
class Toy:
    steps: int = 1


@pytest.fixture(autouse=True)
def normal_afterwards():
    yield
    set_verbosity("normal")


def say_everything():
    log = get_logger("toy")
    log.debug("a detail")
    log.info("progress")
    log.warning("something odd")
    log.error("error: it failed")


def test_normal_writes_information_to_stdout_and_warnings_to_stderr(capsys):
    parse_config((Toy,), [])
    say_everything()
    out, err = capsys.readouterr()
    assert out == "toy: progress\n"
    assert err == "toy: warning: something odd\ntoy: error: it failed\n"


def test_quiet_keeps_warnings_and_errors_and_hides_progress_bars(capsys):
    parse_config((Toy,), ["--quiet"])
    say_everything()
    out, err = capsys.readouterr()
    assert out == "" and "something odd" in err and "it failed" in err
    assert not show_progress()
    parse_config((Toy,), [])  # the next command in the same process speaks again
    assert show_progress()


def test_verbose_adds_debug_lines(capsys):
    parse_config((Toy,), ["-v"])
    say_everything()
    assert "toy: a detail" in capsys.readouterr().out


def test_quiet_and_verbose_together_are_refused():
    with pytest.raises(ConfigError, match="--quiet or --verbose"):
        parse_config((Toy,), ["--quiet", "--verbose"])


def test_a_stage_run_quietly_prints_nothing_but_finishes(tmp_path, capsys):
    from tunelab.stages import evaluate

    preds = tmp_path / "predictions.jsonl"
    preds.write_text('{"id": 1, "prediction": "toxic", "reference": "toxic"}\n'
                     '{"id": 2, "prediction": "none", "reference": "insult"}\n')
    scores = evaluate.score(["--task", "classification", "--predictions", str(preds), "--taxonomy", "jigsaw",
                             "--output_dir", str(tmp_path / "scores"), "--plots", "false", "--quiet"])
    assert scores["examples"] == 2 and (tmp_path / "scores" / "scores.json").exists()
    out, err = capsys.readouterr()
    assert out == "" and err == ""

"""`--help` of every command: the project's settings first, by group, each with help; TRL's only under
`--help-all`; docs/settings.md generated from the same help text."""

import dataclasses
import importlib
import pkgutil
import re
import runpy
import sys

import pytest

import tunelab.stages
from tunelab.cli import main as tunelab_main
from tunelab.config import parse_config
from tunelab.paths import PROJECT_ROOT
from tunelab.reference import REFERENCE, REGENERATE, command_layouts, reference_markdown
from tunelab.settings import declared_by_project, group_fields
from tunelab.stages import finetune

COMMANDS = command_layouts()
SCRIPTS = [layout.prog for _, _, layout in COMMANDS if layout.prog.endswith(".py")]
OPTION = re.compile(r"^  (--?[\w-]+)", re.MULTILINE)


def help_text(capsys, monkeypatch, main, argv) -> str:
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps to the terminal's width
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code in (0, None)
    return capsys.readouterr().out


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_of_every_script_exits_0(script, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    text = help_text(capsys, monkeypatch, lambda _: runpy.run_path(str(PROJECT_ROOT / script), run_name="__main__"), [])
    assert text.startswith(f"usage: {script} ")


@pytest.mark.parametrize("name", [name for name, _, _ in COMMANDS])
def test_help_of_every_tunelab_command_exits_0(name, capsys, monkeypatch):
    text = help_text(capsys, monkeypatch, lambda argv: sys.exit(tunelab_main(argv)), [name, "--help"])
    assert "usage: " in text and "--config FILE" in text


def test_every_stage_declares_its_settings_layout():
    stages = [info.name for info in pkgutil.iter_modules(tunelab.stages.__path__)]
    with_main = [name for name in stages if hasattr(importlib.import_module(f"tunelab.stages.{name}"), "main")]
    documented = {type_.__module__ for _, types, _ in COMMANDS for type_ in types[:1]}
    for name in with_main:
        module = importlib.import_module(f"tunelab.stages.{name}")
        assert hasattr(module, "HELP") and hasattr(module, "CONFIG_TYPES"), f"tunelab.stages.{name} has no HELP layout"
        assert any(module.CONFIG_TYPES[0].__module__ == m for m in documented)


@pytest.mark.parametrize("name,types,layout", COMMANDS, ids=[name for name, _, _ in COMMANDS])
def test_every_setting_has_help_and_a_group(name, types, layout):
    grouped = group_fields(types, layout)
    for dtype in types:
        assert dtype in layout.defaults or len(layout.groups) == 1, f"{name}: no group for {dtype.__name__}"
        for f in dataclasses.fields(dtype):
            if declared_by_project(dtype, f.name):
                assert str(f.metadata.get("help", "")).strip(), f"{name}: {dtype.__name__}.{f.name} has no help"
                assert f.metadata.get("group", next(iter(layout.groups))) in layout.groups, f"{name}: {f.name}"
    assert set(layout.surfaced.values()) <= set(layout.groups)
    for fields in grouped.groups.values():
        for f in fields:
            assert str(f.metadata.get("help", "")).strip(), f"{name}: {f.name} has no help"
    assert all(fields for fields in grouped.groups.values()), f"{name}: a group with no settings"


def finetune_help(capsys, monkeypatch, flag="--help") -> str:
    return help_text(capsys, monkeypatch, finetune.main, [flag])


def test_finetune_help_leads_with_the_project_settings(capsys, monkeypatch):
    text = finetune_help(capsys, monkeypatch)
    options = OPTION.findall(text)
    assert options[0] == "--config"
    fields = {f.name: dtype for dtype in finetune.CONFIG_TYPES for f in dataclasses.fields(dtype)}
    first = next(o for o in options if o[2:] in fields)
    assert first == "--base" and declared_by_project(fields["base"], "base")
    lines = text.splitlines()
    max_length = next(i for i, line in enumerate(lines) if line.startswith("  --max_length "))
    assert max_length < 120, f"--max_length is on line {max_length + 1}"
    for title in ("model:", "LoRA and quantization:", "data:", "training:", "output:"):
        assert title in lines


def test_trl_settings_only_under_help_all(capsys, monkeypatch):
    plain = finetune_help(capsys, monkeypatch)
    everything = finetune_help(capsys, monkeypatch, "--help-all")
    library = group_fields(finetune.CONFIG_TYPES, finetune.HELP).library
    assert len(library) > 50
    for name in ("hub_model_id", "ddp_backend", "lr_scheduler_kwargs", "dataloader_num_workers"):
        assert name in {f.name for f in library}
        assert f"--{name} " not in plain and f"--{name}\n" not in plain
        assert re.search(rf"^  --{name}\b", everything, re.MULTILINE)
    closing = " ".join(plain.split()[-30:])
    assert f"plus {len(library)} settings of TRL's SFTConfig and the Trainer: --help-all lists them" in closing
    assert set(OPTION.findall(plain)) < set(OPTION.findall(everything))
    for name in finetune.TRAINER_SETTINGS:  # the Trainer's everyday settings stay in the main help
        assert re.search(rf"^  --{name}\b", plain, re.MULTILINE), name


def test_help_layout_changes_no_parsing():
    # Settings with a help group, TRL's unlisted ones and their dash spellings all still parse.
    (mcfg, *_, args), _ = parse_config(finetune.CONFIG_TYPES, [
        "--base", "x", "--lora_dropout", "0.1", "--quantization", "4bit", "--hub_model_id", "me/x",
        "--dataloader-num-workers", "2", "--no_use_lora", "--save_total_limit", "3"])
    assert (mcfg.lora_dropout, mcfg.quantization, mcfg.use_lora) == (0.1, "4bit", False)
    assert (args.hub_model_id, args.dataloader_num_workers, args.save_total_limit) == ("me/x", 2, 3)


def test_settings_reference_is_current():
    expected = reference_markdown()
    current = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
    assert current == expected, f"docs/settings.md is out of date: regenerate it with `{REGENERATE}`"

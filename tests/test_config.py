from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tunelab.config import parse_config
from tunelab.errors import ConfigError
from tunelab.paths import PROJECT_ROOT, STAGE_CONFIG_DIRS
from tunelab.stages import demo, evaluate, finetune, generate, infer

STAGE_TYPES = {
    "generate": generate.CONFIG_TYPES,
    "finetune": finetune.CONFIG_TYPES,
    "evaluate": evaluate.CONFIG_TYPES,
    "inference": (infer.InferenceConfig,),
}
SHIPPED = [(stage, path) for stage in STAGE_TYPES for path in sorted(STAGE_CONFIG_DIRS[stage].glob("*.yaml"))]


def test_every_stage_ships_configs():
    assert {stage for stage, _ in SHIPPED} == set(STAGE_TYPES)


@pytest.mark.parametrize("stage,path", SHIPPED, ids=[f"{s}/{p.name}" for s, p in SHIPPED])
def test_shipped_yaml_parses_into_its_dataclasses(stage, path):
    configs, used = parse_config(STAGE_TYPES[stage], ["--config", str(path)], configs_dir=STAGE_CONFIG_DIRS[stage])
    assert used == path
    assert [type(c) for c in configs] == list(STAGE_TYPES[stage])


@dataclass
class Toy:
    name: str = "a"
    steps: int = 1
    rate: float = 0.1
    tags: list[str] = field(default_factory=list)
    flag: bool = False
    limit: int | None = None
    reporter: str | None = "none"  # "none" is this one's value (as TrainingArguments' report_to)


def write(tmp_path, text) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_yaml_sets_and_cli_overrides(tmp_path):
    path = write(tmp_path, "name: b\nsteps: 5\ntags: [x, y]\nflag: true\n")
    (toy,), _ = parse_config((Toy,), ["--config", str(path), "--steps", "7"])
    assert (toy.name, toy.steps, toy.tags, toy.flag) == ("b", 7, ["x", "y"], True)


def test_unknown_yaml_key_is_named(tmp_path):
    path = write(tmp_path, "name: b\nstepz: 5\n")
    with pytest.raises(ConfigError, match=r"unknown key 'stepz'.*steps"):
        parse_config((Toy,), ["--config", str(path)])


def test_badly_typed_yaml_value_is_named(tmp_path):
    path = write(tmp_path, "steps: many\n")
    with pytest.raises(ConfigError, match="key 'steps' has an invalid value"):
        parse_config((Toy,), ["--config", str(path)])


def test_unknown_cli_flag_is_an_error(capsys):
    with pytest.raises(SystemExit):
        parse_config((Toy,), ["--stepz", "3"])
    assert "--stepz" in capsys.readouterr().err


def test_config_found_by_name_in_stage_folder():
    (_, _, _, mod, *_), used = parse_config(generate.CONFIG_TYPES, ["--config", "demo"],
                                        configs_dir=STAGE_CONFIG_DIRS["generate"])
    assert used == STAGE_CONFIG_DIRS["generate"] / "demo.yaml"
    assert mod.taxonomy == "jigsaw"


def test_missing_config_lists_shipped_ones():
    with pytest.raises(ConfigError, match="demo"):
        parse_config(generate.CONFIG_TYPES, ["--config", "nope"], configs_dir=STAGE_CONFIG_DIRS["generate"])


def test_trust_remote_code_is_off_by_default():
    (_, teacher, *_), _ = parse_config(generate.CONFIG_TYPES, [])
    (*_, train), _ = parse_config(finetune.CONFIG_TYPES, ["--base", "x"])
    (inference,), _ = parse_config((infer.InferenceConfig,), ["--model", "x"])
    assert not teacher.trust_remote_code and not train.trust_remote_code and not inference.trust_remote_code


def test_demo_config_has_no_file_but_parses():
    (cfg,), used = parse_config((demo.DemoConfig,), [])
    assert used is None and cfg.output_dir is None


def test_scripts_folders_are_not_packages():
    for folder in ("generate", "finetune", "evaluate"):
        assert not (PROJECT_ROOT / folder / "__init__.py").exists()


def test_none_on_the_command_line_unsets_an_optional_setting(tmp_path):
    path = write(tmp_path, "limit: 100\nname: b\n")
    (toy,), _ = parse_config((Toy,), ["--config", str(path)])
    assert toy.limit == 100
    for spelling in ("none", "None", "null"):
        (toy,), _ = parse_config((Toy,), ["--config", str(path), "--limit", spelling])
        assert toy.limit is None
    (toy,), _ = parse_config((Toy,), ["--config", str(write(tmp_path, "limit: none\n"))])
    assert toy.limit is None
    # a setting that cannot be None keeps "none" as a value (a name here) or refuses it (a number)
    (toy,), _ = parse_config((Toy,), ["--name", "none"])
    assert toy.name == "none"
    with pytest.raises(SystemExit):
        parse_config((Toy,), ["--steps", "none"])
    # an optional setting whose default is the word "none" keeps it
    (toy,), _ = parse_config((Toy,), [])
    assert toy.reporter == "none"
    (toy,), _ = parse_config((Toy,), ["--reporter", "none"])
    assert toy.reporter == "none"


def test_none_is_not_a_number_for_an_optional_number(capsys):
    with pytest.raises(SystemExit):
        parse_config((Toy,), ["--limit", "many"])
    assert "invalid int value: 'many'" in capsys.readouterr().err


def test_train_subset_none_uses_every_training_row():
    configs, _ = parse_config(finetune.CONFIG_TYPES, ["--config", "imdb_minilm"],
                              configs_dir=STAGE_CONFIG_DIRS["finetune"])
    (classifier,) = [c for c in configs if hasattr(c, "train_subset")]
    assert classifier.train_subset == 10000
    configs, _ = parse_config(finetune.CONFIG_TYPES, ["--config", "imdb_minilm", "--train_subset", "none"],
                              configs_dir=STAGE_CONFIG_DIRS["finetune"])
    (classifier,) = [c for c in configs if hasattr(c, "train_subset")]
    assert classifier.train_subset is None


def test_a_setting_that_is_a_word_or_a_boolean_takes_both():
    """TrainingArguments' include_num_input_tokens_seen is `str | bool`: all, non_padding, no, or true/false.
    transformers' own parser reads it as a bool alone, so non_padding could not be given."""
    from tunelab.training.arguments import TrainConfig

    def given(*argv):
        (cfg,), _ = parse_config([TrainConfig], ["--output_dir", "x", *argv])
        return cfg.include_num_input_tokens_seen

    assert given("--include_num_input_tokens_seen", "non_padding") == "non_padding"
    assert given("--include_num_input_tokens_seen", "true") in (True, "all")
    assert given("--include_num_input_tokens_seen", "no") in (False, "no")

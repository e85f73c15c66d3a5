"""Config: defaults -> YAML -> --set, typed and validated, errors that name the key."""

from pathlib import Path

import pytest
import yaml

from ganaug.config import Config, config_from_dict, fingerprint, load_config, parse_arm_shorthand, to_dict
from ganaug.errors import ConfigError


def test_defaults_yaml_and_overrides_merge(config_file: Path) -> None:
    cfg = load_config(config_file, ["gan.epochs=7", "seeds=[0, 1, 2]", "arms.2.mix.p_real=0.25", "gan.lr=3e-4"])
    assert isinstance(cfg, Config)
    assert cfg.gan.epochs == 7 and cfg.gan.z_dim == 8 and cfg.gan.batch_size == 8
    assert cfg.gan.lr == pytest.approx(3e-4)  # YAML reads 3e-4 as a string; float keys accept it
    assert cfg.seeds == [0, 1, 2]
    assert cfg.arms[2].mix is not None and cfg.arms[2].mix.p_real == 0.25
    assert cfg.gan.betas == [0.5, 0.999]  # untouched default


def test_round_trip_through_plain_data(config_file: Path) -> None:
    cfg = load_config(config_file)
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(to_dict(cfg))))
    assert to_dict(again) == to_dict(cfg)
    assert fingerprint(again) == fingerprint(cfg)
    assert fingerprint(load_config(config_file, ["gan.epochs=3"])) != fingerprint(cfg)


def test_shrink_class_key_is_spelled_class(config_file: Path) -> None:
    cfg = load_config(config_file, ["split.shrink={class: 1, keep: 0.5}"])
    assert cfg.split.shrink is not None and cfg.split.shrink.class_ == 1
    assert to_dict(cfg)["split"]["shrink"] == {"class": 1, "keep": 0.5}


@pytest.mark.parametrize(
    "override, words",
    [
        ("gan.epoch=3", ["'gan.epoch'", "did you mean 'gan.epochs'", "--set gan.epoch=3"]),
        ("gan.epochs=ten", ["'gan.epochs'", "must be an integer", "'ten'"]),
        ("gan.epochs=true", ["'gan.epochs'", "must be an integer"]),
        ("gan.epochs=0", ["'gan.epochs'", "1 or more"]),
        ("classifier.lr=-1", ["'classifier.lr'", "positive"]),
        ("arms.2.mix.p_real=1.5", ["'arms[2].mix.p_real'", "between 0 and 1", "1.5"]),
        ("arms.2.mix.p_real=-0.1", ["'arms[2].mix.p_real'", "between 0 and 1"]),
        ("data.source=mnist5k", ["'data.source'", "unknown dataset 'mnist5k'", "did you mean 'mnist-5k'"]),
        ("gan.name=stylegan", ["'gan.name'", "unknown GAN 'stylegan'"]),
        ("classifier.name=resnet", ["'classifier.name'", "unknown classifier 'resnet'", "resnet18"]),
        ("augment.scale=[1.2, 0.8]", ["'augment.scale'"]),
        ("sample.proportions=balance", ["'sample.proportions'", "did you mean 'balanced'"]),
        ("seeds=[1, 1]", ["'seeds'", "must not repeat"]),
        ("split.fraction=0.5", ["'split'", "n_per_class and fraction"]),
        ("gan.per_class=true", ["'gan.per_class'", "not supported by gan 'cgan'"]),
        ("device=gpu", ["'device'", "auto, cpu, cuda"]),
        ("baseline=nothing", ["'baseline'", "names no arm"]),
        ("arms.0.mix={p_real: 0.5}", ["'arms[0].mix'", "only applies to data: mixed"]),
        ("gan=3", ["'gan'", "mapping"]),
    ],
)
def test_bad_values_name_their_key(config_file: Path, override: str, words: list) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(config_file, [override])
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert "\n" not in str(e.value)


def test_unknown_key_in_file_names_the_file(tmp_path: Path, config_file: Path) -> None:
    data = yaml.safe_load(config_file.read_text())
    data["classifier"]["stepz"] = 5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    match = r"unknown config key 'classifier.stepz' \(in .*bad.yaml\); did you mean 'classifier.steps'"
    with pytest.raises(ConfigError, match=match):
        load_config(bad)


def test_malformed_yaml_gives_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\ngan: {epochs: 3\nseeds: [0]\n")
    with pytest.raises(ConfigError, match=r"broken.yaml' is not valid YAML at line \d+, column \d+"):
        load_config(bad)


def test_missing_file_and_bad_override_syntax(tmp_path: Path, config_file: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(config_file, ["gan.epochs"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(config_file, ["seeds=[0,1"])
    with pytest.raises(ConfigError, match="outside the list"):
        load_config(config_file, ["arms.9.name=x"])


def test_mixed_arm_needs_exactly_one_of_p_real_and_add(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of p_real"):
        load_config(config_file, ["arms.2.mix={p_real: 0.5, add: 3}"])
    with pytest.raises(ConfigError, match="is needed for data: mixed"):
        load_config(config_file, ["arms=[{name: m, data: mixed}]"])
    with pytest.raises(ConfigError, match="asks for 50 fakes per class"):
        load_config(config_file, ["arms.3.mix.add=50"])


def test_arm_shorthands() -> None:
    arm = parse_arm_shorthand(None, "p_real=0.8", None)
    assert (arm.name, arm.data, arm.mix.p_real) == ("mixed-p0.8", "mixed", 0.8)
    arm = parse_arm_shorthand(None, "add=1000", "classic")
    assert (arm.name, arm.mix.add, arm.augment) == ("real+1000-aug", 1000, "classic")
    assert parse_arm_shorthand("synthetic", None, None).name == "synthetic"
    with pytest.raises(ConfigError, match="between 0 and 1"):
        parse_arm_shorthand(None, "p_real=2", None)
    with pytest.raises(ConfigError, match="p_real=P"):
        parse_arm_shorthand(None, "q=2", None)
    with pytest.raises(ConfigError, match="needs --data mixed"):
        parse_arm_shorthand("real", "p_real=0.5", None)


def test_baseline_defaults_to_first_plain_real_arm(config_file: Path) -> None:
    cfg = load_config(config_file, ["arms=[{name: aug, data: real, augment: classic}, {name: base, data: real}]"])
    assert cfg.baseline_arm == "base"

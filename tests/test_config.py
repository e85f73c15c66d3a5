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
        ("gan.per_class=true", ["'gan.per_class'", "applies to dcgan, not cgan"]),
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


def test_a_sweep_adds_one_arm_per_value(config_file: Path) -> None:
    cfg = load_config(config_file, ["sweep.key=classifier.mix.p_real", "sweep.values='0:1:0.25'"])
    names = [a.name for a in cfg.all_arms]
    assert names[:5] == [a.name for a in cfg.arms]
    assert names[5:] == ["p_real-0", "p_real-0.25", "p_real-0.5", "p_real-0.75", "p_real-1"]
    assert [a.mix.p_real for a in cfg.all_arms[5:]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    steps = load_config(config_file, ["sweep.key=p_real", "sweep.values='0:1:0.05'"]).all_arms[5:]
    assert len(steps) == 21 and steps[3].mix.p_real == 0.15  # no 0.15000000000000002
    add = load_config(config_file, ["sweep={key: mix.add, values: [0, 5, 10], augment: classic}"]).all_arms[5:]
    assert [(a.name, a.mix.add, a.augment) for a in add] == [("add-0-aug", 0, "classic"), ("add-5-aug", 5, "classic"),
                                                             ("add-10-aug", 10, "classic")]
    # The saved config keeps the sweep, not its arms: reloading gives the same arms.
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(to_dict(cfg))))
    assert [a.name for a in again.all_arms] == names


@pytest.mark.parametrize("overrides, words", [
    (["sweep.key=gan.z_dim"], "a sweep varies an arm key"),
    (["sweep.values=0:1:0.1"], "YAML reads an unquoted 0:1:0.1 as a base-60 number"),
    (["sweep.values='1:0:0.1'"], "'start:stop:step' with step > 0"),
    (["sweep.values='0:1:x'"], "'start:stop:step'"),
    (["sweep.values=[0.5, 1.5]"], "must be shares of real images in [0, 1]"),
    (["sweep={key: mix.add, values: [0, 2.5]}"], "whole numbers of fakes per class"),
    (["sweep={key: mix.add, values: [0, 50]}"], "asks for 50 fakes per class but sample.n_per_class makes 10"),
    (["sweep.values=[0.5]", "arms.1.name=p_real-0.5"], "makes an arm named 'p_real-0.5', which arms already has"),
    (["sweep.vales=[0.5]"], "did you mean 'sweep.values'"),
    (["gan_seeds=[0, 0]"], "must not repeat a seed"),
    (["gan_seeds=[0, 1]"], "lists 2 GANs for 1 replicates"),
    (["compare.alpha=0.7"], "compare.alpha' must be in (0, 0.5)"),
    (["compare.correction=fdr"], "one of 'holm', 'bonferroni', 'none'"),
    (["data.label_regex='(oops'"], "is not a valid regular expression"),
    (["data.label_regex='^\\d+_'"], "needs a group that captures the label"),
    (["arms.2.mix.add=3"], "must set exactly one of p_real"),
])
def test_replicate_sweep_and_compare_keys_are_checked(config_file: Path, overrides: list, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(config_file, overrides)
    assert words in str(e.value)


def test_gan_seeds_pair_with_replicates_by_position(config_file: Path) -> None:
    one = load_config(config_file, ["seeds=[3, 4, 5]"])
    assert one.gan_replicates == [None] and one.gan_seed_of(4) is None
    own = load_config(config_file, ["seeds=[3, 4, 5]", "gan_seeds=[7, 8, 9]"])
    assert [own.gan_seed_of(s) for s in (3, 4, 5)] == [7, 8, 9] and own.gan_replicates == [7, 8, 9]
    shared = load_config(config_file, ["seeds=[3, 4, 5]", "gan_seeds=[7, 8]"])
    assert [shared.gan_seed_of(s) for s in (3, 4, 5)] == [7, 8, 7] and shared.gan_replicates == [7, 8]
    with pytest.raises(ConfigError, match="seed 6 is not in seeds"):
        shared.gan_seed_of(6)


def test_a_new_key_that_is_off_keeps_old_fingerprints() -> None:
    old = {"data": {"source": "mnist-5k", "root": None, "resolution": 28}}
    assert fingerprint(old | {"data": old["data"] | {"label_regex": None}}) == fingerprint(old)
    arm = {"name": "real", "data": "real", "augment": "none"}
    assert fingerprint(arm | {"oversample": False}) == fingerprint(arm)
    assert fingerprint(arm | {"oversample": True}) != fingerprint(arm)
    assert fingerprint({"a": [{"x": None, "y": 1}]}) == fingerprint({"a": [{"y": 1}]})
    assert fingerprint({"a": 0}) != fingerprint({})  # zero is a value, not "off"

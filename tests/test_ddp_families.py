"""Every family on several processes: `torchrun -m ganaug train-gan` on 2 gloo (CPU) processes against 1.

BatchNorm syncs on gloo too (`distributed.GlobalBatchNorm`) and every per-sample draw, batch mean and batch
coupling (StyleGAN2's minibatch stddev) is the global batch's, so 2 processes train what 1 does, to float
rounding: cgan, dcgan, stylegan2, vae and diffusion. Run with -s for the table of measured differences.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch

from ganaug.checkpoint import Checkpointer

from .conftest import invoke, make_folder, ok, tiny_config, write_yaml
from .ddp_worker import batchnorm_inputs
from .test_ddp import WORKER, _command, _env, copy_split, launch

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="this torch build has no torch.distributed with gloo")

# Measured on 2 busy CPU cores (torch 2.14, gloo), max |w2 - w1| over G, D, G_ema and BatchNorm's statistics after
# 6 steps of 8: cgan 7.0e-8, dcgan 7.5e-9, stylegan2 7.6e-6 (its mapping layers store weights / 0.01, the lr
# multiplier: 7.6e-8 in effect), vae 2.2e-8, diffusion 4.7e-6 (Adam on the zero-initialised output convs); the
# vae resumed on the other world size 7.5e-9. Float rounding: sums in another order.
TOLERANCE = {"cgan": 1e-6, "dcgan": 1e-6, "stylegan2": 5e-5, "vae": 1e-6, "diffusion": 5e-5}
BN_EXACT = 1e-6  # relative (max |2 - 1| / max |1|): measured 1.8e-7

# Tiny sections: each exercises what couples or draws per sample in its family.
FAMILIES: Dict[str, Dict[str, Any]] = {
    "cgan": {"name": "cgan", "z_dim": 8, "width": 8, "augment": "ada", "ada_kimg": 1, "ada_interval": 1},  # BatchNorm, ADA
    "dcgan": {"name": "dcgan", "z_dim": 8, "width": 8},  # BatchNorm, unconditional
    "stylegan2": {"name": "stylegan2", "preset": "tiny", "augment": "ada", "ada_kimg": 1, "ada_interval": 1,
                  "r1_interval": 2},  # noise, style mixing, w_avg, minibatch stddev over ranks, lazy R1
    "vae": {"name": "vae", "z_dim": 8, "width": 8, "free_bits": 0.05},  # BatchNorm, eps, free bits' batch mean
    "diffusion": {"name": "diffusion", "preset": "tiny", "timesteps": 50, "dropout": 0.1},  # t, noise, drops, dropout
}
STEPS = 6  # 3 epochs of 12 training images in global batches of 8


def _section(family: str) -> Dict[str, Any]:
    return {"epochs": 3, "batch_size": 8, "mirror": True, "grid_every": 3, **FAMILIES[family]}


def _checkpoint(root: Path, family: str) -> Dict[str, Any]:
    return torch.load(next(root.glob(f"gan*/**/{family}/checkpoint.pt")), weights_only=True)


def inert(family: str, kwargs: Dict[str, Any]) -> List[str]:
    """G's tensors that no output depends on: a per-channel shift straight before a per-channel normalisation, which
    removes it. Their gradient is zero but for float rounding, which Adam normalises into steps of about lr, so their
    weights drift apart (alike for any two runs with other rounding); BatchNorm's running mean after such a bias
    inherits it. vae: each encoder conv's bias before its BatchNorm; diffusion: conv1's bias and the embedding
    before a GroupNorm of one channel per group, and the last block's output biases before the final one."""
    from ganaug.gans import get_gan
    from ganaug.gans.diffusion import ResBlock

    G = get_gan(family, **kwargs).G
    names: List[str] = []
    if family == "vae":
        layers = list(G.encoder.features)
        for i in range(len(layers) - 1):
            if isinstance(layers[i + 1], torch.nn.BatchNorm2d):
                names += [f"encoder.features.{i}.bias", f"encoder.features.{i + 1}.running_mean"]
    if family == "diffusion":
        blocks = [(n, m) for n, m in G.named_modules() if isinstance(m, ResBlock)]
        for n, m in blocks:
            if m.norm2.num_groups == m.norm2.num_channels:
                names += [f"{n}.conv1.bias", f"{n}.emb.weight", f"{n}.emb.bias"]
        n, m = blocks[-1]
        if G.net.out[0].num_groups == G.net.out[0].num_channels:
            names += [f"{n}.conv2.bias", f"{n}.skip.bias"]
    return names


def _weights_diff(a: Dict[str, Any], b: Dict[str, Any], family: str) -> tuple[float, float]:
    """max |b - a| over G, D and G_ema: over the tensors an output depends on, and over the `inert` ones."""
    skip = set(inert(family, a["kwargs"]))
    diffs: Dict[bool, float] = {True: 0.0, False: 0.0}
    for net in ("G", "D", "G_ema"):
        for k, t in a["state_dict"][net].items():
            if t.is_floating_point():
                d = float((t.double() - b["state_dict"][net][k].double()).abs().max())
                key = net != "D" and k in skip
                diffs[key] = max(diffs[key], d)
    return diffs[False], diffs[True]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """Every family trained on 1 process (here) and on 2 (torchrun), one config with five generators."""
    tmp = tmp_path_factory.mktemp("families")
    folder = make_folder(tmp / "images")
    cfg = tiny_config(tmp, folder, checkpoint={"every_steps": 2, "keep": 2},
                      generators={f: _section(f) for f in FAMILIES}, arms=[{"name": "real", "data": "real"}])
    del cfg["gan"]
    cfg["out_dir"] = str(tmp / "one")
    path = write_yaml(tmp / "families.yaml", cfg)
    ok("split", "-c", str(path))
    ok("train-gan", "-c", str(path))
    two = tmp / "two"
    copy_split(tmp / "one", two)
    launch(2, "train-gan", "-c", str(path), "--set", f"out_dir={two}")
    return {"tmp": tmp, "config": path, "one": tmp / "one", "two": two}


def test_global_batchnorm_on_two_processes_is_batchnorm_on_the_whole_batch(tmp_path: Path) -> None:
    out = tmp_path / "bn.pt"
    r = subprocess.run(_command(2)[:-2] + [str(WORKER), "bn", str(out)], env=_env(), capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stderr
    ranks = [torch.load(f"{out}.rank{i}") for i in range(2)]
    # One process: nn.BatchNorm2d on the concatenated batch.
    inp = batchnorm_inputs()
    bn = torch.nn.BatchNorm2d(3, momentum=0.3)
    with torch.no_grad():
        bn.weight.copy_(inp["weight"])
        bn.bias.copy_(inp["bias"])
    ref: Dict[str, torch.Tensor] = {}
    for i in range(2):
        x = (inp["x"] * (1 + i)).requires_grad_(True)
        y = bn(x)
        (y * inp["grad"]).sum().backward()
        ref.update({f"y{i}": y.detach(), f"dx{i}": x.grad})
    diffs: Dict[str, float] = {}  # relative: max |2 - 1| / max |1|

    def compare(name: str, two: torch.Tensor, one: torch.Tensor) -> None:
        diffs[name] = float((two - one).abs().max() / one.abs().max())

    for k in ("y0", "dx0", "y1", "dx1"):  # each rank's rows of the global batch's output and input gradient
        compare(k, torch.cat([r_[k] for r_ in ranks]), ref[k])
    compare("dweight", ranks[0]["dweight"] + ranks[1]["dweight"], bn.weight.grad)  # DDP sums (averages) these
    compare("dbias", ranks[0]["dbias"] + ranks[1]["dbias"], bn.bias.grad)
    for k in ("running_mean", "running_var"):  # the same on both ranks: the global batch's, unbiased variance
        assert torch.equal(ranks[0][k], ranks[1][k]), k
        compare(k, ranks[0][k], getattr(bn, k))
    with torch.no_grad():
        compare("eval", torch.cat([r_["eval"] for r_ in ranks]), bn.eval()(inp["x"]))
    print(f"GlobalBatchNorm, 2 processes vs BatchNorm2d on 1: max relative difference {max(diffs.values()):.1e}")
    assert max(diffs.values()) < BN_EXACT, diffs


def test_every_family_on_two_processes_matches_one(runs: Dict[str, Any]) -> None:
    rows = []
    for family in FAMILIES:
        a, b = _checkpoint(runs["one"], family), _checkpoint(runs["two"], family)
        assert (a["step"], a["cur_nimg"]) == (b["step"], b["cur_nimg"]) == (STEPS, STEPS * 8), family
        rows.append((family, a["step"], *_weights_diff(a, b, family), TOLERANCE[family]))
    print("\nfamily     | steps | max |w2 - w1| | tolerance | inert tensors (not asserted)")
    for family, steps, diff, rest, tol in rows:
        print(f"{family:<10} | {steps:>5} | {diff:>13.1e} | {tol:>9.0e} | {rest:.1e}")
    assert all(diff < tol for _, _, diff, _, tol in rows), rows


def test_vae_stopped_on_one_process_resumes_on_two(runs: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    tmp = runs["tmp"]
    cfg = __import__("yaml").safe_load(runs["config"].read_text())
    cfg["generators"] = {"vae": cfg["generators"]["vae"]}
    cfg["out_dir"] = str(tmp / "resumed")
    path = write_yaml(tmp / "vae.yaml", cfg)
    copy_split(runs["one"], tmp / "resumed")

    # One process, stopped after step 3 (a stop request, as SIGTERM makes one): it saves step 3 and exits.
    after_step = Checkpointer.after_step

    def stop_at_3(self: Checkpointer, step: int, *args: Any, **kwargs: Any) -> None:
        if step == 3 and self.stop is not None:
            self.stop.signal = "SIGTERM"
        after_step(self, step, *args, **kwargs)

    monkeypatch.setattr(Checkpointer, "after_step", stop_at_3)
    r = invoke("train-gan", "-c", str(path))
    assert r.exit_code != 0 and "stopped by SIGTERM after step 3 of 6" in r.stderr, r.stderr
    monkeypatch.undo()
    r = launch(2, "train-gan", "-c", str(path), "--resume")
    assert "step-000000003.pt" in r.stderr
    a, b = _checkpoint(runs["one"], "vae"), _checkpoint(tmp / "resumed", "vae")
    assert (a["step"], a["cur_nimg"]) == (b["step"], b["cur_nimg"])
    diff, _ = _weights_diff(a, b, "vae")
    print(f"vae stopped at step 3 on 1 process, resumed on 2: max |resumed - uninterrupted| = {diff:.1e}")
    assert diff < TOLERANCE["vae"]

"""Memory checked before it is taken: an absurd count is a one-line error at once; large sets are written in
chunks and read memory-mapped, the same bytes and the same batches either way."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from ganaug.config import ArmConfig, MixConfig, load_config
from ganaug.data.mixing import BatchSource
from ganaug.data.synthetic import read_synthetic
from ganaug.errors import ConfigError
from ganaug.memory import check, estimates
from ganaug.stages.layout import paths

from .conftest import invoke, tiny_config, write_yaml


@pytest.fixture(scope="module")
def sampled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from .conftest import make_folder

    tmp = tmp_path_factory.mktemp("memory")
    folder = make_folder(tmp / "images")
    cfg = write_yaml(tmp / "c.yaml", tiny_config(tmp, folder, arms=[{"name": "synthetic", "data": "synthetic"}]))
    for stage in ("split", "train-gan", "sample"):
        assert invoke(stage, "-c", str(cfg)).exit_code == 0
    return cfg


CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import torch  # what the command imports anyway, before the limit
    from ganaug.cli import main
    import ganaug.stages.sample, ganaug.memory
    # From here on at most 1 GB more address space: a command that allocated in proportion to the count dies.
    with open("/proc/self/status") as f:
        vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, vm + 2**30))
    t = time.time()
    try:
        main(sys.argv[1:], standalone_mode=True)
    except SystemExit as e:
        code = e.code
    print(json.dumps({"code": code, "seconds": time.time() - t}))
""")


def test_an_absurd_count_is_a_one_line_error_at_once_and_allocates_nothing(sampled: Path) -> None:
    run = Path(load_config(sampled).out_dir)
    before = sorted(p.relative_to(run).as_posix() for p in run.rglob("*"))
    out = subprocess.run([sys.executable, "-c", CHILD, "sample", "-c", str(sampled), "--set", "sample.n_per_class=100000000",
                          "--force"], capture_output=True, text=True, timeout=120)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["code"] == 2 and res["seconds"] < 1.0, (res, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: config key 'sample.n_per_class' is 100,000,000"), out.stderr
    assert "more than the" in lines[0] and "would fit" in lines[0] and "Traceback" not in out.stderr
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*")) == before  # nothing touched


def test_the_estimates_name_the_key_and_suggest_what_fits(sampled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ganaug.memory as memory

    cfg = load_config(sampled, ["sample.n_per_class=10000000"])
    monkeypatch.setattr(memory, "available_ram", lambda: 10**8)  # 100 MB of RAM
    with pytest.raises(ConfigError) as e:
        check(cfg, "train-clf", paths(cfg))
    msg = str(e.value)
    assert "'sample.n_per_class' is 10,000,000" in msg and "a classifier run's labels and index orders" in msg
    fits = int(msg.split("sample.n_per_class: ")[1].split(" would fit")[0].replace(",", ""))
    assert 0 < fits < 10_000_000
    fitting = load_config(sampled, [f"sample.n_per_class={fits}"])
    check(fitting, "train-clf", paths(fitting))  # the suggestion does fit
    assert {e.kind for e in estimates(cfg, "sample", paths(cfg))} == {"disk", "RAM"}
    assert "memory     sample" in "\n".join(memory.plan_lines(cfg, paths(cfg)))


@pytest.mark.parametrize("count", ["0", "-5"])
def test_zero_and_negative_counts_are_config_errors(sampled: Path, count: str) -> None:
    with pytest.raises(ConfigError, match="sample.n_per_class' must be 1 or more"):
        load_config(sampled, [f"sample.n_per_class={count}"])


def test_a_chunked_sample_equals_an_unchunked_one(sampled: Path, tmp_path: Path) -> None:
    import shutil

    src = Path(load_config(sampled).out_dir)
    for name, chunk in (("one", 4096), ("chunked", 16)):
        shutil.copytree(src, tmp_path / name)
        r = invoke("sample", "-c", str(sampled), "--set", f"out_dir={tmp_path / name}", "--set", f"sample.chunk_size={chunk}",
                   "--set", "sample.batch_size=8", "--force")
        assert r.exit_code == 0, r.output
        if name == "chunked":
            assert "in chunks of 16" in r.stderr
    for f in ("images.npy", "labels.npy"):
        assert (tmp_path / "one" / "samples" / f).read_bytes() == (tmp_path / "chunked" / "samples" / f).read_bytes()
    a = json.loads((tmp_path / "one" / "samples" / "stage.json").read_text())["fingerprint"]
    assert a == json.loads((tmp_path / "chunked" / "samples" / "stage.json").read_text())["fingerprint"]


def test_a_memory_mapped_set_gives_the_same_batches(sampled: Path) -> None:
    images, labels, _ = read_synthetic(Path(load_config(sampled).out_dir) / "samples")
    assert isinstance(images, torch.Tensor) and not images.is_shared()
    base = images.untyped_storage()
    assert base.nbytes() == images.numel()  # a view of the mapped file, not a second copy
    copy_x, copy_y = images.clone(), labels.clone()
    real_x = torch.randint(0, 256, (12, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    real_y = torch.arange(12) % 3
    for arm in (ArmConfig(name="s", data="synthetic"), ArmConfig(name="m", data="mixed", mix=MixConfig(p_real=0.5)),
                ArmConfig(name="a", data="mixed", mix=MixConfig(add=4))):
        a = BatchSource(arm, real_x, real_y, images, labels, 3, torch.Generator().manual_seed(1))
        b = BatchSource(arm, real_x, real_y, copy_x, copy_y, 3, torch.Generator().manual_seed(1))
        for _ in range(5):
            (xa, ya, ra, _), (xb, yb, rb, _) = a.next(8), b.next(8)
            assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ra, rb)
    assert np.asarray(images).flags.writeable  # copy-on-write: a run can write its view without touching the file



def test_a_photo_folder_too_large_to_decode_is_one_line_before_the_tensor(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import ganaug.memory as memory

    from .conftest import make_folder

    folder = make_folder(tmp_path / "images")
    cfg = write_yaml(tmp_path / "c.yaml", tiny_config(tmp_path, folder))
    n = sum(1 for f in folder.rglob("*") if f.is_file())
    monkeypatch.setattr(memory, "available_ram", lambda: n * 3 * 20 * 20)  # room for about 17 px, not 64
    r = invoke("split", "-c", str(cfg), "--set", "data.resolution=64", "--set", "data.channels=3")
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: config key 'data.resolution' is 64"), r.stderr
    assert str(folder) in lines[0] and "data.resolution: 17 would fit" in lines[0]
    assert not (tmp_path / "run" / "split").exists() and not any((tmp_path / "run").glob("split*"))
    # The suggestion fits the same machine.
    r = invoke("split", "-c", str(cfg), "--set", "data.resolution=17", "--set", "data.channels=3")
    assert r.exit_code == 0, r.stderr


@pytest.mark.parametrize("error,where,key", [
    ("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 15.7 GiB total)", "GPU", "classifier.batch_size"),
    ("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory", "memory",
     "classifier.batch_size"),
])
def test_running_out_of_memory_in_training_is_one_line_naming_the_batch_size(sampled: Path, monkeypatch: pytest.MonkeyPatch,
                                                                              error: str, where: str, key: str) -> None:
    import ganaug.stages as stages

    def oom(*args: object, **kwargs: object) -> None:
        raise (torch.OutOfMemoryError if "CUDA" in error else RuntimeError)(error)

    monkeypatch.setattr(stages, "run_train_clf", oom)
    r = invoke("train-clf", "-c", str(sampled))
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: `ganaug train-clf` ran out of {where}"), r.stderr
    assert f"lower {key}" in lines[0] and "Traceback" not in r.stderr


def test_other_runtime_errors_still_raise(sampled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ganaug.stages as stages

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("shapes do not match")

    monkeypatch.setattr(stages, "run_train_clf", boom)
    with pytest.raises(RuntimeError, match="shapes do not match"):  # a bug stays a traceback, not a memory hint
        invoke("train-clf", "-c", str(sampled))

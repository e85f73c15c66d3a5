"""What it cost: every cell's wall, CPU and memory in its stage record and in logs/run.json, whose totals are the
cells' sums; a cell's peak memory is its own (not an earlier cell's in the same process), its children's CPU counts;
and compare charges each cell once, a generator shared by k arms a k-th to each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

from ganaug import cost
from ganaug.config import load_config
from ganaug.cost import ADDITIVE
from ganaug.stages import run_all
from ganaug.stages.costs import SECTION

from .conftest import make_folder, tiny_config, write_yaml

ARMS = [{"name": "real", "data": "real"}, {"name": "synthetic", "data": "synthetic"},
        {"name": "mixed-0.5", "data": "mixed", "mix": {"p_real": 0.5}},
        {"name": "real-aug", "data": "real", "augment": "classic"}]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny serial run: two fake-using arms share one generator; two real arms; two seeds."""
    tmp = tmp_path_factory.mktemp("cost")
    path = write_yaml(tmp / "cfg.yaml", tiny_config(tmp, make_folder(tmp / "images"), arms=ARMS, seeds=[0, 1]))
    run_all(load_config(path), progress=False)
    return path


def _run_json(cfg: Any) -> Dict[str, Any]:
    return json.loads((Path(cfg.out_dir) / "logs" / "run.json").read_text())


def test_every_cell_records_its_cost_and_the_totals_are_their_sums(finished: Path) -> None:
    cfg = load_config(finished)
    run = _run_json(cfg)
    assert len(run["cells"]) == 13  # split, features, gan, samples, evaluate, 4 arms x 2 seeds
    for c in run["cells"]:
        spent = c["cost"]
        assert spent["wall_seconds"] > 0 and spent["cpu_seconds"] > 0 and spent["peak_rss_mib"] > 0, c["id"]
        assert spent["cpu_seconds"] == pytest.approx(spent["cpu_self_seconds"] + spent["cpu_children_seconds"], abs=2e-3)
        assert spent["peak_rss_of"] == "block" and spent["gpu_seconds"] == 0.0 and spent["gpu"] is None
        assert spent["wall_seconds"] <= c["seconds"] + 0.01  # the cell's own time, within the coordinator's
        # The same record in the cell's stage.json (and a classifier run's result.json).
        folder = Path(cfg.out_dir) / c["id"]
        assert json.loads((folder / "stage.json").read_text())["cost"] == spent
        if c["kind"] == "train-clf":
            assert json.loads((folder / "result.json").read_text())["cost"] == spent
    for k in ADDITIVE:
        assert run["cost"][k] == pytest.approx(sum(c["cost"][k] for c in run["cells"]), abs=1e-6), k
    assert run["cost"]["peak_rss_mib"] == max(c["cost"]["peak_rss_mib"] for c in run["cells"])
    assert run["cost"]["cells"] == 13 and run["cost"]["unmeasured"] == 0

    # Run again: every cell is done; nothing new is recorded, and the records keep the costs of the run that made them.
    before = {c["id"]: c["cost"] for c in run["cells"]}
    run_all(cfg, progress=False)
    for cid, spent in before.items():
        assert json.loads((Path(cfg.out_dir) / cid / "stage.json").read_text())["cost"] == spent
    assert _run_json(cfg)["cells"] == run["cells"], "a run with nothing to do leaves run.json as it was"


def test_compare_charges_each_cell_once_a_shared_generator_split_among_its_arms(finished: Path) -> None:
    cfg = load_config(finished)
    cells = {c["id"]: c["cost"] for c in _run_json(cfg)["cells"]}
    table = json.loads((Path(cfg.out_dir) / "compare" / "table.json").read_text())
    arms = {a["arm"]: a for a in table["cost"]["arms"]}
    assert list(arms) == ["real", "synthetic", "mixed-0.5", "real-aug"]
    generator = ["features/domain", "gan", "samples", "evaluate"]
    for name in arms:
        own = [cells[f"clf/{name}/seed-{s}"] for s in (0, 1)]
        want = {k: sum(c[k] for c in own) + cells["split"][k] / 4 for k in ("wall_seconds", "cpu_seconds")}
        if name in ("synthetic", "mixed-0.5"):  # the generator's cells, half each
            for k in want:
                want[k] += sum(cells[g][k] for g in generator) / 2
        for k, v in want.items():
            assert arms[name][k] == pytest.approx(v, abs=2e-3), (name, k)
    # No cell counted twice, none lost: the arms' costs add up to the run's recorded total.
    run_total = _run_json(cfg)["cost"]
    for k in ("wall_seconds", "cpu_seconds", "cpu_children_seconds"):
        assert sum(a[k] for a in arms.values()) == pytest.approx(run_total[k], abs=5e-3), k
        assert table["cost"]["total"][k] == pytest.approx(run_total[k], abs=1e-6), k
    assert table["cost"]["unassigned"]["cells"] == []
    base = arms["real"]["wall_seconds"]
    assert arms["synthetic"]["extra_seconds"] == pytest.approx(arms["synthetic"]["wall_seconds"] - base, abs=2e-3)
    assert table["cost"]["best_fakes"] in ("synthetic", "mixed-0.5") and table["cost"]["classic"] == "real-aug"

    # Said so: in table.md's cost section and the report's.
    md = (Path(cfg.out_dir) / "compare" / "table.md").read_text().split(SECTION)[1]
    assert "| synthetic |" in md and "features, train-gan, sample, evaluate shared by 2 arms" in md
    assert "2 runs; split shared by 4 arms |" in md
    assert "classic augmentation (real-aug): " in md and "fakes (" in md
    from ganaug.stages.report import run_report

    page = run_report(cfg).read_text()
    assert "<h2>What it cost</h2>" in page and "shared by 2 arms" in page


def test_a_cells_peak_memory_is_its_own_and_its_childrens_cpu_counts(tmp_path: Path, image_folder: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The split allocates and touches 200 MiB and runs a child that burns a CPU second; the classifier run after it,
    in the same process (serial), shows neither."""
    from ganaug.stages import split as split_stage

    real_split = split_stage.run_split

    def fat_split(cfg: Any, **kwargs: Any) -> Any:
        block = np.ones(200 * cost.MIB // 8)  # every page written: resident
        assert block.sum() > 0
        del block
        burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0:\n    pass\n"
        subprocess.run([sys.executable, "-c", burn], check=True)
        return real_split(cfg, **kwargs)

    monkeypatch.setattr(split_stage, "run_split", fat_split)
    path = write_yaml(tmp_path / "cfg.yaml", tiny_config(tmp_path, image_folder, arms=ARMS[:1]))
    run_all(load_config(path), progress=False)
    run = {c["id"]: c["cost"] for c in _run_json(load_config(path))["cells"]}
    split, clf = run["split"], run["clf/real/seed-0"]
    assert split["peak_rss_mib"] >= split["start_rss_mib"] + 195, split
    assert split["cpu_children_seconds"] >= 0.9 and split["cpu_seconds"] >= split["cpu_self_seconds"] + 0.9, split
    assert clf["peak_rss_of"] == "block" and clf["peak_rss_mib"] < split["peak_rss_mib"] - 150, (split, clf)
    assert clf["cpu_children_seconds"] < 0.5


def test_without_the_reset_the_peak_is_said_to_be_the_processs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if sys.platform.startswith("linux"):
        with cost.measure() as spent:
            pass
        assert spent["peak_rss_of"] == "block"  # the reset, where Linux allows it
    monkeypatch.setattr(cost, "CLEAR_REFS", tmp_path / "no-such-dir" / "clear_refs")
    with cost.measure() as spent:
        pass
    assert spent["peak_rss_of"] == "process" and spent["peak_rss_mib"] >= spent["start_rss_mib"] > 0


def test_measuring_does_not_import_torch() -> None:
    code = ("import sys\nfrom ganaug import cost\nwith cost.measure() as spent:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nprint(spent['gpu'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"


class _FakeCuda:
    """torch.cuda as the cost meter sees it: one device, an allocation counter and its peak."""

    def __init__(self) -> None:
        self.allocated = self.peak = 10 * cost.MIB  # held before the block (an earlier cell's model)

    def is_initialized(self) -> bool:
        return True

    def device_count(self) -> int:
        return 1

    def reset_peak_memory_stats(self, i: int) -> None:
        self.peak = self.allocated

    def memory_allocated(self, i: int) -> int:
        return self.allocated

    def max_memory_allocated(self, i: int) -> int:
        return self.peak

    def get_device_name(self, i: int) -> str:
        return "NVIDIA H200"

    def allocate(self, n: int) -> None:
        self.allocated += n
        self.peak = max(self.peak, self.allocated)
        self.allocated -= n


def test_a_block_that_allocates_on_the_gpu_counts_its_wall_time_as_gpu_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU here: CUDA's counters are stood in for; a block that allocates is a GPU block, one that does not is not
    (even with an earlier cell's tensors still held)."""
    import types

    fake = _FakeCuda()
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=fake))
    with cost.measure() as on_gpu:
        fake.allocate(300 * cost.MIB)
    assert on_gpu["gpu"] == "NVIDIA H200" and on_gpu["gpu_seconds"] == on_gpu["wall_seconds"]
    assert on_gpu["peak_gpu_mib"] == 310.0
    with cost.measure() as on_cpu:
        pass
    assert on_cpu["gpu"] is None and on_cpu["gpu_seconds"] == 0.0 and on_cpu["peak_gpu_mib"] is None

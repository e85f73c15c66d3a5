# ganaug: the common tasks. `make install` then `make test` is all a fresh machine needs.
PY ?= python

.PHONY: install test test-clusters test-all demo default stylegan2 report lint docs docs-serve bench bench-vs-torchvision bench-vs-dcgan bench-default bench-stylegan2 resume-check clean

install:  ## install ganaug with its test tools (torch and torchvision come from the package registry)
	$(PY) -m pip install -e ".[dev]"

test:  ## the default test suite (`slow` tests excluded; the README says how long it takes)
	$(PY) -m pytest -q

test-clusters:  ## the tests that start a cluster or a process group (a real one-node Slurm as root, Ray, submitit, torchrun); CI runs them after `make test`
	$(PY) -m pytest -q -m cluster

test-all:  ## every test, the slow and cluster ones too
	$(PY) -m pytest -q -m ""

demo:  ## a first look in under a minute (digits, tiny networks)
	ganaug run --config configs/quick.yaml

default:  ## the bundled default experiment (the README says how long it takes)
	ganaug run --config configs/mnist5k-cgan.yaml

stylegan2:  ## the default's data and arms with a native conditional StyleGAN2 + ADA (under an hour on 2 CPU cores)
	ganaug run --config configs/mnist5k-stylegan2.yaml

report:  ## the default experiment, then its HTML report (runs/mnist5k-cgan/report.html)
	ganaug run --config configs/mnist5k-cgan.yaml
	ganaug report --config configs/mnist5k-cgan.yaml

lint:
	$(PY) -m ruff check ganaug tests scripts docs

docs:  ## the docs site into site/; --strict: a broken link or anchor fails (as in CI)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

docs-serve:  ## the docs site at http://127.0.0.1:8000, rebuilt as you edit
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve

bench:  ## per-step timings per precision setting, then where a classifier cell's and a GAN cell's time goes, phase by phase
	$(PY) scripts/bench_steps.py
	$(PY) scripts/bench_cells.py --gan-epochs 20

bench-vs-torchvision:  ## `ganaug train-clf` against a plain torchvision ImageFolder + DataLoader loop, whole processes, paired
	$(PY) scripts/bench_vs_torchvision.py --runs 3

bench-vs-dcgan:  ## `ganaug train-gan` against pytorch/examples' dcgan/main.py (DCGAN=path/to/examples/dcgan/main.py)
	$(PY) scripts/bench_vs_dcgan.py --dcgan $(DCGAN) --runs 3

bench-default:  ## the bundled default's wall time here against BEFORE=<commit>, side by side (minutes per run)
	$(PY) scripts/bench_default.py --before $(BEFORE)

bench-stylegan2:  ## a native StyleGAN2 step per preset and resolution; OFFICIAL=path/to/stylegan2-ada-pytorch adds the ratio
	$(PY) scripts/bench_stylegan2.py $(if $(OFFICIAL),--official $(OFFICIAL))

resume-check:  ## kill the default's GAN training with SIGKILL at a random step, resume, compare with an uninterrupted run
	$(PY) scripts/kill_resume.py --config configs/mnist5k-cgan.yaml --every 200 --reference runs/mnist5k-cgan

clean:
	rm -rf runs site .pytest_cache

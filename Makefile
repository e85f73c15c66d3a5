# ganaug: the common tasks. `make install` then `make test` is all a fresh machine needs.
PY ?= python

.PHONY: install test test-all demo default report lint bench clean

install:  ## install ganaug with its test tools (torch and torchvision come from the package registry)
	$(PY) -m pip install -e ".[dev]"

test:  ## the default test suite (a few minutes on 2 cores; `slow` tests excluded)
	$(PY) -m pytest -q

test-all:  ## every test, the slow ones too
	$(PY) -m pytest -q -m ""

demo:  ## a first look in under a minute (digits, tiny networks)
	ganaug run --config configs/quick.yaml

default:  ## the bundled default experiment (about 7.5 minutes on 2 CPU cores)
	ganaug run --config configs/mnist5k-cgan.yaml

report:  ## the default experiment, then its HTML report (runs/mnist5k-cgan/report.html)
	ganaug run --config configs/mnist5k-cgan.yaml
	ganaug report --config configs/mnist5k-cgan.yaml

lint:
	$(PY) -m ruff check ganaug tests scripts

bench:  ## per-step timings of the GAN and classifier per precision setting on this device
	$(PY) scripts/bench_steps.py

clean:
	rm -rf runs .pytest_cache

"""A fault for the DDP tests: with this folder on PYTHONPATH, every torchrun process but rank 0 aborts in the
interpreter's teardown (SIGABRT), as gloo's threads now and then make one do there ("terminate called without an
active exception"). Python's `site` imports `sitecustomize` in every process it starts."""

import atexit
import os

if os.environ.get("RANK", "0") != "0":
    atexit.register(os.abort)

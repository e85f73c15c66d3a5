"""Run the official stylegan2-ada-pytorch train.py with what its options cannot say.

    python _launcher.py --repo REPO [--augment-p P] [--ada-kimg K] [--ada-interval N] -- TRAIN_OPTIONS

Run as a script by `training.run_official_training` (it imports nothing of ganaug). It puts the checkout
first on sys.path, imports its `train` module, wraps `train.setup_training_loop_kwargs` so that the
training-loop arguments it returns get

- `augment_p = P`: where ADA's probability starts (train.py starts it at 0, also on --resume);
- `ada_kimg = K`, `ada_interval = N`: ADA's speed and interval (train.py has no options for them, and sets
  ada_kimg to 100 on --resume),

and calls train.py's click command with TRAIN_OPTIONS. The values become part of the arguments train.py
hands to every training process, so they also hold with --gpus > 1. With --aug other than ada they are
not applied (fixed uses --p; noaug has no p).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, help="a checkout of NVlabs/stylegan2-ada-pytorch")
    parser.add_argument("--augment-p", type=float, default=None, help="ADA: the augmentation probability to start at")
    parser.add_argument("--ada-kimg", type=float, default=None, help="ADA: kimg for p to go from 0 to 1")
    parser.add_argument("--ada-interval", type=int, default=None, help="ADA: minibatches between adjustments")
    parser.add_argument("train_options", nargs=argparse.REMAINDER, help="-- then train.py's options")
    ns = parser.parse_args(argv)
    options = ns.train_options[1:] if ns.train_options[:1] == ["--"] else ns.train_options

    repo = os.path.abspath(ns.repo)
    sys.path.insert(0, repo)
    import train  # type: ignore[import-not-found]  # the checkout's train.py

    setup = train.setup_training_loop_kwargs
    overrides = {k: v for k, v in (("augment_p", ns.augment_p), ("ada_kimg", ns.ada_kimg),
                                   ("ada_interval", ns.ada_interval)) if v is not None}

    def setup_with_overrides(**kwargs):  # type: ignore[no-untyped-def]
        desc, args = setup(**kwargs)
        if args.get("ada_target") is not None:  # --aug=ada
            for k, v in overrides.items():
                args[k] = v
        return desc, args

    train.setup_training_loop_kwargs = setup_with_overrides
    train.main(args=options, prog_name="train.py")  # a click command: exits with train.py's status


if __name__ == "__main__":
    main()

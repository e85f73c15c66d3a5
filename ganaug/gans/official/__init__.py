"""NVlabs' stylegan2-ada-pytorch, run as it is: the dataset in its format, its train.py in a subprocess, its
snapshots loaded as a generator ganaug can sample from.

Nothing here copies the official code: a checkout of https://github.com/NVlabs/stylegan2-ada-pytorch is
named by `gan.repo`, its `train.py` runs in a subprocess (through `_launcher.py`, see there), and
its `legacy.load_network_pkl` reads the snapshots. Knows nothing of run folders or the CLI.

The official code trains only on CUDA GPUs. Its snapshots are pickles that hold code as well as weights
(the official `persistence` module): load only snapshots you made yourself.
"""

from .dataset import official_resolution, write_dataset_zip
from .env import check_repo, require_training_env
from .generator import OfficialGenerator, load_official_generator
from .runs import ResumePoint, find_resume
from .stats import StatsFollower, metrics_row
from .training import OfficialResult, run_official_training, train_args

__all__ = ["OfficialGenerator", "OfficialResult", "ResumePoint", "StatsFollower", "check_repo", "find_resume",
           "load_official_generator", "metrics_row", "official_resolution", "require_training_env", "run_official_training",
           "train_args", "write_dataset_zip"]

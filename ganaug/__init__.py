"""ganaug: does adding GAN-generated images make a small-data classifier better, and by how much?"""

__version__ = "0.1.0"

from .config import Config, load_config  # noqa: E402
from .errors import GanaugError  # noqa: E402

__all__ = ["Config", "GanaugError", "__version__", "load_config"]

"""initlab: initialization and normalization experiments on deep MLPs, on real MNIST."""

from initlab.runs import Run, load_run, load_runs

__all__ = ["Run", "load_run", "load_runs"]
__version__ = "0.1.0"

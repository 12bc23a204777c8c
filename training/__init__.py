"""Training entry points, algorithm registry and MLflow tracking (``nba.training``)."""

from nba.training.config import HyperParameters, TrainConfig, load_hyperparameters
from nba.training.registry import ALGORITHMS, AlgorithmSpec, get_algorithm, register_algorithm


def train(*args, **kwargs):
    """Train a policy and record it in MLflow; see :func:`nba.training.trainer.train`."""
    from nba.training.trainer import train as _train

    return _train(*args, **kwargs)


__all__ = [
    "ALGORITHMS",
    "AlgorithmSpec",
    "HyperParameters",
    "TrainConfig",
    "get_algorithm",
    "load_hyperparameters",
    "register_algorithm",
    "train",
]

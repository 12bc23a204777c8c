"""Training entry points, algorithm registry and MLflow tracking (``nba.training``)."""

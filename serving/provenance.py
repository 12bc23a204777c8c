"""Which model made a decision, resolved once at load time so that moving an alias later cannot
rewrite history.

``models:/nba-retail@candidate`` names whatever version the alias points at *today*; a decision
must record the version it was actually made with. :func:`resolve_model_uri` turns any model
URI into a pinned one plus a :class:`ModelVersion`: the registry name and number and the run
that trained it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ModelVersion", "resolve_model_uri"]


class ModelVersion(str):
    """A model version as text (``"nba-retail/3"``, ``"run:<id>"`` or a caller's label) that
    also carries its registry ``name``, ``version`` number and training ``run_id``.

    It is a ``str`` so every place that shows or compares a model version keeps working, while
    the decision log reads the parts into their own columns.
    """

    name: str | None
    version: str | None
    run_id: str | None

    def __new__(
        cls,
        text: str,
        name: str | None = None,
        version: str | None = None,
        run_id: str | None = None,
    ) -> ModelVersion:
        self = super().__new__(cls, text)
        self.name, self.version, self.run_id = name, version, run_id
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (ModelVersion, (str(self), self.name, self.version, self.run_id))

    def relabel(self, text: str) -> ModelVersion:
        """The same provenance under a caller's label (``PolicyScorer.load(model_version=)``)."""
        return ModelVersion(text, self.name, self.version, self.run_id)


def resolve_model_uri(uri: str, client: Any | None = None) -> tuple[str, ModelVersion]:
    """``(pinned URI, ModelVersion)`` for a ``models:/`` or ``runs:/`` URI.

    Aliases, stages and ``latest`` are resolved through the registry to one version number,
    and the pinned ``models:/NAME/VERSION`` is what gets downloaded, so the files and the
    recorded version cannot disagree even if the alias moves meanwhile. MLflow errors (no such
    model, alias or run) propagate for the caller to word.
    """
    from mlflow.store.artifact.utils.models import get_model_name_and_version
    from mlflow.tracking import MlflowClient

    if uri.startswith("runs:/"):
        run_id = uri[len("runs:/") :].strip("/").split("/", 1)[0]
        return uri, ModelVersion(f"run:{run_id}", run_id=run_id)
    client = client or MlflowClient()
    resolved = get_model_name_and_version(client, uri)
    if len(resolved) == 1:  # models:/m-<id>: a logged model, not a registry version
        (model_id,) = resolved
        run_id = client.get_logged_model(model_id).source_run_id
        return uri, ModelVersion(f"run:{run_id}" if run_id else uri, run_id=run_id)
    name, number = resolved
    found = client.get_model_version(name, str(number))
    text = f"{name}/{found.version}"
    return f"models:/{text}", ModelVersion(text, name, str(found.version), found.run_id)

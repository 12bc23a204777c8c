"""Personas found by clustering customers, and the plain-JSON model that assigns new ones.

Features are the customer table's attributes plus recency, frequency and monetary value at the
reference time: numbers are standardised (``log1p`` first for money and counts), booleans are
0/1, categories one-hot. When a randomized test is in the log, customers are clustered on their
predicted response to each arm instead (logistic regressions on those features), so personas
group customers who behave alike. k-means (scikit-learn) runs for each k in a range; the fewest
personas explaining 90% of the variance are kept, and the variance share and silhouette score
of every k are reported. The fitted model is stored in the scenario as plain numbers (scaler,
regression coefficients, centroids), so audit and serving assign personas without pickles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_score
from threadpoolctl import threadpool_limits

from nba.calibration.events import EventLogError
from nba.types import FloatArray, IntArray

EXPLAINED_TARGET = 0.9  # share of the feature variance the personas must explain
_SKEWED = ("history", "monetary", "frequency", "value")  # name fragments that get log1p


@dataclass
class PersonaModel:
    """Feature spec, standardisation and centroids: ``assign`` maps customers to personas."""

    numeric: list[str]
    logged: list[str]
    categorical: dict[str, list[str]]
    mean: list[float]
    scale: list[float]
    centroids: list[list[float]]
    silhouette: dict[int, float] = field(default_factory=dict)
    explained: dict[int, float] = field(default_factory=dict)  # variance share per k
    # response profiles: one logistic model per (outcome, arm) over the features; when set,
    # personas are clusters of predicted behaviour, not of raw attributes
    profile: list[dict[str, Any]] = field(default_factory=list)
    profile_mean: list[float] = field(default_factory=list)
    profile_scale: list[float] = field(default_factory=list)

    @property
    def k(self) -> int:
        return len(self.centroids)

    @classmethod
    def fit(
        cls,
        customers: pd.DataFrame,
        k_range: range = range(2, 7),
        seed: int = 0,
        sample: int = 10_000,
        outcomes: pd.DataFrame | None = None,
    ) -> PersonaModel:
        """Fit k-means for each k in ``k_range``; keep the fewest personas that explain 90%.

        The criterion is the between-persona share of the variance (1 - inertia / total sum
        of squares); silhouette scores are computed and reported alongside.

        :param outcomes: optional, aligned with ``customers``: an ``arm`` column and 0/1
            outcome columns from a randomized test. Personas then cluster customers by their
            predicted response to each arm (logistic regressions on the attributes), so that
            customers who behave alike share a persona.
        """
        usable = [c for c in customers.columns if c != "customer_id"]
        if not usable:
            raise EventLogError("customers: no attribute columns to find personas from")
        numeric, categorical = [], {}
        for column in usable:
            values = customers[column]
            if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
                numeric.append(column)
            else:
                levels = values.astype("string").fillna("missing").value_counts()
                categorical[column] = sorted(levels.index[levels >= 0.01 * len(values)])
        logged = [c for c in numeric if any(s in c for s in _SKEWED)]
        numeric = _drop_redundant(customers, numeric, logged)
        logged = [c for c in logged if c in numeric]
        raw = _numeric_block(customers, numeric, logged)
        mean = np.nanmean(raw, axis=0) if raw.size else np.zeros(0)
        scale = np.nanstd(raw, axis=0) if raw.size else np.zeros(0)
        scale = np.where(scale > 0, scale, 1.0)
        model = cls(numeric, logged, categorical, mean.tolist(), scale.tolist(), [[0.0]])
        if outcomes is not None:
            model._fit_profile(model.features(customers), outcomes)
        x = model.embedding(customers)
        rng = np.random.default_rng(seed)
        rows = rng.choice(len(x), size=min(sample, len(x)), replace=False)
        fits: dict[int, KMeans] = {}
        # one thread: k-means' OpenMP threads ran 1.4-3x slower on a machine with other work
        with threadpool_limits(1):
            for k in k_range:
                if k >= len(rows):
                    break
                fits[k] = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x[rows])
            if not fits:
                raise EventLogError(f"customers: too few customers ({len(x)}) to find personas")
            total = float(((x[rows] - x[rows].mean(axis=0)) ** 2).sum())
            explained = {k: 1.0 - f.inertia_ / total if total > 0 else 1.0 for k, f in fits.items()}
            scores = {k: _silhouette(x[rows], f.labels_, seed) for k, f in fits.items()}
        # the fewest personas that explain EXPLAINED_TARGET of the variance; else the most
        enough = [k for k, share in explained.items() if share >= EXPLAINED_TARGET]
        chosen = min(enough) if enough else max(fits)
        model.explained = {k: round(v, 4) for k, v in explained.items()}
        model.centroids = fits[chosen].cluster_centers_.tolist()
        model.silhouette = scores
        return model

    @classmethod
    def one(cls) -> PersonaModel:
        """A single persona over no features: a log without customer attributes, calibrated
        with each customer's own levels (``levels="auto"``), whose spread in purchase rate the
        levels carry instead of clusters on recency and frequency."""
        return cls([], [], {}, [], [], [[]], explained={1: 1.0})

    def features(self, customers: pd.DataFrame) -> FloatArray:
        """The standardised feature matrix (missing numbers sit at the mean)."""
        missing = [c for c in [*self.numeric, *self.categorical] if c not in customers.columns]
        if missing:
            raise EventLogError(f"customers: missing attribute column(s) {missing}")
        numeric = (_numeric_block(customers, self.numeric, self.logged) - self.mean) / self.scale
        numeric = np.nan_to_num(numeric, nan=0.0)
        blocks = [numeric]
        for column, levels in self.categorical.items():
            values = customers[column].astype("string").fillna("missing").to_numpy()
            blocks.append((values[:, None] == np.array(levels)[None, :]).astype(float))
        return np.hstack(blocks)

    def _fit_profile(self, x: FloatArray, outcomes: pd.DataFrame) -> None:
        arms = outcomes["arm"].astype("string").fillna("none").to_numpy()
        for column in [c for c in outcomes.columns if c != "arm"]:
            y = outcomes[column].to_numpy().astype(int)
            for arm in np.unique(arms):
                rows = arms == arm
                if rows.sum() < 100 or y[rows].min() == y[rows].max():
                    continue
                fitted = LogisticRegression(max_iter=500).fit(x[rows], y[rows])
                self.profile.append(
                    {
                        "outcome": column,
                        "arm": str(arm),
                        "coef": fitted.coef_[0].tolist(),
                        "intercept": float(fitted.intercept_[0]),
                    }
                )
        if self.profile:
            raw = self._profile_probabilities(x)
            self.profile_mean = raw.mean(axis=0).tolist()
            scale = raw.std(axis=0)
            self.profile_scale = np.where(scale > 0, scale, 1.0).tolist()

    def _profile_probabilities(self, x: FloatArray) -> FloatArray:
        coef = np.array([m["coef"] for m in self.profile])
        intercept = np.array([m["intercept"] for m in self.profile])
        return 1.0 / (1.0 + np.exp(-(x @ coef.T + intercept)))

    def embedding(self, customers: pd.DataFrame) -> FloatArray:
        """The space personas are clusters in: response profiles if fitted, else features."""
        x = self.features(customers)
        if not self.profile:
            return x
        raw = self._profile_probabilities(x)
        return (raw - np.array(self.profile_mean)) / np.array(self.profile_scale)

    def assign(self, customers: pd.DataFrame) -> IntArray:
        """Persona index of each customer: the nearest centroid."""
        x = self.embedding(customers)
        centroids = np.asarray(self.centroids)
        distance = (x**2).sum(1)[:, None] - 2 * x @ centroids.T + (centroids**2).sum(1)[None, :]
        return np.argmin(distance, axis=1)

    def describe(self, customers: pd.DataFrame, persona: IntArray) -> list[str]:
        """A short human description per persona: its most distinctive attributes."""
        x = self.features(customers)
        names = [*self.numeric, *(f"{c}={v}" for c, vs in self.categorical.items() for v in vs)]
        overall = x.mean(axis=0)
        texts = []
        for p in range(self.k):
            members = x[persona == p]
            if len(members) == 0:
                texts.append("no customers")
                continue
            gap = members.mean(axis=0) - overall
            top = np.argsort(-np.abs(gap))[:3]
            text = ", ".join(f"{names[j]} {'high' if gap[j] > 0 else 'low'}" for j in top)
            texts.append(text or "all customers")
        return texts

    def to_dict(self) -> dict[str, Any]:
        method = (
            "k-means on "
            + ("predicted response profiles" if self.profile else "standardised attributes")
            + f"; k: fewest explaining {EXPLAINED_TARGET:.0%} of the variance"
        )
        if not self.numeric and not self.categorical:
            method = "one persona: no customer attributes"
        return {
            "method": method,
            "numeric": self.numeric,
            "logged": self.logged,
            "categorical": self.categorical,
            "mean": self.mean,
            "scale": self.scale,
            "centroids": self.centroids,
            "silhouette": {str(k): v for k, v in self.silhouette.items()},
            "explained": {str(k): v for k, v in self.explained.items()},
            "profile": self.profile,
            "profile_mean": self.profile_mean,
            "profile_scale": self.profile_scale,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PersonaModel:
        return cls(
            numeric=list(data["numeric"]),
            logged=list(data["logged"]),
            categorical={k: list(v) for k, v in data["categorical"].items()},
            mean=list(data["mean"]),
            scale=list(data["scale"]),
            centroids=[list(c) for c in data["centroids"]],
            silhouette={int(k): float(v) for k, v in data.get("silhouette", {}).items()},
            explained={int(k): float(v) for k, v in data.get("explained", {}).items()},
            profile=list(data.get("profile", [])),
            profile_mean=list(data.get("profile_mean", [])),
            profile_scale=list(data.get("profile_scale", [])),
        )


def _drop_redundant(customers: pd.DataFrame, numeric: list[str], logged: list[str]) -> list[str]:
    """Keep one of each group of near-duplicate columns (|rank correlation| > 0.98).

    A duplicated attribute (recency in days and in months, say) would count twice in the
    k-means distance and drown the others.
    """
    if len(numeric) < 2:
        return numeric
    block = pd.DataFrame(_numeric_block(customers, numeric, logged), columns=numeric)
    correlation = block.rank().corr().abs().to_numpy()
    kept: list[str] = []
    for j, column in enumerate(numeric):
        if all(correlation[j, numeric.index(other)] <= 0.98 for other in kept):
            kept.append(column)
    return kept


def _numeric_block(customers: pd.DataFrame, numeric: list[str], logged: list[str]) -> FloatArray:
    if not numeric:
        return np.zeros((len(customers), 0))
    block = customers[numeric].astype(float).to_numpy(copy=True)
    for j, column in enumerate(numeric):
        if column in logged:
            block[:, j] = np.log1p(np.clip(block[:, j], 0.0, None))
    return block


SILHOUETTE_SAMPLE = 2_000  # silhouette is O(n^2): reported, not used to choose, so sampled


def _silhouette(x: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """The silhouette score on at most :data:`SILHOUETTE_SAMPLE` rows (seeded)."""
    size = min(SILHOUETTE_SAMPLE, len(x))
    return round(float(silhouette_score(x, labels, sample_size=size, random_state=seed)), 4)

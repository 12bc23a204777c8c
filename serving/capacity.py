"""Allocate scarce channels across a batch so that the total gain is as large as possible.

Each customer gets at most one action. A customer's *gain* from a scarce channel is the policy's
preference for its best allowed action on that channel over its best allowed action on a
channel without a limit (the customer's fallback). Choosing who gets the scarce channels is a
transportation problem; its LP is totally unimodular, so the LP optimum is integral. Only the
best ``sum(capacities)`` customers per channel can be in an optimal plan (any other could swap
with an unserved better one), so the LP stays small whatever the batch size. One scarce channel
needs no LP: the top-``capacity`` gains are optimal.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from nba.types import FloatArray, IntArray


def allocate(gains: FloatArray, capacity: Mapping[int, int] | list[int]) -> IntArray:
    """Assignment maximising the total gain.

    :param gains: (N, K) gain of giving customer n scarce channel k (``-inf`` or <= 0: never).
    :param capacity: (K,) how many customers each scarce channel can take.
    :return: (N,) index of the scarce channel assigned to each customer, or -1 for none.
    """
    gains = np.asarray(gains, dtype=np.float64)
    limits = np.asarray(list(capacity.values()) if isinstance(capacity, Mapping) else capacity)
    n, k = gains.shape
    assigned = np.full(n, -1, dtype=np.int64)
    useful = np.where(np.isfinite(gains) & (gains > 0), gains, 0.0)
    if n == 0 or k == 0 or not useful.any():
        return assigned
    if k == 1:
        order = np.argsort(-useful[:, 0], kind="stable")[: int(limits[0])]
        chosen = order[useful[order, 0] > 0]
        assigned[chosen] = 0
        return assigned

    total = int(limits.sum())
    if total == 0:
        return assigned
    candidates = np.zeros_like(useful, dtype=bool)
    for channel in range(k):
        top = np.argsort(-useful[:, channel], kind="stable")[:total]
        candidates[top, channel] = useful[top, channel] > 0
    rows, channels = np.nonzero(candidates)
    if rows.size == 0:
        return assigned
    customers, customer_row = np.unique(rows, return_inverse=True)
    n_vars = rows.shape[0]
    variables = np.arange(n_vars)
    constraints = coo_matrix(
        (
            np.ones(2 * n_vars),
            (
                np.concatenate([customer_row, customers.shape[0] + channels]),
                np.concatenate([variables, variables]),
            ),
        ),
        shape=(customers.shape[0] + k, n_vars),
    ).tocsr()
    bounds = np.concatenate([np.ones(customers.shape[0]), limits.astype(np.float64)])
    result = linprog(
        -useful[rows, channels],
        A_ub=constraints,
        b_ub=bounds,
        bounds=(0.0, 1.0),
        method="highs",
    )
    if not result.success:  # pragma: no cover - a feasible, bounded LP always solves
        raise RuntimeError(f"capacity allocation failed: {result.message}")
    take = result.x > 0.5
    assigned[rows[take]] = channels[take]
    return assigned


def open_to(gains: FloatArray, capacity: Mapping[int, int] | list[int]) -> np.ndarray:
    """(N, K): which customers may be offered each scarce channel while exploring.

    Exploration must not exceed a limit and must know its propensities before drawing, so the
    channel is opened to at most ``capacity[k]`` customers, fixed in advance: everyone it is
    allowed for when they fit, else the ``capacity[k]`` with the largest gains (ties: first
    rows). With one scarce channel, the customers a greedy allocation serves are among them.
    """
    gains = np.asarray(gains, dtype=np.float64)
    limits = np.asarray(list(capacity.values()) if isinstance(capacity, Mapping) else capacity)
    eligible = np.isfinite(gains)
    opened = np.zeros(gains.shape, dtype=bool)
    for k in range(gains.shape[1]):
        rows = np.flatnonzero(eligible[:, k])
        if len(rows) > limits[k]:
            order = np.argsort(-gains[rows, k], kind="stable")[: int(limits[k])]
            rows = rows[order]
        opened[rows, k] = True
    return opened

"""The customer-state store: event batches in, each customer's observed state and belief out.

Embedded by default: one SQLite file (:mod:`nba.store.database` says why), behind the
:class:`StateStore` interface that a server database can implement. :class:`CustomerStore` is
the embedded implementation; ``nba ingest`` drives it from the command line.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd

from nba.calibration.events import EventLog
from nba.store.customer_store import CustomerStore, IngestReport
from nba.store.database import StoreError, UnknownCustomerError


class StateStore(Protocol):
    """What the rest of ``nba`` needs from a customer-state store."""

    def ingest(self, log: EventLog, now: pd.Timestamp | str | None = None) -> IngestReport:
        """Add a batch of events (idempotent, one transaction) and update those customers."""
        ...

    def state(self, customer_ids: Any, as_of: pd.Timestamp | str | None = None) -> pd.DataFrame:
        """Observed state and belief summary in the scoring request's field names."""
        ...

    def belief(
        self, customer_ids: Any, as_of: pd.Timestamp | str | None = None
    ) -> tuple[pd.Index, np.ndarray]:
        """The joint belief over the latent parts."""
        ...

    def read(
        self, customer_ids: Any, as_of: pd.Timestamp | str | None = None
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """:meth:`state` and :meth:`belief`'s joint from one snapshot (``None``: everyone)."""
        ...

    def customer_ids(self) -> pd.Index:
        """Every customer held."""
        ...


__all__ = ["CustomerStore", "IngestReport", "StateStore", "StoreError", "UnknownCustomerError"]

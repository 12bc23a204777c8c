"""Adapters that turn the shared public data sets into :class:`~nba.calibration.events.EventLog`.

Each module reads one data set and documents every assumption it had to make.
"""

from nba.calibration.adapters.bank_marketing import bank_marketing as bank_marketing
from nba.calibration.adapters.completejourney import complete_journey as complete_journey
from nba.calibration.adapters.hillstrom import hillstrom as hillstrom

ADAPTERS = {
    "hillstrom": hillstrom,
    "completejourney": complete_journey,
    "bank_marketing": bank_marketing,
}

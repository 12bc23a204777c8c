"""The exceptions users see: every bad input surfaces as a ``ValueError`` subclass of ours."""

from __future__ import annotations


class NBAError(Exception):
    """Base class for every error raised on purpose by ``nba``."""


class NBAValidationError(NBAError, ValueError):
    """Bad input: the message names the field and the problem."""


class ScenarioError(NBAValidationError):
    """A scenario config that is malformed or inconsistent."""


class UnknownNameError(NBAValidationError):
    """A name (scenario, persona, channel, action, ...) that is not in the catalogue."""

"""Random scoring requests, and an oracle of what each one asks for, independent of the schema.

:class:`RequestFuzzer` draws requests: valid ones (history as counts, as timestamps in any
offset or both, consent given per channel or all off, decision times in the customer's own
offset around weekends, integer ids, small batches) and mutated ones that must be refused
(misspelt or unknown field names, wrong types, part of a history form, customer ids given
twice, timestamps in the future or unreadable, values out of range, odd column labels).

:func:`judge` checks one path's answer to one request from the raw request alone, with its own
few lines of rule code (not :mod:`nba.serving.schema`, not :mod:`nba.contact_rules`): a refused
request must raise :class:`~nba.serving.schema.ScoringInputError`; an accepted valid one must
honour what it said (consent per channel as given, no contact on a quiet day of the local
weekday, every cap from the given history, the global pressure cap). :data:`PATHS` builds the
callables for the dict, DataFrame and pyfunc paths; add more (HTTP) to the dict it returns.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

from nba.scenario import Scenario
from nba.serving.schema import ScoringInputError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
OFFSETS = [-10, -8, -5, -3.5, 0, 1, 2, 5.5, 9, 12, 14]  # hours east of UTC
MONDAY = datetime(2026, 11, 23, tzinfo=UTC)

#: a path answers a request with each row's channel (None: no contact), or raises
Path = Callable[["Case"], list[str | None]]


@dataclass
class Case:
    """One request: rows (one customer for the dict path), the call's ``as_of``, what to expect."""

    rows: list[dict[str, Any]]
    as_of: datetime | None
    kind: str  # "valid:..." or the mutation, e.g. "misspelt", "incomplete_history"
    refuse: bool  # the request must be refused
    frame_edit: str | None = None  # a column-label mutation only a DataFrame can carry

    @property
    def batch_only(self) -> bool:
        """Only a batch can carry it (several rows, duplicate ids, odd column labels)."""
        return len(self.rows) > 1 or self.frame_edit is not None


@dataclass
class Tally:
    """What one path did with the fuzzed requests."""

    requests: int = 0
    accepted: int = 0
    refused: int = 0
    skipped: int = 0  # requests this path cannot carry (a batch for the dict path)
    silently_not_honoured: Counter[str] = field(default_factory=Counter)
    foreign_exceptions: Counter[str] = field(default_factory=Counter)  # by exception type
    foreign_kinds: Counter[str] = field(default_factory=Counter)  # by request kind
    refused_valid: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.examples) < 5:
            self.examples.append(text)


class RequestFuzzer:
    """Draws :class:`Case` objects for one scenario from one seed."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.rng = np.random.default_rng(seed)
        rules = scenario.contact_rules
        self.capped = sorted({c for cap in rules.caps for c in cap.channels})
        self.days_fields = [f"days_since_{cap.name}" for cap in rules.caps]
        self.stamp_fields = [f"last_contact_{c}" for c in self.capped]
        self.consent_fields = [f"consent_{c}" for c in scenario.channel_names]
        self.counter = 0

    # ------------------------------------------------------------------ drawing helpers
    def _pick(self, options: list[Any]) -> Any:
        return options[int(self.rng.integers(len(options)))]

    def _chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def _zone(self) -> timezone:
        return timezone(timedelta(hours=self._pick(OFFSETS)))

    def _moment(self) -> datetime:
        """A decision time near a weekend in some offset (the local weekday matters)."""
        zone = self._zone()
        local_day = MONDAY + timedelta(days=int(self.rng.integers(-3, 4)))
        local = local_day.replace(tzinfo=None) + timedelta(minutes=int(self.rng.integers(0, 1440)))
        return local.replace(tzinfo=zone)

    def _spell(self, moment: datetime, naive_utc: bool = False) -> Any:
        """A timestamp written in one of the ways requests write them."""
        if naive_utc:  # naive means UTC
            utc = moment.astimezone(UTC).replace(tzinfo=None)
            return self._pick([utc.isoformat(), utc, pd.Timestamp(utc)])
        form = int(self.rng.integers(5))
        if form == 0:
            return moment.isoformat()
        if form == 1:
            return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
        if form == 2:
            return moment
        if form == 3:
            return pd.Timestamp(moment)
        return moment.astimezone(self._zone()).isoformat()

    def _identifier(self) -> Any:
        self.counter += 1
        return self._pick([f"c-{self.counter}", self.counter, np.int64(self.counter)])

    # ------------------------------------------------------------------ valid requests
    def valid_row(
        self, now: datetime, history: str, consent: list[str] | None, day: bool
    ) -> dict[str, Any]:
        """One valid customer; ``consent`` names the consent fields to give (None: all off)."""
        sc = self.scenario
        row: dict[str, Any] = {
            "customer_id": self._identifier(),
            "persona": self._pick(sc.persona_names),
            "stage": self._pick(sc.stage_names),
            "pressure": int(self.rng.integers(0, sc.contact_rules.pressure_capacity + 1)),
            "discount_habit": self._chance(0.3),
            "opted_out": self._chance(0.2),
        }
        if day:
            row["day"] = self._pick([0, 1, sc.horizon_days - 1])  # few tables to build
        if history in ("days", "both"):
            for name in self.days_fields:
                row[name] = int(self.rng.integers(1, 12))
        if history in ("stamps", "both"):
            for name in self.stamp_fields:
                if self._chance(0.3):
                    row[name] = None
                else:
                    ago = timedelta(minutes=int(self.rng.integers(0, 14 * 1440)))
                    row[name] = self._spell((now - ago).astimezone(self._zone()))
        for name in self.consent_fields if consent is None else consent:
            row[name] = False if consent is None else self._chance(0.5)
        return row

    def valid(self) -> Case:
        history = self._pick(["days", "stamps", "stamps", "both"])
        consent_form = self._pick(["persona", "some", "off"])
        consent: list[str] | None = []
        if consent_form == "some":
            consent = [name for name in self.consent_fields if self._chance(0.5)]
        elif consent_form == "off":
            consent = None
        day = self._chance(0.2)
        now = self._moment()
        in_rows = self._chance(0.5)
        naive = self._chance(0.15)
        stamp = self._spell(now, naive_utc=naive)
        size = 1 if self._chance(0.7) else int(self.rng.integers(2, 5))
        rows = []
        for _ in range(size):
            row = self.valid_row(now, history, consent, day)
            if in_rows:
                row["as_of"] = stamp
            rows.append(row)
        call = None if in_rows else (now.astimezone(UTC).replace(tzinfo=None) if naive else now)
        kind = f"valid:{history}:{consent_form}:{'row' if in_rows else 'call'}_as_of"
        return Case(rows, call, kind, refuse=False)

    # ------------------------------------------------------------------ mutations
    def mutated(self) -> Case:
        case = self.valid()
        row = case.rows[0]
        kind = self._pick(
            [
                "misspelt",
                "misspelt",
                "wrong_type",
                "wrong_type",
                "bad_id",
                "incomplete_history",
                "duplicate_id",
                "future_contact",
                "bad_timestamp",
                "unknown_value",
                "out_of_range",
                "missing_field",
                "frame_labels",
            ]
        )
        case.kind, case.refuse = kind, True
        if kind == "misspelt":
            name = self._pick(list(row))
            wrong = self._misspell(name)
            for each in case.rows:
                each[wrong] = each.pop(name)
        elif kind == "wrong_type":
            name = self._pick([k for k in row if k != "customer_id"])
            row[name] = self._wrong_value(name)
        elif kind == "bad_id":
            row["customer_id"] = self._pick(
                [1.5, 2.0, np.float64(3.0), True, b"c-1", ["c-1"], {"id": 1}, "", None, math.nan]
            )
        elif kind == "incomplete_history":
            stamps = [k for k in self.stamp_fields if k in row]
            form = stamps if stamps else [k for k in self.days_fields if k in row]
            keep = int(self.rng.integers(1, len(form))) if len(form) > 1 else 0
            drop = list(self.rng.permutation(form))[keep:]
            for each in case.rows:
                for name in drop:
                    each.pop(name, None)
        elif kind == "duplicate_id":
            twin = dict(row)
            if isinstance(row["customer_id"], int | np.integer) and self._chance(0.5):
                twin["customer_id"] = str(row["customer_id"])  # 7 and "7" print alike
            case.rows.append(twin)
        elif kind == "future_contact":
            now = self._now(case, row)
            for name in self.stamp_fields:
                row.pop(name, None)
                row[name] = None
            row[self._pick(self.stamp_fields)] = (now + timedelta(hours=2)).isoformat()
            self._same_keys(case)
        elif kind == "bad_timestamp":
            name = self._pick([*self.stamp_fields, "as_of"])
            if name.startswith("last_contact_"):
                for other in self.stamp_fields:
                    for each in case.rows:
                        each.setdefault(other, None)
            row[name] = self._pick(["yesterday", "2026-02-30", "2026-13-01T00:00:00Z", 17, True])
            self._same_keys(case)
        elif kind == "unknown_value":
            row[self._pick(["persona", "stage"])] = self._pick(["pirate", "Active", "", " lapsed"])
        elif kind == "out_of_range":
            sc = self.scenario
            name, value = self._pick(
                [
                    ("pressure", sc.contact_rules.pressure_capacity + 1),
                    ("pressure", -1),
                    ("day", sc.horizon_days),
                    ("day", -1),
                    *[(d, 0) for d in self.days_fields],
                    *[(d, -3) for d in self.days_fields],
                ]
            )
            if name.startswith("days_since_"):
                for each in case.rows:
                    for other in self.days_fields:
                        each.setdefault(other, 3)
            row[name] = value
            self._same_keys(case)
        elif kind == "missing_field":
            name = self._pick(
                ["customer_id", "persona", "stage", "pressure", "discount_habit", "opted_out"]
            )
            for each in case.rows:
                each.pop(name)
        else:
            case.frame_edit = self._pick(["duplicate", "multiindex", "integer_label", "dotted"])
        return case

    def _now(self, case: Case, row: dict[str, Any]) -> datetime:
        return as_utc(row.get("as_of", case.as_of))

    def _same_keys(self, case: Case) -> None:
        keys = set().union(*case.rows)
        for each in case.rows[1:]:
            for key in keys - each.keys():
                each[key] = case.rows[0][key]

    def _misspell(self, name: str) -> str:
        style = int(self.rng.integers(6))
        if style == 0:
            return name.capitalize() if name[0].islower() else name.lower()
        if style == 1:
            head, *rest = name.split("_")
            return head + "".join(part.capitalize() for part in rest) if rest else name.upper()
        if style == 2:
            return name + ".1"
        if style == 3:
            return name + " "
        if style == 4:
            i = int(self.rng.integers(len(name)))
            return name[:i] + name[i + 1 :] if len(name) > 1 else name + "x"
        return name.replace("_", "-") if "_" in name else name + "_"

    def _wrong_value(self, name: str) -> Any:
        if name in ("discount_habit", "opted_out") or name.startswith("consent_"):
            return self._pick(["yes", "true", 2, -1, 0.5, None, math.nan, [True], "False"])
        if name in ("pressure", "day") or name.startswith("days_since_"):
            return self._pick(["3", 1.5, True, None, math.nan, math.inf, [1], {"n": 1}, b"2"])
        if name in ("persona", "stage"):
            return self._pick([3, None, True, ["active"], b"active", 2.5])
        return self._pick([17, True, 1.5, ["2026-11-20"], {"t": 1}, b"2026-11-20"])

    def cases(self, n: int, refuse_share: float = 0.5) -> Iterable[Case]:
        for _ in range(n):
            yield self.mutated() if self._chance(refuse_share) else self.valid()


# ---------------------------------------------------------------------- the oracle
def as_utc(value: Any) -> datetime:
    """A timestamp the fuzzer wrote, as an aware UTC datetime (naive = UTC)."""
    moment = _moment_of(value)
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def local_weekday(value: Any) -> int:
    """The weekday on the timestamp's own wall clock (naive: UTC's)."""
    return _moment_of(value).weekday()


def _moment_of(value: Any) -> datetime:
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def expected_rules(scenario: Scenario, row: dict[str, Any], call_as_of: Any) -> dict[str, str]:
    """Per channel, why the request forbids contacting it (absent: allowed), from the raw row."""
    rules = scenario.contact_rules
    persona = next(p for p in scenario.personas if p.name == row["persona"])
    moment = row.get("as_of", call_as_of)
    weekday = WEEKDAYS[local_weekday(moment)]
    now = as_utc(moment)
    stamps_complete = all(f"last_contact_{c}" in row for cap in rules.caps for c in cap.channels)
    days: dict[str, int] = {}
    for cap in rules.caps:
        if stamps_complete:
            seen = [
                as_utc(row[f"last_contact_{c}"])
                for c in cap.channels
                if row[f"last_contact_{c}"] is not None
            ]
            if seen:
                elapsed = math.floor((now - max(seen)).total_seconds() / 86_400)
                days[cap.name] = min(max(elapsed, 1), cap.window_days)
            else:
                days[cap.name] = cap.window_days
        else:
            days[cap.name] = min(int(row[f"days_since_{cap.name}"]), cap.window_days)
    forbidden: dict[str, str] = {}
    for channel in scenario.channels:
        name = channel.name
        given = row.get(f"consent_{name}")
        consent = (
            (name in persona.consent or not channel.requires_consent)
            if given is None
            else bool(given)
        )
        if row["opted_out"] and channel.requires_consent:
            consent = False
        if not consent:
            forbidden[name] = "consent"
        elif weekday in rules.quiet_days.get(name, []):
            forbidden[name] = "quiet_day"
        elif int(row["pressure"]) + channel.pressure > rules.pressure_capacity:
            forbidden[name] = "pressure"
        else:
            for cap in rules.caps:
                if name in cap.channels and days[cap.name] < cap.window_days:
                    forbidden[name] = "cap"
    return forbidden


def judge(scenario: Scenario, case: Case, path: Path, tally: Tally) -> None:
    """Send one request through one path and record whether the answer honours it."""
    tally.requests += 1
    try:
        channels = path(case)
    except _Skip:
        tally.requests -= 1
        tally.skipped += 1
        return
    except ScoringInputError as exc:
        tally.refused += 1
        if not case.refuse:
            tally.refused_valid[case.kind.split(":")[0]] += 1
            tally.note(f"refused valid {case.kind}: {exc}")
        return
    except Exception as exc:  # the point: count what is not ours
        tally.foreign_exceptions[type(exc).__name__] += 1
        tally.foreign_kinds[case.kind.split(":")[0]] += 1
        tally.note(f"foreign {type(exc).__name__} on {case.kind}: {str(exc)[:200]}")
        return
    tally.accepted += 1
    if case.refuse:
        tally.silently_not_honoured[f"accepted_{case.kind}"] += 1
        tally.note(f"accepted {case.kind}: {case.rows!r:.300} (labels {case.frame_edit})")
        return
    if len(channels) != len(case.rows):
        tally.silently_not_honoured["row_count"] += 1
        return
    for row, channel in zip(case.rows, channels, strict=True):
        if channel is None:
            continue
        why = expected_rules(scenario, row, case.as_of).get(channel)
        if why:
            tally.silently_not_honoured[why] += 1
            tally.note(f"{why} broken on {channel}: {row!r:.300}")


class _Skip(Exception):
    """A request this path cannot carry."""


def frame_of(case: Case) -> pd.DataFrame:
    """The request as a DataFrame, with the case's column-label mutation applied."""
    frame = pd.DataFrame(case.rows)
    edit = case.frame_edit
    if edit == "duplicate":
        name = frame.columns[int(len(frame.columns) > 3)]
        frame = pd.concat([frame, frame[[name]]], axis=1)
    elif edit == "multiindex":
        frame.columns = pd.MultiIndex.from_tuples([(c, "") for c in frame.columns])
    elif edit == "integer_label":
        frame[0] = 1
    elif edit == "dotted":  # what read_csv makes of a repeated header
        frame["opted_out.1"] = ~frame["opted_out"].astype(bool)
    return frame


def _channel(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def dict_path(scorer: Any) -> Path:
    def run(case: Case) -> list[str | None]:
        if case.batch_only:
            raise _Skip
        return [scorer.score(case.rows[0], as_of=case.as_of).channel]

    return run


def frame_path(scorer: Any) -> Path:
    def run(case: Case) -> list[str | None]:
        decisions = scorer.score_batch(frame_of(case), as_of=case.as_of)
        return [_channel(v) for v in decisions["channel"].astype(object)]

    return run


def pyfunc_path(model: Any) -> Path:
    """``mlflow.pyfunc`` model's ``predict``: the call's ``as_of`` travels in the rows."""

    def run(case: Case) -> list[str | None]:
        if case.as_of is not None:
            stamp = case.as_of.isoformat()
            case = Case(
                [{**row, "as_of": row.get("as_of", stamp)} for row in case.rows],
                None,
                case.kind,
                case.refuse,
                case.frame_edit,
            )
        decisions = model.predict(frame_of(case))
        return [_channel(v) for v in decisions["channel"].astype(object)]

    return run


def paths(scorer: Any, model: Any | None = None) -> dict[str, Path]:
    """The paths to fuzz; add ``"http"`` (or more) to the returned dict."""
    found = {"dict": dict_path(scorer), "dataframe": frame_path(scorer)}
    if model is not None:
        found["pyfunc"] = pyfunc_path(model)
    return found


def run(scenario: Scenario, chosen: dict[str, Path], n: int, seed: int = 0) -> dict[str, Tally]:
    """``n`` fuzzed requests through every path (the same requests for each)."""
    cases = list(RequestFuzzer(scenario, seed).cases(n))
    tallies = {}
    for name, path in chosen.items():
        tally = tallies[name] = Tally()
        for case in cases:
            judge(scenario, case, path, tally)
    return tallies


# ------------------------------------------------------------------ over HTTP
def _jsonable(value: Any) -> Any:
    """A request value as a JSON client sends it (timestamps as ISO text, numpy as Python)."""
    if isinstance(value, bytes):
        raise _CannotCarry
    if isinstance(value, datetime):  # pd.Timestamp too
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


class _CannotCarry(Exception):
    """A value JSON cannot carry (bytes): no HTTP client can send that request."""


def http_path(url: str, headers: dict[str, str] | None = None) -> Path:
    """The fuzz oracle's path through ``nba serve``: one row to /decide, several to
    /decide/batch; 400 and 422 are refusals (our error), anything else but 200 is foreign."""
    import requests

    session = requests.Session()
    headers = {"Content-Type": "application/json", **(headers or {})}

    def encode_row(row: dict[str, Any], duplicate: str | None) -> str:
        text = json.dumps(_jsonable(row))
        if duplicate is not None:  # a repeated key, as a DataFrame with a repeated column
            again = json.dumps({duplicate: _jsonable(row[duplicate])})[1:]
            text = text[:-1] + ", " + again
        return text

    def run(case: Case) -> list[str | None]:
        rows = case.rows
        duplicate = None
        if case.frame_edit == "multiindex":
            raise _Skip
        if case.frame_edit == "integer_label":
            rows = [{**row, "0": 1} for row in rows]
        elif case.frame_edit == "dotted":
            rows = [{**row, "opted_out.1": not row["opted_out"]} for row in rows]
        elif case.frame_edit == "duplicate":
            duplicate = list(rows[0])[int(len(rows[0]) > 3)]
        stamp = None if case.as_of is None else _jsonable(case.as_of)
        try:
            if len(rows) == 1:
                row = rows[0] if stamp is None else {"as_of": stamp, **rows[0]}
                path, body = "/decide", encode_row(row, duplicate)
            else:
                encoded = ", ".join(encode_row(row, duplicate) for row in rows)
                extra = "" if stamp is None else f', "as_of": {json.dumps(stamp)}'
                path, body = "/decide/batch", f'{{"customers": [{encoded}]{extra}}}'
        except _CannotCarry:
            raise _Skip from None
        answer = session.post(url + path, data=body.encode(), headers=headers, timeout=30)
        if answer.status_code in (400, 422):
            raise ScoringInputError(answer.json()["error"])
        if answer.status_code != 200:
            raise RuntimeError(f"HTTP {answer.status_code}: {answer.text[:200]}")
        if len(rows) == 1:
            return [answer.json()["channel"]]
        return [decision["channel"] for decision in answer.json()["decisions"]]

    return run

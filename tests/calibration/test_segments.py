"""Audit segments: the restricted condition language selects what pandas' query selected, and
refuses anything that is not a condition, quickly, before reading a row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.calibration.events import EventLogError
from nba.calibration.segments import MAX_QUERY_CHARS, Segment


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 5_000
    frame = pd.DataFrame(
        {
            "recency_months": rng.integers(1, 13, n),
            "history": np.round(rng.gamma(2.0, 120.0, n), 2),
            "mens": rng.random(n) < 0.5,
            "womens": rng.random(n) < 0.5,
            "newbie": rng.random(n) < 0.4,
            "zip_code": rng.choice(["Urban", "Surburban", "Rural"], n),
            "channel": pd.Series(rng.choice(["Web", "Phone", None], n), dtype=object),
            "spend": np.where(rng.random(n) < 0.1, rng.gamma(2.0, 30.0, n), 0.0),
            "visits": rng.integers(0, 2, n),  # 0/1 numbers
            "emp.var.rate": rng.normal(0, 1.5, n),
        },
        index=rng.permutation(n) + 1_000,  # not a RangeIndex: rows are matched by position
    )
    frame.loc[frame.index[::7], "history"] = np.nan
    return frame


AS_PANDAS = [
    "newbie",
    "not newbie",
    "mens and not womens",
    "mens & ~womens",
    "(mens or womens) and not newbie",
    "mens | womens & newbie",
    "recency_months <= 3",
    "3 < recency_months <= 6",
    "history > 250.5 and zip_code == 'Rural'",
    'zip_code != "Urban"',
    "history >= -1e3",
    "zip_code in ['Rural', 'Urban']",
    "zip_code not in ('Rural',)",
    "recency_months in [1, 2, 3] or spend > 0",
    "recency_months > 3 & history < 200",
    "history != history",  # missing values, as pandas compares them
    "spend > 0",
    "`emp.var.rate` > 1.1",
    "channel == 'Web'",
    "newbie == True",
    "visits == 1 and mens",
]


@pytest.mark.parametrize("query", AS_PANDAS)
def test_selects_the_rows_pandas_selected(table: pd.DataFrame, query: str) -> None:
    expected = np.asarray(table.reset_index(drop=True).eval(query), dtype=bool)
    selected = Segment.parse("s", query).select(table)
    np.testing.assert_array_equal(selected, expected)
    assert selected.dtype == bool and 0 < selected.sum() < len(table)


def test_lowercase_booleans_bare_number_flags_and_column_pairs(table: pd.DataFrame) -> None:
    frame = table.reset_index(drop=True)
    assert (Segment.parse("s", "newbie == true").select(table) == frame["newbie"]).all()
    assert (Segment.parse("s", "visits").select(table) == (frame["visits"] == 1)).all()
    pairs = Segment.parse("s", "spend > history").select(table)
    np.testing.assert_array_equal(pairs, (frame["spend"] > frame["history"]).to_numpy())
    assert Segment.parse("s", "history > 0").columns == {"history"}


HOSTILE = [
    "__import__('os').system('touch /tmp/pwned')",
    "@var > 1",
    "newbie == @limit",
    "zip_code.str.len() > 3",
    "history.__class__",
    "len(zip_code) > 3",
    "(lambda: 1)()",
    "lambda x: x",
    "10**10**10 > history",
    "history > 10**10**10",
    "history > 2 ** 8",
    "history + 1 > 3",
    "zip_code[0] == 'R'",
    "[x for x in zip_code]",
    "(y := 3) > 1",
    "f'{history}' == '1'",
    "history > b'1'",
    "history > 1j",
    "'a' < 'b'",
    "1",
    "zip_code in history",
    "history if newbie else mens",
    "-zip_code > 1",
    "newbie; import os",
    "newbie\x00",
    "'''a & b''' == zip_code",
    "`unclosed > 1",
    "(" * 500 + "newbie" + ")" * 500,
    "nope >",
]


@pytest.mark.timeout(20, func_only=True)  # refused, not evaluated: no hang
@pytest.mark.parametrize("query", HOSTILE)
def test_refuses_anything_but_a_condition_quickly(table: pd.DataFrame, query: str) -> None:
    with pytest.raises(EventLogError, match=r"^segments\.bad: "):
        Segment.parse("bad", query).select(table)


def test_unknown_columns_and_mismatched_kinds_are_named(table: pd.DataFrame) -> None:
    with pytest.raises(EventLogError, match=r"segments\.x: unknown column\(s\) \['nwebie'\]"):
        Segment.parse("x", "nwebie and mens").select(table)
    with pytest.raises(EventLogError, match="column 'recency_months' holds numbers"):
        Segment.parse("x", "recency_months == '3'").select(table)  # would select nobody
    with pytest.raises(EventLogError, match="column 'zip_code' holds text"):
        Segment.parse("x", "zip_code in ['Rural', 3]").select(table)
    with pytest.raises(EventLogError, match="not true/false; compare it"):
        Segment.parse("x", "history").select(table)
    with pytest.raises(EventLogError, match=f"at most {MAX_QUERY_CHARS:,}"):
        Segment.parse("x", "newbie or " * 200 + "mens")
    with pytest.raises(EventLogError, match="expected a condition"):
        Segment.parse("x", "   ")


@pytest.mark.parametrize(
    ("segment", "message"),
    [
        ("y=__import__('os').system('touch pwned')", "segments.y: function calls: not allowed"),
        ("x=newbie", "--segment: 'x' is given twice"),
        ("no-equals-sign", "--segment: expected NAME=QUERY"),
    ],
)
def test_the_cli_refuses_bad_segments_before_reading_files(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    segment: str,
    message: str,
) -> None:
    from nba.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["audit", "-s", "missing.yaml", "-e", "missing.csv", "--segment", "x=newbie"]
    with pytest.raises(SystemExit) as exited:
        main([*args, "--segment", segment])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []

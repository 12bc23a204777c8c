"""Atomic writes: a reader sees the old file or the new one, never half, and no temp is left."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nba.io import write_with_atomic


def test_a_writer_that_fails_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "part.parquet"
    old = pd.DataFrame({"x": [1, 2]})
    write_with_atomic(target, lambda path: old.to_parquet(path, index=False))

    def half_then_fail(path: Path) -> None:
        path.write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_with_atomic(target, half_then_fail)
    pd.testing.assert_frame_equal(pd.read_parquet(target), old)
    assert [p.name for p in tmp_path.iterdir()] == ["part.parquet"]


def test_the_new_file_replaces_the_old_whole(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "part.parquet"
    new = pd.DataFrame({"x": [3]})
    write_with_atomic(target, lambda path: pd.DataFrame({"x": [1]}).to_parquet(path))
    write_with_atomic(target, lambda path: new.to_parquet(path, index=False))
    pd.testing.assert_frame_equal(pd.read_parquet(target), new)

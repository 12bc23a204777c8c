"""File output: crash-safe writes (a temporary sibling, fsync, then a rename over the target)
and CSV that spreadsheets open as data, never as formulas."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported where a frame is written: plain file writes stay light
    import pandas as pd


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_with_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Replace ``path`` with what ``write`` writes to the path it is given (a temporary file
    in the same folder, fsynced, then renamed): readers see the old or the new file, never
    half. For writers that want a path (``DataFrame.to_parquet``), not bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(Path(tmp_name))
        with open(tmp_name, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


# Spreadsheets run a cell that starts with one of these as a formula (CSV injection: OWASP's
# "CSV Injection" page); a leading single quote makes them show the text instead.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``'`` before every text cell or column name a spreadsheet would run.

    Only text is touched: numbers stay numbers (a negative number is not a formula), and so do
    booleans, timestamps and missing values. Categories are renamed, not expanded. Returns
    ``frame`` itself when nothing needs it.
    """
    out: pd.DataFrame | None = None
    for position in range(frame.shape[1]):
        fixed = _neutralise_column(frame.iloc[:, position])
        if fixed is not None:
            if out is None:
                out = frame.copy(deep=False)
            out.isetitem(position, fixed)
    names = [_neutralise_text(name) for name in frame.columns]
    if names != list(frame.columns):
        out = (frame if out is None else out).set_axis(names, axis=1)
    return frame if out is None else out


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as UTF-8 CSV without its index, formula-like text neutralised.

    Rows end in ``\n``; in ``\r\n`` (RFC 4180's) when some text holds a carriage return, so
    that the writer quotes those cells and readers do not take the return for a row's end.
    """
    safe = neutralise_formulas(frame)
    ending = "\r\n" if _holds_carriage_return(safe) else "\n"
    return safe.to_csv(index=False, lineterminator=ending).encode("utf-8")


def _neutralise_text(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _holds_carriage_return(frame: pd.DataFrame) -> bool:
    import pandas as pd

    if any(isinstance(name, str) and "\r" in name for name in frame.columns):
        return True
    for position in range(frame.shape[1]):
        series = frame.iloc[:, position]
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = pd.Series(series.dtype.categories)
        if not pd.api.types.is_string_dtype(series.dtype):
            continue
        try:
            found = series.str.contains("\r", regex=False)
        except AttributeError:  # an object column without any text
            continue
        if found.fillna(False).to_numpy(dtype=bool).any():
            return True
    return False


def _neutralise_column(series: pd.Series) -> pd.Series | None:
    """The column with formula-like text quoted, or ``None`` when it has none."""
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        categories = dtype.categories
        if not pd.api.types.is_string_dtype(categories.dtype):
            return None
        renamed = [_neutralise_text(c) for c in categories]
        if renamed == list(categories):
            return None
        return series.cat.rename_categories(renamed)
    if not pd.api.types.is_string_dtype(dtype):
        return None  # numbers, booleans, timestamps
    try:
        risky = series.str.startswith(FORMULA_PREFIXES)
    except AttributeError:  # an object column without any text
        return None
    risky = risky.fillna(False).to_numpy(dtype=bool)
    if not risky.any():
        return None
    fixed = series.astype(object)
    fixed[risky] = "'" + series[risky].astype(str)
    return fixed

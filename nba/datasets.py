"""The public data sets calibration and off-policy evaluation use, fetched as scikit-learn does.

``fetch_hillstrom()``, ``fetch_complete_journey()`` and ``fetch_bank_marketing()`` return the
event log of :mod:`nba.calibration.adapters`. The first call downloads the original files from
their public source into a cache; later calls read the cache and download nothing.

- The cache (the *data home*) is the ``data_home`` argument, else ``$NBA_DATA_HOME``, else
  ``$XDG_CACHE_HOME/nba``, else ``~/.cache/nba``. Its layout is one folder per data set
  (``hillstrom/hillstrom.csv``, ``completejourney/*.csv``,
  ``bank_marketing/bank-additional-full.csv``), so a folder laid out that way by hand works too.
- Every download is checked against the SHA-256 recorded here before it enters the cache, and
  enters it atomically (a temporary file renamed into place): a corrupted or truncated download
  is deleted and refused with :class:`ChecksumError`, never kept, and a crash leaves no partial
  file under the real name.
- ``mirror`` (or ``$NBA_DATA_MIRROR``) is a base URL laid out like the cache (``MIRROR/hillstrom/
  hillstrom.csv``), for teams that host the files themselves; the checksums still apply.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from nba.errors import NBAValidationError

if TYPE_CHECKING:
    from nba.calibration.events import EventLog

DATA_HOME_ENV = "NBA_DATA_HOME"
MIRROR_ENV = "NBA_DATA_MIRROR"
MAX_DOWNLOAD_BYTES = 256 << 20  # the largest file here is under 6 MB: a server sending more lies
TIMEOUT_S = 60.0
_CHUNK = 1 << 16
_SCHEMES = ("http", "https", "file")


class DataSetError(NBAValidationError):
    """A data set that cannot be had: unknown, absent with downloads off, or unreachable."""


class ChecksumError(DataSetError):
    """A file whose SHA-256 is not the recorded one (it was deleted, not cached)."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set: where it lives in the cache, its digest, and where it comes from.

    ``member`` names the file inside a zip archive at ``url``; ``url`` is None where the original
    publisher offers no direct download of this exact file (a ``mirror`` can still serve it).
    """

    path: str
    sha256: str
    url: str | None
    member: str | None = None


@dataclass(frozen=True)
class DataSet:
    """A data set: its files, which path the adapter reads, and where it comes from (cite it)."""

    name: str
    files: tuple[RemoteFile, ...]
    adapter_path: str
    source: str


_UCI_BANK = "https://archive.ics.uci.edu/ml/machine-learning-databases/00222/bank-additional.zip"
_HILLSTROM = (
    "http://www.minethatdata.com/"
    "Kevin_Hillstrom_MineThatData_E-MailAnalytics_DataMiningChallenge_2008.03.20.csv"
)


def _journey(name: str, sha256: str) -> RemoteFile:
    return RemoteFile(f"completejourney/{name}", sha256, None)


DATASETS: dict[str, DataSet] = {
    "hillstrom": DataSet(
        "hillstrom",
        (
            RemoteFile(
                "hillstrom/hillstrom.csv",
                "ff9e59285e9dc3f5fa3e0975419e6631ea5bdccd65d818991473d2367e02979c",
                _HILLSTROM,
            ),
        ),
        "hillstrom/hillstrom.csv",
        "Kevin Hillstrom, MineThatData E-Mail Analytics and Data Mining Challenge (2008); "
        "64,000 customers in three randomized arms.",
    ),
    "completejourney": DataSet(
        "completejourney",
        (
            _journey(
                "campaign_descriptions.csv",
                "e1e413b4c20f7aabb910ecf0bf8cb2eb02df9eb0c1d84235139505a9b56d4e0a",
            ),
            _journey(
                "campaigns.csv", "ff6dba03d78fab322835572556856b4d4ec8a95a8c1f1776d866f0de88dcdcca"
            ),
            _journey(
                "coupon_redemptions.csv",
                "97e666d52f41c6ccc9266eebbe31a754182317392f810c703f96b5d3a46cf1e0",
            ),
            _journey(
                "demographics.csv",
                "d8afe568aca05d68defbac4652f7989cc7acea9985912501109afb2b9d5d4409",
            ),
            _journey(
                "transactions_sample.csv",
                "9268c3f54b1d9f00ae843ee3b4856dc8db1994f901b79b075567e0aebd23ce9d",
            ),
        ),
        "completejourney",
        "84.51°/dunnhumby, The Complete Journey (CC0), as the tables of the R package "
        "completejourney (campaigns, coupon redemptions, demographics, transactions_sample); "
        "84.51° publishes no direct download of these CSV files: use a mirror or place them "
        "in the data home.",
    ),
    "bank_marketing": DataSet(
        "bank_marketing",
        (
            RemoteFile(
                "bank_marketing/bank-additional-full.csv",
                "74adfc578bf77a7ff4bb1ba4a9f8709d9e3c6907342959c2c8416847e0afb4d8",
                _UCI_BANK,
                member="bank-additional/bank-additional-full.csv",
            ),
            RemoteFile(
                "bank_marketing/bank-additional-names.txt",
                "10045462a4c026f858dffa159370c4270510230c1fc63c6c91ca51bba4b3df26",
                _UCI_BANK,
                member="bank-additional/bank-additional-names.txt",
            ),
        ),
        "bank_marketing/bank-additional-full.csv",
        "Moro, Cortez and Rita (2014), Bank Marketing, UCI Machine Learning Repository "
        "(CC BY 4.0); 41,188 phone contacts.",
    ),
}


def get_data_home(data_home: str | Path | None = None) -> Path:
    """The cache folder: the argument, else ``$NBA_DATA_HOME``, else the user's cache folder."""
    if data_home is not None and str(data_home) != "":
        return Path(data_home).expanduser()
    if os.environ.get(DATA_HOME_ENV):
        return Path(os.environ[DATA_HOME_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "nba"


def dataset_path(
    name: str,
    *,
    data_home: str | Path | None = None,
    download_if_missing: bool = True,
    mirror: str | None = None,
) -> Path:
    """The local path the data set's adapter reads (a file or a folder), downloading what is
    missing from the cache first."""
    dataset = _dataset(name)
    home = get_data_home(data_home)
    for file in dataset.files:
        target = home / file.path
        if target.is_file():
            continue
        if not download_if_missing:
            raise DataSetError(
                f"{name}: {str(target)!r} is absent and download_if_missing is False "
                f"(set {DATA_HOME_ENV} to the folder that holds it)"
            )
        _download(name, file, target, mirror if mirror is not None else os.environ.get(MIRROR_ENV))
    return home / dataset.adapter_path


def verify(name: str, *, data_home: str | Path | None = None) -> None:
    """Check every cached file of ``name`` against its recorded SHA-256 (raises on the first
    absent or different one). Fetching checks downloads; this checks a cache filled by hand."""
    home = get_data_home(data_home)
    for file in _dataset(name).files:
        target = home / file.path
        if not target.is_file():
            raise DataSetError(f"{name}: {str(target)!r} is absent")
        with target.open("rb") as handle:
            digest = _sha256(handle)
        if digest != file.sha256:
            raise ChecksumError(
                f"{name}: {str(target)!r} has SHA-256 {digest}, expected {file.sha256}"
            )


def fetch_hillstrom(
    *,
    data_home: str | Path | None = None,
    download_if_missing: bool = True,
    mirror: str | None = None,
) -> EventLog:
    """Hillstrom's randomized e-mail test as an event log (see ``adapters.hillstrom``)."""
    from nba.calibration.adapters import hillstrom

    path = dataset_path(
        "hillstrom", data_home=data_home, download_if_missing=download_if_missing, mirror=mirror
    )
    return hillstrom(path)


def fetch_complete_journey(
    *,
    data_home: str | Path | None = None,
    download_if_missing: bool = True,
    mirror: str | None = None,
) -> EventLog:
    """The Complete Journey's campaigns, redemptions and purchases as an event log."""
    from nba.calibration.adapters import complete_journey

    path = dataset_path(
        "completejourney",
        data_home=data_home,
        download_if_missing=download_if_missing,
        mirror=mirror,
    )
    return complete_journey(path)


def fetch_bank_marketing(
    *,
    data_home: str | Path | None = None,
    download_if_missing: bool = True,
    mirror: str | None = None,
) -> EventLog:
    """The UCI bank's outbound phone campaigns as an event log."""
    from nba.calibration.adapters import bank_marketing

    path = dataset_path(
        "bank_marketing",
        data_home=data_home,
        download_if_missing=download_if_missing,
        mirror=mirror,
    )
    return bank_marketing(path)


def _dataset(name: str) -> DataSet:
    if name not in DATASETS:
        raise DataSetError(f"data set {name!r} is unknown; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def _source(name: str, file: RemoteFile, mirror: str | None) -> tuple[str, str | None]:
    """The URL to download and the archive member to take from it."""
    if mirror:
        return f"{mirror.rstrip('/')}/{urllib.parse.quote(file.path)}", None
    if file.url is None:
        raise DataSetError(
            f"{name}: {file.path} has no public download; place it under {DATA_HOME_ENV} "
            f"or set {MIRROR_ENV} to a server laid out like the data home"
        )
    return file.url, file.member


def _download(name: str, file: RemoteFile, target: Path, mirror: str | None) -> None:
    """Fetch one file into ``target``: into a scratch folder beside it, checked, then renamed
    (same file system, so the rename is atomic; the scratch folder goes whatever happens)."""
    url, member = _source(name, file, mirror)
    if urllib.parse.urlsplit(url).scheme not in _SCHEMES:
        raise DataSetError(f"{name}: {url!r} is not an http(s) or file URL")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as scratch:
        received = Path(scratch) / "received"
        _receive(name, url, received)
        content = received if member is None else _extract(name, url, received, member)
        with content.open("rb") as handle:
            digest = _sha256(handle)
        if digest != file.sha256:
            raise ChecksumError(
                f"{name}: {file.path} downloaded from {url} has SHA-256 {digest}, expected "
                f"{file.sha256}; the download was deleted"
            )
        os.replace(content, target)


def _receive(name: str, url: str, path: Path) -> None:
    """Stream ``url`` into ``path``, refusing more than :data:`MAX_DOWNLOAD_BYTES`."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, path.open("wb") as out:
            received = 0
            while chunk := response.read(_CHUNK):
                received += len(chunk)
                if received > MAX_DOWNLOAD_BYTES:
                    raise DataSetError(f"{name}: {url} sent over {MAX_DOWNLOAD_BYTES:,} bytes")
                out.write(chunk)
    except OSError as error:  # URLError, HTTPError and timeouts are OSErrors
        raise DataSetError(f"{name}: cannot download {url}: {error}") from None


def _extract(name: str, url: str, archive: Path, member: str) -> Path:
    """``member`` of the zip ``archive``, copied beside it (streamed: never whole in memory)."""
    out = archive.with_name("member")
    try:
        with zipfile.ZipFile(archive) as zipped, zipped.open(member) as source:
            with out.open("wb") as handle:
                shutil.copyfileobj(source, handle, _CHUNK)
    except (zipfile.BadZipFile, KeyError) as error:
        raise ChecksumError(
            f"{name}: {url} is not a zip archive holding {member}: {error}"
        ) from None
    return out


def _sha256(handle: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()

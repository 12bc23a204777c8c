"""nba.datasets: fetchers that download once into a checked cache, then read it.

No test reaches the network: the real files come from the data home (``NBA_DATA_HOME``, the
shared folder by default), and downloads come from a file server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest

from nba import datasets
from nba.calibration.events import EventLog
from nba.datasets import (
    DATASETS,
    ChecksumError,
    DataSet,
    DataSetError,
    RemoteFile,
    dataset_path,
    get_data_home,
    verify,
)
from tests.servers import serve_folder


def _no_network(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a fetch from a filled cache must not download")


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_recorded_checksums_are_those_of_the_data_home(data_home: Path, name: str) -> None:
    verify(name, data_home=data_home)  # raises on the first absent or different file


@pytest.mark.parametrize(
    ("fetch", "customers"),
    [
        (datasets.fetch_hillstrom, 64_000),
        (datasets.fetch_bank_marketing, 41_188),
        (datasets.fetch_complete_journey, None),
    ],
    ids=["hillstrom", "bank_marketing", "completejourney"],
)
def test_fetchers_read_the_data_home_without_downloading(
    data_home: Path, monkeypatch: pytest.MonkeyPatch, fetch: Any, customers: int | None
) -> None:
    monkeypatch.setenv("NBA_DATA_HOME", str(data_home))
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    log = fetch()
    assert isinstance(log, EventLog)
    if customers is not None:
        assert len(log.customer_ids) == customers
    else:
        assert len(log.customer_ids) > 2_000  # about 2,500 households


def _copy(data_home: Path, relative: str, into: Path) -> Path:
    target = into / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data_home / relative, target)
    return target


def test_a_download_is_checked_cached_and_not_repeated(data_home: Path, tmp_path: Path) -> None:
    served = tmp_path / "mirror"
    _copy(data_home, "hillstrom/hillstrom.csv", served)
    cache = tmp_path / "cache"
    with serve_folder(served) as server:
        log = datasets.fetch_hillstrom(data_home=cache, mirror=server.url)
        assert server.requests == ["/hillstrom/hillstrom.csv"]
        again = datasets.fetch_hillstrom(data_home=cache, mirror=server.url)
        assert server.requests == ["/hillstrom/hillstrom.csv"]  # the cache answered
    cached = cache / "hillstrom" / "hillstrom.csv"
    assert cached.read_bytes() == (data_home / "hillstrom" / "hillstrom.csv").read_bytes()
    assert [p.name for p in cached.parent.iterdir()] == ["hillstrom.csv"]  # no scratch left
    assert len(log.customer_ids) == len(again.customer_ids) == 64_000


def test_a_corrupted_download_is_refused_and_not_kept(data_home: Path, tmp_path: Path) -> None:
    served = tmp_path / "mirror"
    corrupted = _copy(data_home, "hillstrom/hillstrom.csv", served)
    data = bytearray(corrupted.read_bytes())
    data[1_000] ^= 1  # one bit
    corrupted.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with serve_folder(served) as server:
        with pytest.raises(ChecksumError, match=r"hillstrom: hillstrom/hillstrom\.csv downloaded"):
            dataset_path("hillstrom", data_home=cache, mirror=server.url)
        assert list((cache / "hillstrom").iterdir()) == []  # neither the file nor scratch
        with pytest.raises(ChecksumError):  # and the next call downloads again, refused again
            dataset_path("hillstrom", data_home=cache, mirror=server.url)
        assert len(server.requests) == 2


@pytest.fixture
def toy_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, bytes]:
    """A data set ``toy`` published as a member of a zip archive, as UCI publishes the bank's."""
    content = b"a;b\n1;2\n" * 100
    served = tmp_path / "site"
    served.mkdir()
    with zipfile.ZipFile(served / "toy.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("toy/readme.txt", b"not this one")
        archive.writestr("toy/toy.csv", content)
    digest = hashlib.sha256(content).hexdigest()
    remote = RemoteFile("toy/toy.csv", digest, "placeholder", member="toy/toy.csv")
    monkeypatch.setitem(DATASETS, "toy", DataSet("toy", (remote,), "toy/toy.csv", "a test"))
    return served, content


def test_an_archive_member_is_extracted_checked_and_cached(
    toy_archive: tuple[Path, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, content = toy_archive
    with serve_folder(served) as server:
        remote = DATASETS["toy"].files[0]
        url = f"{server.url}/toy.zip"
        toy = DataSet("toy", (RemoteFile(remote.path, remote.sha256, url, remote.member),), "", "")
        monkeypatch.setitem(DATASETS, "toy", toy)
        path = dataset_path("toy", data_home=tmp_path / "cache")
        assert path == tmp_path / "cache"  # the adapter path "" is the data home itself
        assert (path / "toy" / "toy.csv").read_bytes() == content
        broken = DataSet(
            "toy", (RemoteFile("toy/other.csv", "0" * 64, url, "toy/nope.csv"),), "", ""
        )
        monkeypatch.setitem(DATASETS, "toy", broken)
        with pytest.raises(ChecksumError, match=r"not a zip archive holding toy/nope\.csv"):
            dataset_path("toy", data_home=tmp_path / "cache")
        assert server.requests == ["/toy.zip", "/toy.zip"]
    assert sorted(p.name for p in (tmp_path / "cache" / "toy").iterdir()) == ["toy.csv"]


def test_unreachable_unknown_and_offline_are_our_errors(tmp_path: Path) -> None:
    with serve_folder(tmp_path) as server:
        with pytest.raises(DataSetError, match=r"hillstrom: cannot download .*404"):
            dataset_path("hillstrom", data_home=tmp_path / "cache", mirror=server.url)
    with pytest.raises(DataSetError, match=r"data set 'nope' is unknown; known: hillstrom"):
        dataset_path("nope", data_home=tmp_path)
    with pytest.raises(DataSetError, match=r"is absent and download_if_missing is False"):
        datasets.fetch_bank_marketing(data_home=tmp_path / "empty", download_if_missing=False)
    with pytest.raises(DataSetError, match=r"campaign_descriptions\.csv has no public download"):
        datasets.fetch_complete_journey(data_home=tmp_path / "empty", mirror="")
    with pytest.raises(DataSetError, match=r"'ftp://x/hillstrom/hillstrom\.csv' is not an http"):
        dataset_path("hillstrom", data_home=tmp_path / "cache", mirror="ftp://x")


def test_a_server_sending_too_much_is_cut_off(
    data_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "mirror"
    _copy(data_home, "hillstrom/hillstrom.csv", served)
    monkeypatch.setattr(datasets, "MAX_DOWNLOAD_BYTES", 1 << 20)
    with serve_folder(served) as server:
        with pytest.raises(DataSetError, match=r"sent over 1,048,576 bytes"):
            dataset_path("hillstrom", data_home=tmp_path / "cache", mirror=server.url)
    assert list((tmp_path / "cache" / "hillstrom").iterdir()) == []


def test_verify_names_a_changed_file(data_home: Path, tmp_path: Path) -> None:
    copied = _copy(data_home, "hillstrom/hillstrom.csv", tmp_path)
    copied.write_bytes(copied.read_bytes() + b"\n")
    with pytest.raises(ChecksumError, match=r"hillstrom\.csv' has SHA-256 [0-9a-f]{64}, expected"):
        verify("hillstrom", data_home=tmp_path)


def test_the_data_home_is_the_argument_then_the_variable_then_the_user_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NBA_DATA_HOME", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert get_data_home(tmp_path / "arg") == tmp_path / "arg"
    assert get_data_home() == tmp_path / "env"
    monkeypatch.delenv("NBA_DATA_HOME")
    assert get_data_home() == tmp_path / "xdg" / "nba"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert get_data_home() == tmp_path / "home" / ".cache" / "nba"

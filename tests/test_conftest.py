"""The test-data policy of tests/conftest.py: absent data skips locally and fails under CI."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

USES_DATA = """
def test_reads_the_data(shared_data):
    assert shared_data.is_dir()


def test_reads_the_data_home(data_home):
    assert data_home.is_dir()
"""


@pytest.fixture
def tiny(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A test file that needs the data, with our conftest's fixtures and nothing else."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv("CI", raising=False)
    pytester.makeconftest("from tests.conftest import data_home, shared_data  # noqa: F401\n")
    pytester.makepyfile(test_tiny=USES_DATA)
    return pytester


def _run(tiny: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, home: Path) -> pytest.RunResult:
    monkeypatch.setenv("NBA_DATA_HOME", str(home))
    return tiny.runpytest_subprocess("-p", "no:cacheprovider", "-rs")


def test_missing_data_fails_under_ci(
    tiny: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CI", "true")
    result = _run(tiny, monkeypatch, tmp_path / "absent")
    result.assert_outcomes(errors=2)  # the fixture fails: each test errors at setup
    result.stdout.fnmatch_lines(["*CI=true: missing test data fails instead of skipping*"])


def test_missing_data_skips_locally_with_the_reason(
    tiny: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = _run(tiny, monkeypatch, tmp_path / "absent")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines([f"*data sets not available: {tmp_path / 'absent'} is absent*"])


def test_present_data_runs_under_ci(
    tiny: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CI", "true")
    result = _run(tiny, monkeypatch, tmp_path)
    result.assert_outcomes(passed=2)

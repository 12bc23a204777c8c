"""Build the wheel and import every subpackage from it in a fresh environment."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = [
    "nba",
    "nba.envs",
    "nba.training",
    "nba.serving",
    "nba.scenarios",
    "nba.store",
    "nba.loop",
    "nba.scale",
]


@pytest.mark.slow
def test_wheel_installs_every_subpackage(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = dist.glob("nba-*.whl")
    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    )
    # Third-party dependencies come from this environment's site-packages on PYTHONPATH
    # (.pth files there, such as an editable install of nba, are not processed on that path).
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    probe = (
        "import importlib, pathlib, sys\n"
        f"mods = [importlib.import_module(m) for m in {SUBPACKAGES!r}]\n"
        "root = pathlib.Path(sys.prefix).resolve()\n"
        "for m in mods:\n"
        "    assert root in pathlib.Path(m.__file__).resolve().parents, (m, m.__file__)\n"
        "import nba\n"
        "assert (pathlib.Path(nba.__file__).parent / 'py.typed').exists()\n"
        "from nba.training.config import default_hyperparameters\n"
        "assert default_hyperparameters('ppo', 'retail').env.n_envs > 0\n"
        "print(nba.load_scenario('retail').name, nba.__version__)\n"
    )
    completed = subprocess.run(
        [str(python), "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["retail", "0.1.0"]

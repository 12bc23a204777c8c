"""Every ```python block of README.md runs as written, in seconds, in an empty directory.

Each block runs in a fresh interpreter with an empty working directory, as a reader who
copies it would run it, so the README cannot drift from the code. A block that needs
something only an earlier step makes (the model `make run` registers) says so in an HTML
comment on the line before it, ``<!-- readme-test: needs a registered model -->``, and the
test makes that thing first with the setup named here; nothing else is added to the block.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TIMEOUT_S = 120  # per block; every block is meant to take seconds

# An untrained (seeded) PPO policy exported and registered as nba-retail@candidate in
# ./mlflow.db, the store and name `make run` registers to.
REGISTERED_MODEL = """
from pathlib import Path

from mlflow.tracking import MlflowClient
from stable_baselines3 import PPO

from nba.envs import TwinVecEnv
from nba.scenarios import load_scenario
from nba.serving.export import export_policy

scenario = load_scenario("retail")
model = PPO("MlpPolicy", TwinVecEnv(scenario, n_envs=4, seed=0), seed=0, device="cpu")
export_policy(model, scenario, "untrained_policy", algo="ppo")
client = MlflowClient("sqlite:///mlflow.db")
experiment = client.create_experiment(
    "nba", artifact_location=Path("mlartifacts").resolve().as_uri()
)
run = client.create_run(experiment)
client.log_artifacts(run.info.run_id, "untrained_policy", "policy")
client.create_registered_model("nba-retail")
client.create_model_version("nba-retail", f"{run.info.artifact_uri}/policy", run.info.run_id)
client.set_registered_model_alias("nba-retail", "candidate", "1")
"""

SETUPS = {"needs a registered model": REGISTERED_MODEL}
# sections whose prose quotes what their block prints, line by line in backticks
QUOTES_OUTPUT = {"Off-policy evaluation"}
SLOW = {"needs a registered model"}  # the setup imports torch and creates an MLflow store

BLOCK = re.compile(
    r"(?:<!-- readme-test: (?P<marker>[^>]*?) -->\n)?```python\n(?P<code>.*?)^```", re.S | re.M
)


@dataclass(frozen=True)
class Block:
    section: str
    line: int
    marker: str | None
    code: str


def readme_blocks(text: str) -> list[Block]:
    """The python blocks of ``text``, each with its section heading and optional marker."""
    blocks = []
    for match in BLOCK.finditer(text):
        headings = re.findall(r"^#+ (.+)$", text[: match.start()], re.M)
        blocks.append(
            Block(
                section=headings[-1] if headings else "top",
                line=text.count("\n", 0, match.start("code")) + 1,
                marker=match["marker"],
                code=match["code"],
            )
        )
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def _param(block: Block) -> object:
    slow = [pytest.mark.slow] if block.marker in SLOW else []
    name = re.sub(r"[^a-z0-9]+", "-", block.section.lower()).strip("-")
    return pytest.param(block, id=f"{name}-line{block.line}", marks=slow)


def _run(code: str, cwd: Path, name: str) -> subprocess.CompletedProcess[str]:
    script = cwd / name
    script.write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_the_readme_has_its_python_examples() -> None:
    sections = {block.section for block in BLOCKS}
    assert {"Using it from Python", "Serving", "Environments", "Off-policy evaluation"} <= sections
    # a code fence typed as "py" or with trailing spaces would silently escape the test
    fences = re.findall(r"^```(\S*)\s*$", README.read_text(encoding="utf-8"), re.M)
    assert "py" not in fences and fences.count("python") == len(BLOCKS)


def test_every_marker_names_a_known_setup() -> None:
    unknown = {block.marker for block in BLOCKS if block.marker} - set(SETUPS)
    assert not unknown, f"README markers without a setup in tests/test_readme.py: {unknown}"


def test_blocks_are_found_with_their_markers() -> None:
    text = "# A\n```python\nx = 1\n```\n## B\n<!-- readme-test: needs a registered model -->\n"
    text += "```python\ny = 2\n```\n"
    blocks = readme_blocks(text)
    assert [(b.section, b.marker, b.code) for b in blocks] == [
        ("A", None, "x = 1\n"),
        ("B", "needs a registered model", "y = 2\n"),
    ]


@pytest.mark.parametrize("block", [_param(block) for block in BLOCKS])
def test_readme_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    if block.marker is not None:
        setup = _run(SETUPS[block.marker], tmp_path, "readme_setup.py")
        assert setup.returncode == 0, setup.stderr[-3000:]
    result = _run(block.code, tmp_path, "readme_block.py")
    assert result.returncode == 0, (
        f"README.md line {block.line} ({block.section}) failed:\n{result.stderr[-3000:]}"
    )
    if block.section in QUOTES_OUTPUT:
        printed = result.stdout.splitlines()
        text = README.read_text(encoding="utf-8")
        assert printed and all(f"`{line}`" in text for line in printed), result.stdout

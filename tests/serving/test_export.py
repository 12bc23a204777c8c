from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import DQN, PPO

from nba.envs import TwinVecEnv
from nba.errors import NBAValidationError
from nba.features import FeatureBuilder
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.serving.export import export_policy
from nba.serving.scorer import PolicyScorer
from nba.serving.spec import (
    SIGNATURE_FILE,
    SIGNING_KEY_ENV,
    SPEC_FILE,
    WEIGHTS_FILE,
    PolicyFormatError,
    UnverifiedExportWarning,
    default_signing_key,
    load_exported,
    sign_export,
)


@pytest.mark.parametrize("algo", [PPO, MaskablePPO, DQN])
def test_numpy_network_reproduces_torch(retail: Scenario, tmp_path: Path, algo) -> None:
    env = TwinVecEnv(retail, n_envs=8, seed=0)
    kwargs = {"policy_kwargs": {"net_arch": [32, 16]}}
    model = algo("MlpPolicy", env, seed=0, device="cpu", **kwargs)
    export_policy(model, retail, tmp_path, algo=algo.__name__.lower(), value_scale=2.0)
    exported = load_exported(tmp_path)
    env.reset()
    obs = FeatureBuilder(ScenarioArrays.from_scenario(retail)).build(env.twin.state, env.twin.day)
    with torch.no_grad():
        tensor = torch.as_tensor(obs)
        if algo is DQN:
            expected = model.policy.q_net(tensor).numpy()
        else:
            expected = model.policy.get_distribution(tensor).distribution.logits.numpy()
            value = model.policy.predict_values(tensor).numpy()[:, 0]
            np.testing.assert_allclose(
                exported.value.forward(obs)[:, 0] * 2.0, value * 2.0, rtol=1e-5, atol=1e-5
            )
    actual = exported.policy.forward(obs)
    if algo is not DQN:  # logits are defined up to a constant: compare log-softmax
        actual = actual - np.log(np.exp(actual).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
    spec = json.loads((tmp_path / "policy.json").read_text())
    assert spec["scenario_fingerprint"] == retail.fingerprint()
    assert [a["name"] for a in spec["actions"]] == retail.action_names


def test_loading_never_unpickles(retail: Scenario, tmp_path: Path) -> None:
    model = PPO("MlpPolicy", TwinVecEnv(retail, n_envs=4), device="cpu")
    export_policy(model, retail, tmp_path, algo="ppo")
    # a pickled object array in place of a weight must be refused, not executed
    weights = dict(np.load(tmp_path / "weights.npz"))
    weights["policy.0.weight"] = np.array([object()], dtype=object)
    np.savez(tmp_path / "weights.npz", **weights)
    with pytest.raises(PolicyFormatError, match="plain arrays"):
        load_exported(tmp_path)


def test_bad_exports_are_refused(retail: Scenario, tmp_path: Path) -> None:
    with pytest.raises(PolicyFormatError, match=r"missing policy\.json"):
        load_exported(tmp_path)
    model = PPO("MlpPolicy", TwinVecEnv(retail, n_envs=4), device="cpu")
    export_policy(model, retail, tmp_path, algo="ppo")
    spec = json.loads((tmp_path / "policy.json").read_text())
    spec["scenario_fingerprint"] = "0" * 64
    (tmp_path / "policy.json").write_text(json.dumps(spec))
    with pytest.raises(PolicyFormatError, match="scenario_fingerprint"):
        load_exported(tmp_path)


def test_loading_an_export_does_not_import_torch(retail: Scenario, tmp_path: Path) -> None:
    model = PPO("MlpPolicy", TwinVecEnv(retail, n_envs=4), device="cpu")
    export_policy(model, retail, tmp_path, algo="ppo")
    probe = (
        "import sys\n"
        "from nba.serving.scorer import PolicyScorer\n"
        f"scorer = PolicyScorer.load({str(tmp_path)!r})\n"
        "import pandas as pd\n"
        "row = {'customer_id': 'c1', 'persona': 'deal_seeker', 'stage': 'aware', 'pressure': 0,"
        " 'discount_habit': False, 'opted_out': False, 'days_since_direct': 7,"
        " 'days_since_messaging': 2}\n"
        "print(scorer.score(row).action_name)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr


KEY = b"a team secret of 32 bytes ......"


def _relaxed_copy(source: Path, folder: Path) -> Path:
    """The attack: every persona consents to every channel, fingerprint recomputed to match."""
    shutil.copytree(source, folder)
    spec = json.loads((folder / SPEC_FILE).read_text())
    channels = [c["name"] for c in spec["scenario"]["channels"]]
    for persona in spec["scenario"]["personas"]:
        persona["consent"] = channels
    spec["scenario_fingerprint"] = Scenario.from_dict(spec["scenario"]).fingerprint()
    (folder / SPEC_FILE).write_text(json.dumps(spec))
    return folder


def _unverified(record: list[warnings.WarningMessage]) -> int:
    return sum(issubclass(w.category, UnverifiedExportWarning) for w in record)


def test_a_relaxed_consent_export_never_loads_silently(
    export_dir: Path, retail: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    relaxed = _relaxed_copy(export_dir, tmp_path / "relaxed")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert load_exported(relaxed).scenario.personas[0].consent != retail.personas[0].consent
    assert _unverified(record) == 1  # neither key nor trusted scenario: loads, and says so
    with pytest.raises(PolicyFormatError, match="differs from the trusted scenario") as info:
        load_exported(relaxed, trusted_scenario=retail)
    assert "personas[0].consent: export ['email', 'sms'" in str(info.value)
    assert "trusted ['email', 'direct_mail']" in str(info.value)
    with pytest.raises(PolicyFormatError, match=r"personas\[1\]\.consent"):
        PolicyScorer.load(relaxed, trusted_scenario="retail")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        scorer = PolicyScorer.load(export_dir, trusted_scenario="retail")
    assert _unverified(record) == 0 and scorer.policy.scenario == retail
    # with the team's key configured, the unsigned relaxed export is refused outright
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY.decode())
    with pytest.raises(PolicyFormatError, match="not signed"):
        load_exported(relaxed)


def test_signed_exports_load_and_any_change_after_signing_is_refused(
    retail: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    model = PPO("MlpPolicy", TwinVecEnv(retail, n_envs=4), device="cpu", seed=0)
    signed = export_policy(model, retail, tmp_path / "signed", algo="ppo", signing_key=KEY)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        load_exported(signed, signing_key=KEY)
        monkeypatch.setenv(SIGNING_KEY_ENV, KEY.decode())
        PolicyScorer.load(signed)  # the key from NBA_SIGNING_KEY
    assert _unverified(record) == 0
    with pytest.raises(PolicyFormatError, match="signed with another key"):
        load_exported(signed, signing_key=b"another key of at least 16 bytes")
    # the relaxed-consent edit on a signed export: the signature no longer matches
    relaxed = _relaxed_copy(signed, tmp_path / "relaxed")
    with pytest.raises(PolicyFormatError, match="signature does not match"):
        load_exported(relaxed)
    # so does a changed weight
    changed = Path(shutil.copytree(signed, tmp_path / "changed"))
    with np.load(changed / WEIGHTS_FILE) as archive:
        weights = {name: archive[name] for name in archive.files}
    weights["policy.2.bias"] = weights["policy.2.bias"] + 1.0
    np.savez(changed / WEIGHTS_FILE, **weights)
    with pytest.raises(PolicyFormatError, match="signature does not match"):
        load_exported(changed)
    # re-exporting without a key removes the old signature: the export is unsigned, refused
    export_policy(model, retail, signed, algo="ppo")
    assert not (signed / SIGNATURE_FILE).exists()
    with pytest.raises(PolicyFormatError, match="not signed"):
        load_exported(signed)


def test_signing_keys_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SIGNING_KEY_ENV, "short")
    with pytest.raises(NBAValidationError, match=r"NBA_SIGNING_KEY: .*at least 16 bytes, got 5"):
        default_signing_key()
    monkeypatch.setenv(SIGNING_KEY_ENV, "")
    assert default_signing_key() is None
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY.decode())
    assert default_signing_key() == KEY
    with pytest.raises(NBAValidationError, match="signing_key"):
        sign_export(b"{}", b"", b"123")

"""``nba cycle``'s exit-0 path: a challenger that clears the gate becomes the champion and
decides the next day.

The evidence is arranged so the gate must promote: the champion is deliberately crippled (its
action layer zeroed, a hair of bias on ``direct_mail_catalogue``, the costliest contact the
rules let this site make: it mails a catalogue to everyone it may, no action to the rest), and
the logged day's outcomes say a catalogue earns nothing while every other decision earns a
purchase. The challenger, warm-started from it, learns on the twin that a catalogue costs 0.9 a
send and moves off it (its logit falls furthest of all actions); off-policy on the log its lower
bound then clears the champion's estimate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from mlflow.tracking import MlflowClient
from stable_baselines3.common.callbacks import BaseCallback

from nba.loop.cycle import CycleSettings, ExitCode, run_cycle
from nba.scenarios import load_scenario
from tests.loop import test_cycle as cycle_tests
from tests.training.conftest import TINY_RUN

HISTORY_DAYS, MODEL, MONDAY = cycle_tests.HISTORY_DAYS, cycle_tests.MODEL, cycle_tests.MONDAY
world, site = cycle_tests.world, cycle_tests.site  # its fixtures (a store, batch, champion, log)

MAIL = load_scenario("retail").action_names.index("direct_mail_catalogue")
DAY = MONDAY + pd.Timedelta(days=HISTORY_DAYS)  # the logged day: the batch's first
PURCHASE = 50.0


class Cripple(BaseCallback):
    """At the end of training, a policy that prefers a catalogue (where allowed) by a hair."""

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        layer = self.model.policy.action_net
        with torch.no_grad():
            layer.weight.zero_()
            layer.bias.zero_()
            layer.bias[MAIL] = 1e-4


def _crippled_champion(site: Path, world: dict[str, Any], uri: str) -> str:
    """Register the crippled policy (same network shape as the cycle's) as ``champion``."""
    from nba.training import train

    result = train(
        scenario="retail",
        observation="belief",
        config=world["config"],
        register_model=True,
        model_name=MODEL,
        tracking_uri=uri,
        output_dir=str(site / "runs"),
        checkpoint_dir=str(site / "checkpoints"),
        callbacks=[Cripple()],
        **{**TINY_RUN, "timesteps": 512, "eval_every_steps": 512},
    )
    version = str(result.model_version)
    MlflowClient(uri).set_registered_model_alias(MODEL, "champion", version)
    return version


def _catalogues_earn_nothing(site: Path) -> None:
    """The batch's logged day rewritten: a purchase for each decision but a catalogue."""
    from nba.ope.decision_log import read_decision_log

    logged = read_decision_log(site / "decisions.db", None)
    buyers = logged.customer_id.astype(str)[logged.action != MAIL]
    batch = pd.read_parquet(site / "new.parquet")
    that_day = (batch["timestamp"] >= DAY) & (batch["timestamp"] < DAY + pd.Timedelta(days=1))
    kept = batch[~(that_day & batch["event"].isin(["purchased", "redeemed"]))]
    bought = pd.DataFrame(
        {
            "customer_id": buyers,
            "timestamp": DAY + pd.Timedelta(hours=15),
            "event": "purchased",
            "value": PURCHASE,
        }
    )
    pd.concat([kept, bought], ignore_index=True).to_parquet(site / "new.parquet", index=False)


def test_a_challenger_that_clears_the_gate_is_promoted_and_decides(
    site: Path, world: dict[str, Any]
) -> None:
    import time

    uri = f"sqlite:///{site / 'mlflow.db'}"
    began = time.perf_counter()
    crippled = _crippled_champion(site, world, uri)
    print(f"crippled champion: {time.perf_counter() - began:.1f} s")
    (site / "decisions.db").unlink()  # the world's log was the first champion's
    cycle_tests._log_first_day(site, uri, DAY)
    _catalogues_earn_nothing(site)
    settings: CycleSettings = cycle_tests._settings(
        site,
        world,
        drift_threshold=1e9,  # the rewritten purchases are not the twin's: no audit verdict
        train_steps=4_096,
        train_options={"eval_every_steps": 4_096, "eval_customers": 200},
    )

    result = run_cycle(settings)

    gate = result.steps["gate"]["values"]
    print(
        f"gate: {gate['reasons']}; steps { ({k: v['seconds'] for k, v in result.steps.items()}) }"
    )
    assert result.exit_code == ExitCode.DONE and result.outcome == "promoted"
    challenger = result.steps["train"]["values"]["challenger_version"]
    assert result.steps["train"]["values"]["warm_start"] == f"champion v{crippled}"
    client = MlflowClient(uri)
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == challenger
    assert challenger != crippled
    # the next day is decided by the new champion, and the ledger says so
    assert result.steps["decide"]["values"]["model_version"] == f"{MODEL}/{challenger}"
    decisions = pd.read_parquet(settings.out)
    assert set(decisions["model_version"]) == {f"{MODEL}/{challenger}"}
    ledger = json.loads(result.ledger.read_text())
    assert ledger["steps"]["gate"]["outcome"] == "promoted"
    assert ledger["steps"]["gate"]["values"]["promoted"] == 1
    assert ledger["finished"]["exit_code"] == ExitCode.DONE
    # the crippled champion mailed where it could: the log scores it below a purchase each
    assert gate["challenger_lower"] > gate["incumbent_estimate"]
    assert gate["incumbent_estimate"] < 0.9 * PURCHASE

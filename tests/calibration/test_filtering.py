"""The forward filter: exact Bayes over the twin's latent persona and stage."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from nba.belief import BeliefError
from nba.calibration import EventLog, EventLogError
from nba.calibration.filtering import StateBelief, daily_actions, filter_states
from nba.calibration.synthetic import reference_scenario
from nba.dynamics import outcome_model
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.state import CustomerState
from nba.twin import CustomerTwin
from tests.scenario_variants import retail_with_levels

START = pd.Timestamp("2021-03-01", tz="UTC")


def _scenario(rates: tuple[float, ...] = (0.05, 0.25, 0.12)) -> Scenario:
    """The synthetic reference twin with purchase rates high enough for days to be telling."""
    base = reference_scenario()
    personas = [
        p.model_copy(update={"base_purchase_rate": r})
        for p, r in zip(base.personas, rates, strict=True)
    ]
    return base.model_copy(update={"personas": personas})


def _log(purchases: dict[str, list[int]], sends: dict[str, list[int]]) -> EventLog:
    rows = [
        {
            "customer_id": c,
            "timestamp": START + pd.Timedelta(days=d, hours=10),
            "event": "purchased",
        }
        for c, days in purchases.items()
        for d in days
    ]
    rows += [
        {
            "customer_id": c,
            "timestamp": START + pd.Timedelta(days=d, hours=8),
            "event": "sent",
            "channel": "email",
            "action": "promo",
        }
        for c, days in sends.items()
        for d in days
    ]
    return EventLog.from_frames(pd.DataFrame(rows))


def _brute_force(
    scenario: Scenario, bought: list[bool], action: list[int]
) -> tuple[np.ndarray, float]:
    """Posterior over (persona, last stage) by summing every stage path, and the evidence."""
    arrays = ScenarioArrays.from_scenario(scenario)
    n_personas, n_stages = arrays.n_personas, arrays.n_stages
    windows = arrays.rules.cap_windows
    # probability of (bought?, next stage) from every persona, stage and action
    joint = np.zeros((2, arrays.n_actions, n_personas, n_stages, n_stages))
    for a, p, s in itertools.product(range(arrays.n_actions), range(n_personas), range(n_stages)):
        state = CustomerState(
            persona=np.array([p]),
            stage=np.array([s]),
            pressure=np.array([0]),
            days_since=windows[None, :].copy(),
            habit=np.array([False]),
            opted_out=np.array([False]),
            rate_level=np.array([0]),
            dropout_level=np.array([0]),
        )
        out = outcome_model(arrays, state, np.array([a]))
        for case in range(4):
            buys = case in (1, 3)
            joint[int(buys), a, p, s] += out.case_probs[0, case] * out.next_stage[0, case]
    prior = arrays.persona_share[:, None] * arrays.persona_initial_stage
    paths = np.array(list(itertools.product(range(n_stages), repeat=len(bought) + 1)))
    posterior = np.zeros((n_personas, n_stages))
    for p in range(n_personas):
        weight = prior[p, paths[:, 0]]
        for d, (b, a) in enumerate(zip(bought, action, strict=True)):
            weight = weight * joint[int(b), a, p, paths[:, d], paths[:, d + 1]]
        np.add.at(posterior[p], paths[:, -1], weight)
    evidence = posterior.sum()
    return posterior / evidence, float(np.log(evidence))


def test_forward_filter_is_exact_bayes_on_short_histories() -> None:
    scenario = _scenario()
    days = 5
    purchases = {"keen": [0, 1, 3], "quiet": [0], "mailed": [0, 4]}
    sends = {"mailed": [2], "quiet": [1, 3]}
    belief = filter_states(scenario, _log(purchases, sends), START + pd.Timedelta(days=days))
    assert belief.days == days and belief.start == START
    promo = scenario.action_names.index("email_promo")
    for customer in purchases:
        bought = [d in purchases[customer] for d in range(days)]
        action = [promo if d in sends.get(customer, []) else 0 for d in range(days)]
        expected, evidence = _brute_force(scenario, bought, action)
        row = belief.customer_ids.get_loc(customer)
        np.testing.assert_allclose(belief.probs[row], expected, rtol=1e-9, atol=1e-12)
        assert belief.log_likelihood[row] == pytest.approx(evidence, rel=1e-9)


def _simulated_purchases(
    twin: CustomerTwin, n: int, days: int
) -> tuple[np.ndarray, EventLog, pd.Index]:
    """(n, days) purchases of ``n`` customers left alone for ``days``, and them as a log."""
    bought = np.stack([twin.step(np.zeros(n, dtype=np.int64)).bought for _ in range(days)], 1)
    who, day = np.nonzero(bought)
    log = EventLog.from_frames(
        pd.DataFrame(
            {
                "customer_id": who.astype(str),
                "timestamp": START + pd.to_timedelta(day, unit="D") + pd.Timedelta(hours=12),
                "event": "purchased",
            }
        )
    )
    return bought, log, pd.Index(np.arange(n).astype(str))


def test_filter_places_simulated_customers_by_their_own_history() -> None:
    scenario = _scenario(rates=(0.03, 0.30, 0.10))
    twin = CustomerTwin(scenario, seed=11)
    n, days = 600, 120
    twin.reset(n)
    truth = twin.state.persona.copy()
    bought, log, ids = _simulated_purchases(twin, n, days)
    belief = filter_states(scenario, log, START + pd.Timedelta(days=days), ids)
    persona, _ = belief.most_likely()
    alive = ~np.isin(twin.state.stage, [scenario.stage_names.index("churned")])
    buyers = bought.sum(axis=1) >= 3  # a few purchases tell the rates apart
    assert (persona == truth)[buyers & alive].mean() > 0.85
    # calibrated: if the posterior is right, the truth's mean posterior equals the mean of the
    # posterior's squares (measured 0.830 against 0.829)
    chance = belief.persona[np.arange(n), truth]
    assert abs(chance.mean() - (belief.persona**2).sum(axis=1).mean()) < 0.03
    # those still active at the end look less churned than those who churned
    churned = twin.state.stage == scenario.stage_names.index("churned")
    assert belief.churned[churned].mean() > belief.churned[~churned].mean() + 0.1


def test_sample_gives_each_state_its_share_of_copies() -> None:
    probs = np.array([[[0.5, 0.25], [0.25, 0.0]], [[0.0, 0.0], [0.1, 0.9]]])
    belief = StateBelief(pd.Index(["a", "b"]), probs, np.zeros(2), START, 1, churn_stage=1)
    copies = 40
    persona, stage = belief.sample(copies, np.random.default_rng(0))
    flat = (persona * 2 + stage).reshape(copies, 2)
    for customer in range(2):
        counts = np.bincount(flat[:, customer], minlength=4) / copies
        assert np.abs(counts - probs[customer].ravel()).max() <= 1.0 / copies + 1e-12
    again = belief.sample(copies, np.random.default_rng(0))
    np.testing.assert_array_equal(again[0], persona)
    assert belief.churned.tolist() == pytest.approx([0.25, 0.9])
    with pytest.raises(BeliefError, match="copies"):
        belief.sample(0, np.random.default_rng(0))


def test_daily_actions_keeps_known_sends_inside_the_window() -> None:
    scenario = _scenario()
    log = _log({"a": [0]}, {"a": [1, 9], "b": [2], "stranger": [3]})
    extra = pd.DataFrame(
        [
            {
                "customer_id": "a",
                "timestamp": START + pd.Timedelta(days=2),
                "event": "sent",
                "channel": "sms",
                "action": "promo",
            }
        ]
    )
    events = pd.concat([log.events, extra], ignore_index=True)
    row, day, action = daily_actions(scenario, events, pd.Index(["a", "b"]), START, 5)
    assert sorted(zip(row.tolist(), day.tolist(), strict=True)) == [(0, 1), (1, 2)]
    assert (action == scenario.action_names.index("email_promo")).all()


def test_filter_errors_name_the_field() -> None:
    scenario = _scenario()
    log = _log({"a": [3]}, {"a": [1]})
    with pytest.raises(EventLogError, match="cutoff"):
        filter_states(scenario, log, "soon")
    with pytest.raises(EventLogError, match="purchased"):
        filter_states(scenario, log, START + pd.Timedelta(days=2))
    with pytest.raises(EventLogError, match="lookback_days"):
        filter_states(scenario, log, START + pd.Timedelta(days=5), lookback_days=0)
    with pytest.raises(EventLogError, match="nothing before"):
        filter_states(scenario, log, START - pd.Timedelta(days=5))


def test_blocks_duplicates_and_cutoff_times() -> None:
    scenario = _scenario()
    log = _log({"a": [0, 2], "b": [1], "c": [0, 3, 4]}, {"b": [2]})
    cutoff = START + pd.Timedelta(days=5)
    whole = filter_states(scenario, log, cutoff)
    blocks = filter_states(scenario, log, cutoff, chunk=1)  # same sums, other BLAS blocking
    np.testing.assert_allclose(blocks.probs, whole.probs, rtol=1e-12)
    # days are the 24 hours ending at the cutoff: moving the cutoff and every event by 16
    # hours (purchases now land on the next calendar day) changes nothing
    later = log.events.assign(timestamp=log.events["timestamp"] + pd.Timedelta(hours=16))
    moved = filter_states(scenario, EventLog.from_frames(later), cutoff + pd.Timedelta(hours=16))
    np.testing.assert_allclose(moved.probs, whole.probs, rtol=1e-12)
    with pytest.raises(EventLogError, match="chunk"):
        filter_states(scenario, log, cutoff, chunk=0)
    with pytest.raises(EventLogError, match="customer_ids: 'a' is listed twice"):
        filter_states(scenario, log, cutoff, customer_ids=pd.Index(["a", "b", "a"]))


def test_first_event_start_reads_a_late_arrival_from_their_arrival() -> None:
    scenario = _scenario()
    cutoff = START + pd.Timedelta(days=6)
    both = _log({"late": [3, 4], "early": [0]}, {})
    alone = _log({"late": [3, 4]}, {})  # the log itself starts on day 3
    panel = filter_states(scenario, both, cutoff)
    arrival = filter_states(scenario, both, cutoff, history_start="first_event")
    reference = filter_states(scenario, alone, cutoff)
    late = arrival.customer_ids.get_loc("late")
    np.testing.assert_allclose(arrival.probs[late], reference.probs[0], rtol=1e-12)
    # read as a panel, the three quiet days before arrival place the customer lower
    assert not np.allclose(panel.probs[late], arrival.probs[late])
    early = arrival.customer_ids.get_loc("early")
    np.testing.assert_allclose(arrival.probs[early], panel.probs[early], rtol=1e-12)
    # a listed customer without any event keeps the prior
    silent = filter_states(
        scenario, both, cutoff, customer_ids=pd.Index(["ghost"]), history_start="first_event"
    )
    arrays = ScenarioArrays.from_scenario(scenario)
    prior = arrays.persona_share[:, None] * arrays.persona_initial_stage
    np.testing.assert_allclose(silent.probs[0], prior, rtol=1e-12)
    with pytest.raises(EventLogError, match="history_start"):
        filter_states(scenario, both, cutoff, history_start="birth")


# ------------------------------------------------------------------------------ own levels
def _retail_log(purchases: dict[str, list[int]], sends: dict[str, list[int]]) -> EventLog:
    """A log for retail: purchases at 10:00, ``email_discount_10`` sends at 08:00."""
    frame = _log(purchases, sends).events
    return EventLog.from_frames(
        frame.assign(action=frame["action"].replace("promo", "discount_10"))
    )


def _brute_force_levels(
    scenario: Scenario, bought: list[bool], action: list[int]
) -> tuple[np.ndarray, float]:
    """(P, Lr, Ld, K) posterior by summing every stage path of every persona and level."""
    arrays = ScenarioArrays.from_scenario(scenario)
    dims = (arrays.n_personas, arrays.n_rate_levels, arrays.n_dropout_levels)
    k = arrays.n_stages
    cells = list(itertools.product(*(range(d) for d in dims), range(k), sorted(set(action))))
    p, r, d, s, a = (np.array(column) for column in zip(*cells, strict=True))
    m = len(cells)
    state = CustomerState(
        persona=p,
        stage=s,
        pressure=np.zeros(m, dtype=np.int64),
        days_since=np.tile(arrays.rules.cap_windows, (m, 1)),
        habit=np.zeros(m, dtype=bool),
        opted_out=np.zeros(m, dtype=bool),
        rate_level=r,
        dropout_level=d,
    )
    out = outcome_model(arrays, state, a)
    joint = np.zeros((2, arrays.n_actions, *dims, k, k))  # (bought?, action, type, from, to)
    for i in range(m):
        for case in range(4):
            joint[int(case in (1, 3)), a[i], p[i], r[i], d[i], s[i]] += (
                out.case_probs[i, case] * out.next_stage[i, case]
            )
    prior = np.einsum(
        "p,r,d,pk->prdk",
        arrays.persona_share,
        arrays.rate_level_share,
        arrays.dropout_level_share,
        arrays.persona_initial_stage,
    )
    paths = np.array(list(itertools.product(range(k), repeat=len(bought) + 1)))
    posterior = np.zeros((*dims, k))
    for kind in itertools.product(*(range(n) for n in dims)):
        weight = prior[kind][paths[:, 0]]
        for day, (b, act) in enumerate(zip(bought, action, strict=True)):
            weight = weight * joint[(int(b), act, *kind)][paths[:, day], paths[:, day + 1]]
        np.add.at(posterior[kind], paths[:, -1], weight)
    evidence = posterior.sum()
    return posterior / evidence, float(np.log(evidence))


def test_level_posterior_is_exact_bayes_on_short_histories() -> None:
    scenario = retail_with_levels()
    days = 4
    purchases = {"keen": [0, 1, 3], "once": [2], "mailed": [0], "silent": []}
    sends = {"mailed": [1, 2]}
    log, ids = _retail_log(purchases, sends), pd.Index(list(purchases))
    belief = filter_states(scenario, log, START + pd.Timedelta(days=days), ids)
    assert belief.levels is not None and belief.levels.shape == (4, 4, 3, 2, 7)
    offer = scenario.action_names.index("email_discount_10")
    for customer in purchases:
        bought = [d in purchases[customer] for d in range(days)]
        action = [offer if d in sends.get(customer, []) else 0 for d in range(days)]
        expected, evidence = _brute_force_levels(scenario, bought, action)
        row = belief.customer_ids.get_loc(customer)
        np.testing.assert_allclose(belief.joint[row], expected, rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(belief.probs[row], expected.sum(axis=(1, 2)), rtol=1e-9)
        assert belief.log_likelihood[row] == pytest.approx(evidence, rel=1e-9)
    # purchases move weight to the heavy level, silence to the light (prior mean: 1.0)
    keen, once, silent = belief.customer_ids.get_indexer(["keen", "once", "silent"])
    assert belief.rate_level[keen, 2] > belief.rate_level[once, 2] > belief.rate_level[silent, 2]
    assert belief.rate_multiplier[keen] > belief.rate_multiplier[once] > 1.0
    assert belief.rate_multiplier[silent] < 1.0


def test_filter_finds_each_simulated_customers_own_rate_level() -> None:
    scenario = retail_with_levels()
    twin = CustomerTwin(scenario, seed=23)
    n, days = 1500, 180
    twin.reset(n)
    truth = twin.state.rate_level.copy()
    bought, log, ids = _simulated_purchases(twin, n, days)
    belief = filter_states(scenario, log, START + pd.Timedelta(days=days), ids)
    np.testing.assert_allclose(belief.rate_level.sum(axis=1), 1.0, rtol=1e-12)
    heavy = bought.sum(axis=1) >= 8
    assert heavy.sum() > 20
    assert belief.rate_level[heavy, 2].mean() > 0.6
    assert (belief.rate_level[heavy].argmax(axis=1) == truth[heavy]).mean() > 0.6
    # calibrated: the truth's mean posterior equals the posterior's mean self-agreement
    chance = belief.rate_level[np.arange(n), truth]
    assert abs(chance.mean() - (belief.rate_level**2).sum(axis=1).mean()) < 0.03
    # the posterior mean multiplier orders the true levels
    means = [belief.rate_multiplier[truth == level].mean() for level in range(3)]
    assert means[0] < means[1] < means[2]


def test_draw_gives_each_level_cell_its_share() -> None:
    joint = np.zeros((1, 1, 2, 2, 2))
    joint[0, 0, 0, 1, 0], joint[0, 0, 1, 0, 1], joint[0, 0, 1, 1, 1] = 0.5, 0.25, 0.25
    belief = StateBelief(
        pd.Index(["a"]), joint.sum(axis=(2, 3)), np.zeros(1), START, 1, 1, joint, np.ones(2)
    )
    drawn = belief.draw(40, np.random.default_rng(3))
    cells = np.ravel_multi_index(
        (drawn["persona"], drawn["rate_level"], drawn["dropout_level"], drawn["stage"]),
        joint.shape[1:],
    )
    assert np.bincount(cells, minlength=8).tolist() == [0, 0, 20, 0, 0, 10, 0, 10]
    assert belief.dropout_level[0].tolist() == pytest.approx([0.25, 0.75])
    _, stage = belief.sample(40, np.random.default_rng(3))
    np.testing.assert_array_equal(stage, drawn["stage"])


def test_first_purchase_start_is_conditioned_on_not_evidence() -> None:
    """``history_start="first_purchase"``: the purchase that starts a customer leaves their
    level odds at the prior and adds nothing to the likelihood; read as evidence (a panel) the
    same purchase places a one-time buyer among the heavy buyers."""
    scenario = retail_with_levels()
    arrays = ScenarioArrays.from_scenario(scenario)
    days = 5
    log = _retail_log({"today": [days - 1], "once": [0], "twice": [0, 2]}, {})
    cutoff = START + pd.Timedelta(days=days)
    start = filter_states(scenario, log, cutoff, history_start="first_purchase")
    today = start.customer_ids.get_loc("today")
    np.testing.assert_allclose(start.rate_level[today], arrays.rate_level_share, rtol=1e-12)
    assert start.log_likelihood[today] == pytest.approx(0.0, abs=1e-12)
    # from the entry stage, as after a purchase: wherever the first purchase leads
    entry_moves = arrays.purchase_transition_by_level[0, 0]
    np.testing.assert_allclose(start.stage[today], entry_moves, rtol=1e-9, atol=1e-12)
    panel = filter_states(scenario, log, cutoff, history_start="log")
    once = start.customer_ids.get_loc("once")
    assert panel.rate_multiplier[once] > start.rate_multiplier[once]
    twice = start.customer_ids.get_loc("twice")
    assert start.rate_multiplier[twice] > start.rate_multiplier[once]
    # the scenario's own convention is the default, "log" without one
    assert np.array_equal(filter_states(scenario, log, cutoff).probs, panel.probs)


def test_record_start_makes_a_customer_s_belief_independent_of_the_batch() -> None:
    scenario = _scenario()
    cutoff = START + pd.Timedelta(days=8)
    whole = _log({"early": [0, 5], "late": [4]}, {"late": [6]})
    alone = _log({"late": [4]}, {"late": [6]})  # its own log starts on day 4
    everyone = filter_states(scenario, whole, cutoff, pd.Index(["late"]))
    batch = filter_states(scenario, alone, cutoff, pd.Index(["late"]), record_start=START)
    np.testing.assert_allclose(batch.probs, everyone.probs, rtol=1e-12)
    assert batch.log_likelihood[0] == pytest.approx(everyone.log_likelihood[0], rel=1e-12)
    assert not np.allclose(
        filter_states(scenario, alone, cutoff, pd.Index(["late"])).probs, everyone.probs
    )
    with pytest.raises(EventLogError, match="record_start"):
        filter_states(scenario, alone, cutoff, record_start=cutoff)


def test_sends_name_their_action_or_their_channel_and_offer() -> None:
    """A CRM logs a send's channel and offer (the twin's own events do): a catalogue mailing is
    ``direct_mail`` + ``content`` though its action is ``direct_mail_catalogue``."""
    from nba.scenarios import load_scenario

    retail = load_scenario("retail")
    events = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "b", "b"],
            "timestamp": pd.to_datetime(["2026-01-01T09:00Z"] * 4 + ["2026-01-02T09:00Z"]),
            "event": ["sent"] * 5,
            "channel": ["direct_mail", "email", "email", "sms", "call_centre"],
            "action": ["content", "discount_10", "winback", "nonsense", "winback"],
        }
    )
    start = pd.Timestamp("2026-01-01", tz="UTC")
    rows, days, actions = daily_actions(retail, events, pd.Index(["a", "b"]), start, 3)
    named = [retail.action_names[a] for a in actions]
    assert named == [
        "direct_mail_catalogue",
        "email_discount_10",
        "email_winback",
        "call_centre_winback",
    ]
    assert rows.tolist() == [0, 0, 1, 1] and days.tolist() == [0, 0, 0, 1]

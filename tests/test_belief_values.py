"""BeliefValues: belief-averaged full-information values, against independent computations."""

from __future__ import annotations

import numpy as np
import pytest

from nba import optimal
from nba.belief_values import BeliefValues
from nba.errors import NBAValidationError
from nba.features import FeatureBuilder
from nba.kernel import TransitionKernel
from nba.state import CustomerState
from nba.twin import CustomerTwin


@pytest.fixture(scope="module")
def values(retail_belief_values: BeliefValues) -> BeliefValues:
    return retail_belief_values


@pytest.fixture(scope="module")
def twin(values: BeliefValues) -> CustomerTwin:
    return values.twin


@pytest.fixture(scope="module")
def cohort(twin: CustomerTwin) -> tuple[CustomerState, int]:
    """200 customers after 9 days of random contacts: varied pressure, clocks, opt-outs."""
    sim = twin.spawn(seed=3)
    sim.reset(200, seed=4)
    rng = np.random.default_rng(5)
    for _ in range(9):
        mask = sim.action_masks()
        sim.step(np.array([rng.choice(np.flatnonzero(row)) for row in mask]))
    return sim.state.copy(), 9


def certain(twin: CustomerTwin, state: CustomerState, day: int) -> np.ndarray:
    """The one-hot belief a belief observation of a known state carries."""
    features = FeatureBuilder(twin.arrays, observation="belief")
    return features.decode_belief(features.build(state, np.full(len(state), day)))


def q_row(kernel: TransitionKernel, solution: optimal.PolicySolution, s: int, day: int):
    """Q_day(s, .) from the kernel's block of rows of state s (one row per action)."""
    a = kernel.n_actions
    rows = kernel.transition[s * a : (s + 1) * a].toarray()
    return kernel.reward[s] + kernel.discount * rows @ solution.values[day + 1]


def with_cell(twin: CustomerTwin, state: CustomerState, n: int, t: int, k: int) -> int:
    """Index of customer n's observed state with type t and stage k put in, by plain values."""
    a = twin.arrays
    persona, rest = divmod(t, a.n_rate_levels * a.n_dropout_levels)
    rate, dropout = divmod(rest, a.n_dropout_levels)
    one = state.take(np.array([n])).copy()
    one.persona, one.stage = np.array([persona]), np.array([k])
    one.rate_level, one.dropout_level = np.array([rate]), np.array([dropout])
    return int(twin.space.encode(one)[0])


def test_certain_belief_gives_the_states_q_row_and_value(
    twin: CustomerTwin,
    values: BeliefValues,
    cohort: tuple[CustomerState, int],
    retail_kernel: TransitionKernel,
    retail_optimum: optimal.PolicySolution,
) -> None:
    state, day = cohort
    q = values.q(certain(twin, state, day), state, day)
    index = twin.space.encode(state)
    for n in range(0, 200, 25):
        np.testing.assert_allclose(
            q[n], q_row(retail_kernel, retail_optimum, int(index[n]), day), rtol=1e-12
        )
    # the best allowed action's value is the optimum's value of the state
    allowed = np.where(retail_kernel.mask_at(day)[index], q, -np.inf).max(axis=1)
    np.testing.assert_allclose(allowed, retail_optimum.values[day, index], rtol=1e-12)
    np.testing.assert_allclose(
        values.state_values(certain(twin, state, day), state, day),
        retail_optimum.values[day, index],
        rtol=1e-12,
    )


def test_two_point_belief_is_the_weighted_average_of_two_rows(
    twin: CustomerTwin, values: BeliefValues, cohort: tuple[CustomerState, int]
) -> None:
    state, day = cohort
    one = state.take(np.arange(1))
    belief = np.zeros((1, *values.latent_shape))
    belief[0, 2, 1], belief[0, 3, 4] = 0.3, 0.7
    table = values.q_table(day)
    first, second = with_cell(twin, one, 0, 2, 1), with_cell(twin, one, 0, 3, 4)
    expected = 0.3 * table[first] + 0.7 * table[second]
    np.testing.assert_allclose(values.q(belief, one, day)[0], expected, rtol=1e-12)
    assert not np.allclose(table[first], table[second])  # the average is not either row
    v = values.solution.values[day]
    np.testing.assert_allclose(
        values.state_values(belief, one, day), [0.3 * v[first] + 0.7 * v[second]], rtol=1e-12
    )


def test_random_beliefs_match_a_plain_double_loop(
    twin: CustomerTwin,
    values: BeliefValues,
    cohort: tuple[CustomerState, int],
    retail_kernel: TransitionKernel,
    retail_optimum: optimal.PolicySolution,
) -> None:
    state, _ = cohort
    rng = np.random.default_rng(11)
    rows = rng.choice(len(state), size=4, replace=False)
    some = state.take(rows)
    belief = rng.random((4, *values.latent_shape)) * (rng.random((4, *values.latent_shape)) < 0.5)
    belief[:, 0, 0] += 1e-3  # no all-zero row
    belief /= belief.sum(axis=(1, 2), keepdims=True)
    days = np.array([0, 17, 17, 89])
    q = values.q(belief, some, days)
    v = values.state_values(belief, some, days)
    n_types, n_stages = values.latent_shape
    for n in range(4):
        expected_q, expected_v = np.zeros(twin.n_actions), 0.0
        for t in range(n_types):
            for k in range(n_stages):
                s = with_cell(twin, some, n, t, k)
                expected_q += belief[n, t, k] * q_row(retail_kernel, retail_optimum, s, days[n])
                expected_v += belief[n, t, k] * retail_optimum.values[days[n], s]
        np.testing.assert_allclose(q[n], expected_q, rtol=1e-10)
        np.testing.assert_allclose(v[n], expected_v, rtol=1e-10)


def test_per_customer_days_equal_one_call_per_day_and_the_horizon_is_zero(
    twin: CustomerTwin, values: BeliefValues, cohort: tuple[CustomerState, int]
) -> None:
    state, day = cohort
    belief = certain(twin, state, day)
    days = np.arange(len(state)) % 4 * 30  # 0, 30, 60, 90 (the horizon)
    q = values.q(belief, state, days)
    for d in (0, 30, 60):
        rows = days == d
        np.testing.assert_array_equal(q[rows], values.q(belief[rows], state.take(rows), d))
    assert (q[days == 90] == 0).all() and (q[days == 60] != 0).any()
    assert (values.state_values(belief, state, 95) == 0).all()


def test_the_cache_is_bounded_and_evicted_days_come_back_equal(
    twin: CustomerTwin,
    cohort: tuple[CustomerState, int],
    retail_kernel: TransitionKernel,
    retail_optimum: optimal.PolicySolution,
) -> None:
    small = BeliefValues(twin, kernel=retail_kernel, solution=retail_optimum, cache_days=2)
    state, day = cohort
    belief = certain(twin, state, day)
    first = small.q(belief, state, 0)
    small.q(belief, state, 1)
    small.q(belief, state, 2)
    assert sorted(small._q) == [1, 2]
    np.testing.assert_array_equal(small.q(belief, state, 0), first)


def test_threads_sharing_the_values_get_the_serial_answers(
    twin: CustomerTwin,
    cohort: tuple[CustomerState, int],
    retail_kernel: TransitionKernel,
    retail_optimum: optimal.PolicySolution,
) -> None:
    """A scorer's values serve every HTTP thread: a small cache churned by 8 threads at once."""
    from concurrent.futures import ThreadPoolExecutor

    shared = BeliefValues(twin, kernel=retail_kernel, solution=retail_optimum, cache_days=3)
    state, day = cohort
    belief = certain(twin, state, day)
    days = [d % 12 for d in range(96)]
    serial = {
        d: BeliefValues(twin, retail_kernel, retail_optimum).q(belief, state, d) for d in set(days)
    }
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda d: shared.q(belief, state, d), days))
    for d, answer in zip(days, answers, strict=True):
        np.testing.assert_array_equal(answer, serial[d])
    assert len(shared._q) <= 3


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b, s, d: (b[:, :2], s, d), "belief"),
        (lambda b, s, d: (b.reshape(len(b), -1), s, d), "belief"),
        (lambda b, s, d: (b.tolist(), s, d), "belief"),
        (lambda b, s, d: (-b, s, d), "belief"),
        (lambda b, s, d: (b * 2, s, d), "belief"),
        (lambda b, s, d: (np.where(b > 0, np.nan, b), s, d), "belief"),
        (lambda b, s, d: (b, s.take(np.arange(3)), d), "state"),
        (lambda b, s, d: (b, "state", d), "state"),
        (lambda b, s, d: (b, s, -1), "day"),
        (lambda b, s, d: (b, s, 1.5), "day"),
        (lambda b, s, d: (b, s, np.zeros(3, dtype=np.int64)), "day"),
    ],
)
def test_bad_input_is_refused_naming_the_field(
    twin: CustomerTwin, values: BeliefValues, cohort: tuple[CustomerState, int], change, field
) -> None:
    state, day = cohort
    args = change(certain(twin, state, day), state, day)
    for method in (values.q, values.state_values):
        with pytest.raises(NBAValidationError, match=f"^{field}:"):
            method(*args)


def test_bad_construction_is_refused_naming_the_field(
    retail_kernel: TransitionKernel, retail_optimum: optimal.PolicySolution
) -> None:
    with pytest.raises(NBAValidationError, match=r"^cache_days:"):
        BeliefValues("retail", kernel=retail_kernel, solution=retail_optimum, cache_days=0)
    with pytest.raises(NBAValidationError, match=r"^kernel:"):
        BeliefValues("retail_levels", kernel=retail_kernel, solution=retail_optimum)
    short = optimal.PolicySolution(
        values=retail_optimum.values[:5], policy=retail_optimum.policy[:4], value=0.0
    )
    with pytest.raises(NBAValidationError, match=r"^solution:"):
        BeliefValues("retail", kernel=retail_kernel, solution=short)

"""Training quality over seeds: time to 95% of the gap to the exact optimum, and the final share.

Part 1 runs the product path (``nba.training.train``: packaged hyper-parameters, tracked in a
throw-away MLflow store, exact evaluation every ``--eval-every`` steps, the policy evaluated as
it serves) once per seed with ``make run``'s budget (30M steps; the learning rate decays over
it), and reports for each seed the training time at which the exact share first reached the
target (evaluations excluded, and with them), and the final exact share. One seed is an
anecdote: the summary gives the median and the worst. Part 2 trains the same algorithm for
the same wall time on ``TwinVecEnv`` and on SB3's ``DummyVecEnv`` over ``JourneyEnv`` and
compares env-steps/s.

Run: ``python benchmarks/train_to_optimum.py [--seeds 0,1,2,3,4]``. The last line is one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize

from nba.envs import JourneyEnv, TwinVecEnv
from nba.scenarios import load_scenario
from nba.training.config import TrainConfig
from nba.training.registry import get_algorithm
from nba.training.trainer import _algo_kwargs, train


class _StopAfter(BaseCallback):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.started = time.perf_counter()

    def _on_training_start(self) -> None:
        self.started = time.perf_counter()

    def _on_step(self) -> bool:
        return time.perf_counter() - self.started < self.seconds


def throughput(env: VecEnv, cfg: TrainConfig, seconds: float) -> float:
    """Env steps per second of the configured algorithm learning on ``env``."""
    scenario = load_scenario(cfg.scenario)
    hp = cfg.hyperparameters
    assert hp is not None
    if hp.env.normalize_reward:
        env = VecNormalize(env, norm_obs=False, norm_reward=True, gamma=scenario.discount_factor)
    spec = get_algorithm(cfg.algo)
    model = spec.load()(
        spec.policy_class(hp.policy.mask_actions),
        env,
        seed=0,
        device="cpu",
        **_algo_kwargs(cfg, hp, scenario),
    )
    stop = _StopAfter(seconds)
    model.learn(10**12, callback=stop)
    return model.num_timesteps / (time.perf_counter() - stop.started)


def one_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Train one seed through the product path; its time to target and final shares."""
    started = time.perf_counter()
    result = train(
        scenario=args.scenario,
        algo=args.algo,
        seed=seed,
        timesteps=args.timesteps,
        eval_every_steps=args.eval_every,
        callbacks=[_StopAfter(args.budget_seconds)],
        register_model=False,
        torch_threads=args.threads,
    )
    total_seconds = time.perf_counter() - started
    reached = next((p for p in result.history if p["share_of_optimum"] >= args.target), None)
    final = result.table.set_index("policy").loc[args.algo]
    return {
        "seed": seed,
        "seconds_to_target": reached["elapsed_seconds"] if reached else None,
        "wall_seconds_to_target": reached["wall_seconds"] if reached else None,
        "steps_to_target": reached["timesteps"] if reached else None,
        "final_exact_share": float(final["exact_share_of_optimum"]),
        "final_cohort_share": float(final["share_of_optimum"]),
        "final_steps": result.history[-1]["timesteps"],
        "run_seconds": round(total_seconds, 1),
        "history": result.history,
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--scenario", default="retail")
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--timesteps", type=int, default=30_000_000, help="as make run")
    parser.add_argument(
        "--budget-seconds", type=float, default=600.0, help="stop a seed's training after"
    )
    parser.add_argument("--eval-every", type=int, default=2_000_000)
    parser.add_argument("--throughput-seconds", type=float, default=20.0)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (as nba train)")
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]

    with tempfile.TemporaryDirectory() as tmp:  # one throw-away MLflow store for every seed
        previous = Path.cwd()
        os.chdir(tmp)
        try:
            runs = [one_seed(args, seed) for seed in seeds]
        finally:
            os.chdir(previous)
    cfg = TrainConfig(algo=args.algo, scenario=args.scenario, timesteps=10**9).resolved()
    assert cfg.hyperparameters is not None
    n_envs = cfg.hyperparameters.env.n_envs
    twin_rate = throughput(
        TwinVecEnv(args.scenario, n_envs=n_envs, seed=0, expected_rewards=True),
        cfg,
        args.throughput_seconds,
    )
    dummy = DummyVecEnv([lambda: JourneyEnv(args.scenario) for _ in range(n_envs)])
    dummy_rate = throughput(dummy, cfg, args.throughput_seconds)
    _report(args, runs, n_envs, twin_rate, dummy_rate)


def _report(
    args: argparse.Namespace,
    runs: list[dict[str, Any]],
    n_envs: int,
    twin_rate: float,
    dummy_rate: float,
) -> None:
    """The table per seed, the summary lines and the JSON record, on stdout."""
    print(
        f"{args.algo} on {args.scenario}, {n_envs} customers per step, {os.cpu_count()} cores, "
        f"{args.threads} torch thread(s), {args.timesteps:,} steps per seed"
    )
    print(f"{'seed':>4} {'to target s':>12} {'with evals s':>12} {'final exact':>12} {'cohort':>8}")
    for run in runs:
        to_target = run["seconds_to_target"]
        with_evals = run["wall_seconds_to_target"]
        print(
            f"{run['seed']:>4} "
            f"{'-' if to_target is None else f'{to_target:.1f}':>12} "
            f"{'-' if with_evals is None else f'{with_evals:.1f}':>12} "
            f"{run['final_exact_share']:>12.4f} {run['final_cohort_share']:>8.3f}"
        )
    finals = [run["final_exact_share"] for run in runs]
    walls = [run["wall_seconds_to_target"] for run in runs]
    worst_wall = None if any(w is None for w in walls) else max(walls)
    print(
        f"final exact share: median {statistics.median(finals):.4f}, worst {min(finals):.4f}; "
        f"slowest to {args.target:.0%}: "
        f"{'not reached by every seed' if worst_wall is None else f'{worst_wall:.1f} s'}"
    )
    print(
        f"training env-steps/s: TwinVecEnv {twin_rate:,.0f}, DummyVecEnv(JourneyEnv) "
        f"{dummy_rate:,.0f}, ratio {twin_rate / dummy_rate:.1f}x"
    )
    print(
        json.dumps(
            {
                "benchmark": "train_to_optimum",
                "algo": args.algo,
                "scenario": args.scenario,
                "target_share": args.target,
                "timesteps": args.timesteps,
                "seeds": [{k: v for k, v in run.items() if k != "history"} for run in runs],
                "worst_final_exact_share": min(finals),
                "median_final_exact_share": statistics.median(finals),
                "worst_wall_seconds_to_target": worst_wall,
                "train_steps_per_s_twin_vec_env": round(twin_rate),
                "train_steps_per_s_dummy_vec_env": round(dummy_rate),
                "throughput_ratio": round(twin_rate / dummy_rate, 1),
                "targets": {
                    "worst_wall_seconds_to_target": 180,
                    "median_final_exact_share": 0.97,
                    "throughput_ratio": 30,
                },
                "targets_met": bool(
                    worst_wall is not None
                    and worst_wall <= 180
                    and statistics.median(finals) >= 0.97
                    and twin_rate / dummy_rate >= 30
                ),
            }
        )
    )


if __name__ == "__main__":
    main()

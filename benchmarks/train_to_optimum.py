"""Wall time for PPO to close 95% of the gap to the exact optimum, and training throughput.

Part 1 runs the product path (``nba.training.train``: tracked in a throw-away MLflow store,
exact evaluation every ``--eval-every`` steps, stop at the target) and reports the training time
at which the exact share of the optimum first reached the target (evaluation time included).
Part 2 trains the same algorithm with the same hyper-parameters for the same wall time on
``TwinVecEnv`` and on SB3's ``DummyVecEnv`` over ``JourneyEnv`` and compares env-steps/s.

Run: ``python benchmarks/train_to_optimum.py``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

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
    assert cfg.hyperparameters is not None
    if cfg.hyperparameters.env.normalize_reward:
        env = VecNormalize(env, norm_obs=False, norm_reward=True, gamma=scenario.discount_factor)
    model = get_algorithm(cfg.algo).load()(
        "MlpPolicy", env, seed=0, device="cpu", **_algo_kwargs(cfg, cfg.hyperparameters, scenario)
    )
    stop = _StopAfter(seconds)
    model.learn(10**12, callback=stop)
    return model.num_timesteps / (time.perf_counter() - stop.started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--budget-seconds", type=float, default=300.0, help="give up after")
    parser.add_argument("--eval-every", type=int, default=1_000_000)
    parser.add_argument("--throughput-seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    cfg = TrainConfig(algo=args.algo, timesteps=10**9).resolved()
    assert cfg.hyperparameters is not None
    n_envs = cfg.hyperparameters.env.n_envs
    with tempfile.TemporaryDirectory() as tmp:
        previous = Path.cwd()
        os.chdir(tmp)
        try:
            started = time.perf_counter()
            result = train(
                algo=args.algo,
                seed=args.seed,
                timesteps=int(args.budget_seconds * 200_000),  # far more than the budget allows
                eval_every_steps=args.eval_every,
                target_share=args.target,
                callbacks=[_StopAfter(args.budget_seconds)],
                register_model=False,
            )
            total_seconds = time.perf_counter() - started
        finally:
            os.chdir(previous)
    reached = result.reached_target
    final = result.table.set_index("policy")

    twin_rate = throughput(
        TwinVecEnv("retail", n_envs=n_envs, seed=0, expected_rewards=True),
        cfg,
        args.throughput_seconds,
    )
    dummy = DummyVecEnv([lambda: JourneyEnv("retail") for _ in range(n_envs)])
    dummy_rate = throughput(dummy, cfg, args.throughput_seconds)

    print(f"{args.algo} on retail, {n_envs} customers per step, {os.cpu_count()} cores")
    print(f"{'training s':>10} {'with evals s':>12} {'env steps':>12} {'exact share':>12}")
    for point in result.history:
        seconds, wall, steps = point["elapsed_seconds"], point["wall_seconds"], point["timesteps"]
        print(f"{seconds:>10.1f} {wall:>12.1f} {steps:>12,.0f} {point['share_of_optimum']:>12.3f}")
    if reached:
        print(
            f"reached {args.target:.0%} after {reached['elapsed_seconds']:.1f} s of training "
            f"({reached['wall_seconds']:.1f} s with the exact evaluations; "
            f"{reached['timesteps']:,.0f} steps)"
        )
    else:
        print(f"did not reach {args.target:.0%} within {args.budget_seconds:.0f} s")
    print(
        f"final cohort share of optimum: {final.loc[args.algo, 'share_of_optimum']:.3f} "
        f"(exact {final.loc[args.algo, 'exact_share_of_optimum']:.3f}); run incl. final "
        f"evaluation and logging: {total_seconds:.0f} s"
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
                "target_share": args.target,
                "seconds_to_target": reached["elapsed_seconds"] if reached else None,
                "wall_seconds_to_target_with_evaluations": reached["wall_seconds"]
                if reached
                else None,
                "steps_to_target": reached["timesteps"] if reached else None,
                "final_exact_share": float(final.loc[args.algo, "exact_share_of_optimum"]),
                "final_cohort_share": float(final.loc[args.algo, "share_of_optimum"]),
                "train_steps_per_s_twin_vec_env": round(twin_rate),
                "train_steps_per_s_dummy_vec_env": round(dummy_rate),
                "throughput_ratio": round(twin_rate / dummy_rate, 1),
                "targets": {"wall_seconds_to_target": 180, "throughput_ratio": 30},
                "targets_met": bool(
                    reached and reached["wall_seconds"] <= 180 and twin_rate / dummy_rate >= 30
                ),
            }
        )
    )


if __name__ == "__main__":
    main()

"""Training speed against torch's intra-op threads, on a quiet machine and on a busy one.

The policies here are small MLPs (64x64) fed batches of 8,192: torch's intra-op threads have
little to split, and when another process wants the cores the threads wait on each other. This
measures PPO env-steps/s (the packaged hyper-parameters, the real ``TwinVecEnv``) with 1 thread
and with one per core, first with the machine to itself, then with a neighbour process
spinning one busy loop per core, side by side in one run. ``nba train`` defaults to the winner.

Run: ``python benchmarks/torch_threads.py [--seconds 15]``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time

import torch
from stable_baselines3.common.callbacks import BaseCallback

from nba.scenarios import load_scenario
from nba.training.config import TrainConfig
from nba.training.registry import get_algorithm
from nba.training.trainer import _algo_kwargs, _make_env


class _Clock(BaseCallback):
    """Stops after ``seconds`` and records the steps taken after a warm-up."""

    def __init__(self, seconds: float, warmup: float) -> None:
        super().__init__()
        self.seconds, self.warmup = seconds, warmup
        self.started = self.measured_from = time.perf_counter()
        self.first_step = 0

    def _on_training_start(self) -> None:
        self.started = time.perf_counter()

    def _on_step(self) -> bool:
        now = time.perf_counter()
        if self.first_step == 0 and now - self.started >= self.warmup:
            self.first_step, self.measured_from = self.num_timesteps, now
        return now - self.started < self.warmup + self.seconds

    def rate(self) -> float:
        return (self.num_timesteps - self.first_step) / (time.perf_counter() - self.measured_from)


def steps_per_second(threads: int, seconds: float, algo: str) -> float:
    torch.set_num_threads(threads)
    cfg = TrainConfig(algo=algo, timesteps=10**12).resolved()
    hp = cfg.hyperparameters
    assert hp is not None
    scenario = load_scenario(cfg.scenario)
    spec = get_algorithm(algo)
    model = spec.load()(
        spec.policy_class(hp.policy.mask_actions),
        _make_env(scenario, cfg, hp),
        seed=0,
        device="cpu",
        **_algo_kwargs(cfg, hp, scenario),
    )
    clock = _Clock(seconds, warmup=min(5.0, seconds / 2))
    model.learn(10**12, callback=clock)
    return clock.rate()


def _spin(stop: float) -> None:
    """A neighbour's busy loop (pure Python: holds one core, allocates nothing)."""
    x = 0
    while time.time() < stop:
        x += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measured per setting")
    parser.add_argument("--algo", default="ppo")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    settings = sorted({1, cores})
    rows = []
    for busy in (False, True):
        for threads in settings:
            neighbours = []
            if busy:
                stop = time.time() + args.seconds + 15.0
                neighbours = [mp.Process(target=_spin, args=(stop,)) for _ in range(cores)]
                for process in neighbours:
                    process.start()
            try:
                rate = steps_per_second(threads, args.seconds, args.algo)
            finally:
                for process in neighbours:
                    process.terminate()
                    process.join()
            rows.append({"busy": busy, "threads": threads, "steps_per_s": round(rate)})

    print(f"{args.algo} training env-steps/s on {cores} cores ({args.seconds:.0f} s each)")
    print(f"{'machine':>8} {'threads':>8} {'steps/s':>10}")
    for row in rows:
        machine = "busy" if row["busy"] else "quiet"
        print(f"{machine:>8} {row['threads']:>8} {row['steps_per_s']:>10,}")
    rate = {(row["busy"], row["threads"]): row["steps_per_s"] for row in rows}
    quiet_ratio = rate[(False, 1)] / rate[(False, cores)]
    busy_ratio = rate[(True, 1)] / rate[(True, cores)]
    print(f"1 thread vs {cores}: x{quiet_ratio:.2f} quiet, x{busy_ratio:.2f} busy")
    print(
        json.dumps(
            {
                "benchmark": "torch_threads",
                "algo": args.algo,
                "cores": cores,
                "rows": rows,
                "one_thread_speedup_quiet": round(quiet_ratio, 2),
                "one_thread_speedup_busy": round(busy_ratio, 2),
                "default_threads": TrainConfig().torch_threads,
            }
        )
    )


if __name__ == "__main__":
    main()

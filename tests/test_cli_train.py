"""``nba train``'s options are TrainConfig's fields: one option each, the same default and
bounds, so a new setting cannot be forgotten on the command line or given a second default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer.main

from nba.cli import app, main
from nba.cli.train import DECIDED_WHEN_RUN
from nba.training.config import OPTION_NAMES, TrainConfig, option_name

NOT_SETTINGS = {"ctx", "tracking_uri", "resume", "as_json", "help"}


def _train_command() -> Any:
    return typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]


def test_every_train_config_field_has_exactly_one_option_with_its_default() -> None:
    params = [p for p in _train_command().params if p.name not in NOT_SETTINGS]
    names = [p.name for p in params]
    assert sorted(names) == sorted(TrainConfig.model_fields)  # one each, nothing else
    for param in params:
        field = TrainConfig.model_fields[param.name]
        assert param.default == field.get_default(call_default_factory=True), param.name
        assert param.opts[0] == option_name(param.name)
        assert param.opts[1:] == list(OPTION_NAMES.get(param.name, ())[1:])
        assert param.help and field.description
        assert param.help.startswith(field.description.removesuffix("."))
        assert param.show_default == (param.name not in DECIDED_WHEN_RUN)


def test_options_keep_their_names_and_short_forms() -> None:
    opts = {p.name: p.opts + p.secondary_opts for p in _train_command().params}
    assert opts["scenario"] == ["--scenario", "-s"] and opts["algo"] == ["--algo", "-a"]
    assert opts["timesteps"] == ["--timesteps", "-t"]
    assert opts["hyperparameters"] == ["--config"]
    assert opts["eval_every_steps"] == ["--eval-every"]
    assert opts["checkpoint_every_seconds"] == ["--checkpoint-every"]
    assert opts["torch_threads"] == ["--threads"]
    assert opts["register_model"] == ["--register", "--no-register"]


def test_inclusive_bounds_become_ranges() -> None:
    params = {p.name: p for p in _train_command().params}
    for name, field in TrainConfig.model_fields.items():
        ge = [rule.ge for rule in field.metadata if hasattr(rule, "ge")]
        le = [rule.le for rule in field.metadata if hasattr(rule, "le")]
        option = params[name]
        assert option.min == (ge[0] if ge else None), name
        assert option.max == (le[0] if le else None), name
    assert params["timesteps"].min == 1 and params["target_share"].max == 1
    assert params["hyperparameters"].type_descriptor.annotation is Path  # a file, not a model


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--checkpoint-every", "0"], "--checkpoint-every: Input should be greater than 0"),
        (["--target-share", "0"], "--target-share: Input should be greater than 0"),
        (["--timesteps", "0"], "--timesteps"),  # click's range check: a usage error
        (["--algo", "ppx"], "--algo: unknown algorithm 'ppx'; expected one of"),
    ],
)
def test_a_value_out_of_bounds_is_one_line_exit_2_before_training(
    args: list[str],
    line: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["train", *args])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert line in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no store, no checkpoint folder


def test_settings_reach_the_trainer_by_field_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Typed values arrive under TrainConfig's names; the config file as ``config``."""
    from nba.training import trainer

    seen: dict[str, Any] = {}

    def fake_train(**kwargs: Any) -> Any:
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(trainer, "train", fake_train)
    config = tmp_path / "hp.yaml"
    config.write_text("env: {n_envs: 4}\n")
    with pytest.raises(SystemExit):
        main(["train", "--eval-every", "7", "--threads", "2", "--config", str(config),
              "--target-share", "0.9", "--model-name", "m", "--no-progress-bar"])  # fmt: skip
    assert seen["eval_every_steps"] == 7 and seen["torch_threads"] == 2
    assert seen["config"] == config and seen["target_share"] == 0.9
    assert seen["model_name"] == "m" and seen["progress_bar"] is False
    assert seen["eval_seed"] == TrainConfig.model_fields["eval_seed"].default
    assert "hyperparameters" not in seen and seen["resume"] is None


def test_resume_passes_only_what_was_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    from nba.training import trainer

    seen: dict[str, Any] = {}

    def fake_train(**kwargs: Any) -> Any:
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(trainer, "train", fake_train)
    with pytest.raises(SystemExit):
        main(["train", "--resume", "abc", "--timesteps", "50"])
    assert seen["resume"] == "abc" and seen["timesteps"] == 50
    assert not {"scenario", "algo", "seed", "eval_every_steps", "experiment"} & set(seen)
    assert seen["config"] is None and seen["progress_bar"] is False  # not a terminal

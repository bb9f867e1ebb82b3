"""The deployment examples in ``deploy/`` run commands the CLI has, with options it
takes, and set only settings that exist (README "Running in production")."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
import yaml

from rewards.cli import app
from rewards.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


class Unusable(Exception):
    """A command or an option the CLI does not have."""


def parsed(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """The ``rewards`` sub-command ``argv`` names and its parsed parameters, as the CLI
    parses them (nothing runs); ``Unusable`` when it would refuse them."""
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    rest = list(argv)
    while hasattr(command, "get_command"):  # a group: the next word names a sub-command
        if not rest:
            raise Unusable(f"{argv}: a command group needs a sub-command")
        name = rest.pop(0)
        found = command.get_command(typer.Context(command), name)
        if found is None:
            raise Unusable(f"no command {name!r} in {' '.join(['rewards', *path])}")
        command, path = found, [*path, name]
    try:
        context = command.make_context(" ".join(["rewards", *path]), rest)
    except Exception as exc:  # typer's own copy of click's UsageError family
        raise Unusable(str(exc)) from exc
    return " ".join(path), dict(context.params)


def procfile() -> dict[str, list[str]]:
    processes = {}
    for line in (DEPLOY / "Procfile").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, command = line.partition(":")
        # ${VAR:-default} as a shell expands it when VAR is unset.
        command = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", command)
        processes[name.strip()] = shlex.split(command)
    return processes


def exec_start(unit: Path) -> list[str]:
    [line] = [x for x in unit.read_text().splitlines() if x.startswith("ExecStart=")]
    argv = shlex.split(line.removeprefix("ExecStart=").replace("%i", "9101"))
    assert argv[0].endswith("/rewards"), argv
    return ["rewards", *argv[1:]]


def test_the_procfile_runs_the_api_the_worker_and_the_migration() -> None:
    processes = procfile()
    assert set(processes) == {"release", "web", "worker"}
    for argv in processes.values():
        assert argv[0] == "rewards"
    assert parsed(processes["release"][1:]) == ("db upgrade", {})
    command, params = parsed(processes["web"][1:])
    assert (command, params["host"], params["port"], params["workers"]) == (
        "serve",
        "0.0.0.0",
        8000,
        2,
    )
    assert parsed(processes["worker"][1:])[0] == "worker"


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_each_systemd_unit_starts_a_real_command(unit: Path) -> None:
    text = unit.read_text()
    for section in ("[Unit]", "[Service]", "[Install]"):
        assert section in text
    command, params = parsed(exec_start(unit)[1:])
    if unit.name == "rewards-api.service":
        assert (command, params["workers"]) == ("serve", 4)
    else:
        assert unit.name == "rewards-worker@.service"
        assert (command, params["metrics_port"]) == ("worker", 9101)


def test_a_unit_exists_for_each_process_kind() -> None:
    assert [u.name for u in UNITS] == ["rewards-api.service", "rewards-worker@.service"]


def test_the_compose_file_runs_the_same_commands() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    commands = {
        name: parsed(service["command"][1:])[0]
        for name, service in services.items()
        if service.get("command", [None])[0] == "rewards"
    }
    assert commands == {"migrate": "db upgrade", "api": "serve", "worker": "worker"}


def test_the_example_settings_are_real_settings() -> None:
    names = [
        line.split("=", 1)[0]
        for line in (DEPLOY / "rewards.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    fields = {f"REWARDS_{name.upper()}" for name in Settings.model_fields}
    assert names and set(names) <= fields, set(names) - fields


def test_an_unknown_option_is_caught() -> None:
    with pytest.raises(Unusable):
        parsed(["worker", "--no-such-option"])
    with pytest.raises(Unusable):
        parsed(["no-such-command"])

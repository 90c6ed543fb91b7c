"""Run the real Typer app in-process, the way `mmv ...` would, with stdout and stderr kept apart."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from typer.testing import CliRunner


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(args: list[str], input: str | None = None) -> CliResult:
    from mmv.cli.app import _lift_global_flags, app

    result = CliRunner().invoke(app, _lift_global_flags(list(args)), input=input, catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)


def option_names(command: str) -> set[str]:
    """Every flag the command `mmv <command>` takes."""
    import typer.main

    from mmv.cli.app import app

    click_command = typer.main.get_command(app).commands[command]
    return {name for param in click_command.params for name in (*param.opts, *param.secondary_opts)}


@pytest.fixture
def cli():
    return run_cli

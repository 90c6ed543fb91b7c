"""The model-loading flags `mmv chat`, `eval` and `serve` share (mmv.cli.model_options), defined once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mmv.cli.common import MODEL_FLAGS
from mmv.cli.model_options import ModelChoice, takes_model_options
from tests.cli.conftest import option_names

MODEL_COMMANDS = ["chat", "eval", "serve"]


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_every_flag_a_loading_error_or_note_names_is_one_the_command_takes(command):
    """A note or error about the model names its setting's flag (MODEL_FLAGS): `mmv serve` once named
    --attention-heads and --adapter without taking them."""
    assert {flag.split()[0] for flag in MODEL_FLAGS.values()} <= option_names(command)


def test_the_three_commands_define_each_model_flag_alike():
    import click
    import typer.main

    from mmv.cli.app import app

    def records(name: str) -> dict[str, tuple]:
        command = typer.main.get_command(app).commands[name]
        ctx = click.Context(command, info_name=name)
        shared = {field.name for field in dataclasses.fields(ModelChoice)}
        return {p.name: (p.get_help_record(ctx), p.default, p.required) for p in command.params if p.name in shared}

    chat = records("chat")
    assert len(chat) == len(dataclasses.fields(ModelChoice))
    assert records("eval") == chat and records("serve") == chat


def test_the_flags_reach_the_command_as_one_model_choice():
    received = []

    @takes_model_options
    def command(
        model: str = typer.Option(..., "--model"),
        *,
        choice: ModelChoice,
        prompt: str = typer.Option(None, "--prompt"),
    ) -> None:
        received.append((model, choice, prompt))

    app = typer.Typer()
    app.command()(command)
    app.command("other")(lambda: None)  # two commands: each is invoked by name, as mmv's are
    args = ["command", "--model", "m", "--vision", "enc", "--tiles", "4", "--dtype", "float32", "--prompt", "hi"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert received == [("m", ModelChoice(vision=Path("enc"), tiles=4, dtype="float32"), "hi")]
    assert CliRunner().invoke(app, ["command", "--model", "m", "--threads", "0"]).exit_code == 2  # min=1 kept


def test_a_command_without_a_keyword_only_choice_parameter_is_refused():
    def without(model: str = typer.Option(..., "--model")) -> None: ...

    def positional(model: str = typer.Option(..., "--model"), choice: ModelChoice | None = None) -> None: ...

    for command in (without, positional):
        with pytest.raises(TypeError, match=f"{command.__name__} declares no keyword-only 'choice' parameter"):
            takes_model_options(command)

"""Entry point: `mmv` and its subcommands. Each command lives in its own module and imports torch lazily."""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from mmv import __version__
from mmv.cli import cache, chat, convert, data, demo, download, eval, serve, train
from mmv.cli.common import fail, options

try:  # typer vendors click from 0.2x on; before that it used click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer
    from click import exceptions as click_errors  # type: ignore[no-redef]


class OneLineUsageErrors(TyperGroup):
    """Every usage error of every command (a bad option value, a missing argument, an unknown command or option)
    becomes one line on stderr and exit code 2, instead of click's usage block. `mmv` alone still prints the help."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click_errors.UsageError as exc:
            _one_line(exc)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except click_errors.UsageError as exc:
            _one_line(exc)


def _one_line(exc: Any) -> None:
    if isinstance(exc, getattr(click_errors, "NoArgsIsHelpError", ())):
        raise exc  # not an error: the help asked for by giving no arguments
    message = " ".join(exc.format_message().split()).rstrip(".")
    where = exc.ctx.command_path if exc.ctx is not None else "mmv"
    fail(f"{message} (see `{where} --help`)", code=2)


app = typer.Typer(
    cls=OneLineUsageErrors,
    name="mmv",
    help="Train and run tiny MiniMind-V vision-language models: download, pretrain, sft, chat, convert.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help strings are plain text: "[default: 2]" must not be read as markup
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mmv {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    json_output: bool = typer.Option(False, "--json", help="Print one JSON summary object on stdout at the end."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Global options; --json and --debug may also be written after the subcommand."""
    options.json = options.json or json_output
    options.debug = options.debug or debug


app.command("download")(download.download)
app.command("chat")(chat.chat)
app.command("pretrain")(train.pretrain)
app.command("sft")(train.sft)
app.command("convert")(convert.convert)
app.add_typer(data.app, name="data")
app.command("eval")(eval.eval_command)
app.command("demo")(demo.demo)
app.add_typer(cache.app, name="cache")
app.command("serve")(serve.serve)


def _lift_global_flags(argv: list[str]) -> list[str]:
    """Accept --json / --debug anywhere before a `--`, so `mmv chat x.jpg --json` works like `mmv --json chat`."""
    cut = argv.index("--") if "--" in argv else len(argv)
    head, tail = argv[:cut], argv[cut:]
    options.json = "--json" in head
    options.debug = "--debug" in head
    return [a for a in head if a not in ("--json", "--debug")] + tail


def main() -> None:
    args = _lift_global_flags(sys.argv[1:])
    app(args=args, prog_name="mmv")


if __name__ == "__main__":
    main()

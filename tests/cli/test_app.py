"""The app shell: instant --help/--version without torch, global flags, the not-yet-available stubs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mmv import __version__
from tests.conftest import REFERENCE

DATA = str(REFERENCE / "labels" / "single.parquet")


def test_help_and_version_do_not_import_torch():
    code = (
        "import sys; from mmv.cli.app import main; sys.argv = ['mmv', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'transformers' not in sys.modules\n"
        "assert 'starlette' not in sys.modules and 'uvicorn' not in sys.modules, 'the serve extra was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "chat" in done.stdout and "download" in done.stdout and "serve" in done.stdout


def test_version(cli):
    assert cli(["--version"]).stdout.strip() == f"mmv {__version__}"


def test_global_flags_anywhere():
    from mmv.cli.app import _lift_global_flags
    from mmv.cli.common import options

    assert _lift_global_flags(["chat", "x.jpg", "--json", "--debug"]) == ["chat", "x.jpg"]
    assert options.json and options.debug
    assert _lift_global_flags(["chat", "--", "--json"]) == ["chat", "--", "--json"]
    assert not options.json


USAGE_ERRORS = [
    (["chat", "x.jpg", "--max-new-tokens", "0"], "Invalid value for '--max-new-tokens'", "mmv chat"),
    (["chat", "x.jpg", "--top-p", "2"], "Invalid value for '--top-p'", "mmv chat"),
    (["pretrain", "--epochs", "x"], "Invalid value for '--epochs'", "mmv pretrain"),
    (["--bogus"], "No such option: --bogus", "mmv"),
    (["nosuch"], "No such command 'nosuch'", "mmv"),
    (["cache", "rm"], "Missing argument 'NAME...'", "mmv cache rm"),
    (["data", "check"], "Missing argument", "mmv data check"),
    (["convert"], "Missing argument", "mmv convert"),
]


@pytest.mark.parametrize(("args", "message", "command"), USAGE_ERRORS, ids=[" ".join(a) for a, _, _ in USAGE_ERRORS])
def test_every_usage_error_is_one_line_and_exit_2(cli, args, message, command):
    result = cli(args)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: {message}") and len(result.stderr.splitlines()) == 1
    assert result.stderr.rstrip().endswith(f"(see `{command} --help`)")
    assert not any(box in result.stderr for box in "╭│╰─") and "Usage:" not in result.stderr


def test_usage_errors_of_the_installed_command_are_one_line():
    """The real entry point (main, a non-terminal stderr), not only the in-process runner."""
    done = subprocess.run(
        [sys.executable, "-m", "mmv.cli.app", "chat", "x.jpg", "--top-p", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: Invalid value for '--top-p'") and len(done.stderr.splitlines()) == 1


def test_no_arguments_still_prints_the_help(cli):
    assert "Usage: mmv" in cli([]).stdout + cli([]).stderr
    assert "Usage: mmv cache" in cli(["cache"]).stdout + cli(["cache"]).stderr
    assert cli(["chat", "--help"]).exit_code == 0


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["data", "rechunk", DATA, "--out", "{blocker}/r.parquet"], "{blocker} is not a folder"),
        (["data", "preview", DATA, "--out", "{blocker}/p.png"], "{blocker}: File exists"),
    ],
    ids=["rechunk", "preview"],
)
def test_what_the_os_refuses_is_one_sentence_naming_the_file(cli, tmp_path, args, said):
    """These used to print `FileExistsError: [Errno 17] File exists: '...' (rerun with --debug for details)`."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = cli([a.format(blocker=blocker) for a in args])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: ") and said.format(blocker=blocker) in result.stderr
    assert "Errno" not in result.stderr and "Error:" not in result.stderr and "--debug" not in result.stderr

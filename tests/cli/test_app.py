"""The app shell: instant --help/--version without torch, global flags, the not-yet-available stubs."""

from __future__ import annotations

import subprocess
import sys

from mmv import __version__


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

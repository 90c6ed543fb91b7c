# Stitched into exported transformers folders: see mmv/convert/remote_code.py for the rules this file follows.
"""The one exception type the CLI turns into a one-line message and exit code 2."""

from __future__ import annotations


class MmvError(Exception):
    """A user-facing error: the message is one sentence that says what was expected and what was found.

    The message never spells a command-line flag: the same setting is `--vision DIR` in `mmv chat` and
    `--with-vision DIR` in `mmv convert`, and a flag means nothing to a caller of the Python API. When a setting
    would fix the error, name it instead, with its Python parameter name:

        raise MmvError("no tokenizer found beside the model or in the cache", option="tokenizer")

    `option` takes one name or several (`option=("vision", "tokenizer")`); they are kept in `options`. The CLI's
    `handle_errors` (mmv.cli.common) appends the matching flag of the command that caught the error, e.g.
    "(option: --tokenizer DIR)"; from Python, `str(error)` is the message alone.
    """

    exit_code = 2

    def __init__(self, message: str, *, option: str | tuple[str, ...] | None = None) -> None:
        super().__init__(message)
        self.options: tuple[str, ...] = (option,) if isinstance(option, str) else tuple(option or ())

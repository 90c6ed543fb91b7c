# Stitched into exported transformers folders: see mmv/convert/remote_code.py for the rules this file follows.
"""The one exception type the CLI turns into a one-line message and exit code 2."""


class MmvError(Exception):
    """A user-facing error: the message is one sentence that says what was expected and what was found."""

    exit_code = 2

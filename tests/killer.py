"""Run `mmv ARGS...` in this process with its renames (os.replace, os.rename, the atomic exchange
mmv.fsio.exchange) watched. A script, not a test module: `python killer.py MODE VALUE ARGS...`:

- `record LOG`: run to the end, appending the target of every rename to LOG;
- `kill N`: SIGKILL the process just before its N-th rename (a real kill: no cleanup runs);
- `slow SECONDS`: sleep that long before every rename, as a slow disk would (widens a save's window).
"""

from __future__ import annotations

import os
import signal
import sys
import time


def main() -> None:
    mode, value = sys.argv[1], sys.argv[2]
    from mmv import fsio
    from mmv.cli.app import main as mmv_main

    count = 0

    def watched(real):
        def rename(src, dst, *args, **kwargs):
            nonlocal count
            count += 1
            if mode == "kill" and count == int(value):
                os.kill(os.getpid(), signal.SIGKILL)
            elif mode == "record":
                with open(value, "a") as handle:
                    handle.write(f"{dst}\n")
            elif mode == "slow":
                time.sleep(float(value))
            return real(src, dst, *args, **kwargs)

        return rename

    os.replace, os.rename, fsio.exchange = watched(os.replace), watched(os.rename), watched(fsio.exchange)
    sys.argv = ["mmv", *sys.argv[3:]]
    mmv_main()


if __name__ == "__main__":
    main()

"""Run a command that gets SIGTERM when its supervisor dies: `python -m devtools.pdeathsig <pid> -- cmd...`."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
USAGE = "usage: python -m devtools.pdeathsig SUPERVISOR_PID -- COMMAND [ARG...]"


def set_parent_death_signal(sig: signal.Signals) -> None:
    """Ask Linux to send `sig` to this process when its parent dies; it survives execve of a normal binary."""
    # One syscall through ctypes: pyprctl (last release 2021) and python-prctl (2020, a C extension that needs
    # libcap headers) are not kept up, and the prctl ABI has not changed since Linux 2.1.57.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")


def main(argv: list[str] | None = None) -> int:
    """Set the parent-death signal, then become the command (same pid, so the supervisor signals it directly)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[1] != "--" or not args[0].isdigit():
        print(USAGE, file=sys.stderr)
        return 2
    supervisor, cmd = int(args[0]), args[2:]
    # SIGTERM, not SIGKILL: the worker then finishes in-flight activities and Temporal closes its SQLite file.
    set_parent_death_signal(signal.SIGTERM)
    # The supervisor may have died between our fork and the prctl; no signal would ever come then.
    if os.getppid() != supervisor:
        print(f"supervisor {supervisor} is gone; not starting {cmd[0]}", file=sys.stderr)
        return 1
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    raise SystemExit(main())

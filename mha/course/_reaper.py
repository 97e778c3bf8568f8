"""Run a command and, when it ends or we are told to stop, kill every process it started, even detached ones.

    python -I -S _reaper.py -- COMMAND...

Used where no better isolation exists (no bubblewrap, not root). The reaper marks itself a child subreaper
(Linux `PR_SET_CHILD_SUBREAPER`): a process that detaches itself (`setsid`, a double fork) is adopted by the reaper
instead of by init, so the reaper can find it and kill it. Standard library only, so that it starts in milliseconds.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def children(pid: int) -> list[int]:
    """Ids of the processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if len(fields) > 1 and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def kill_descendants() -> None:
    """Kill children until none is left: the children of a killed child are adopted by us, then killed in turn."""
    me = os.getpid()
    for _ in range(10_000):
        found = children(me)
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    break
            except ChildProcessError:
                break


class Stopped(Exception):
    """The grader asked us to stop."""


def _stop(*_) -> None:
    raise Stopped


def main(argv: list[str]) -> int:
    if argv[:1] != ["--"] or len(argv) < 2:
        print("usage: _reaper.py -- COMMAND...", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)  # if the grader dies, we clean up and go too
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("warning: could not become a child subreaper; detached processes may survive", file=sys.stderr)
    signal.signal(signal.SIGTERM, _stop)
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            os.execvp(argv[1], argv[1:])
        finally:
            os._exit(127)
    status = 128 + signal.SIGTERM
    try:
        while True:
            pid, raw = os.waitpid(-1, 0)  # adopted orphans are reaped here too
            if pid == child:
                status = os.waitstatus_to_exitcode(raw)
                break
    except (Stopped, ChildProcessError):
        pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    kill_descendants()
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

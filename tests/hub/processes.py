"""Every process the hub test starts, and every port they listen on: watched while it runs, all stopped at the end.

Linux only (it reads /proc). The hub starts the single-user servers in sessions of their own, and they start the
kernels, so killing one process group is not enough: a thread records the whole tree under the hub every half
second (a process orphaned later is still on the list), and the servers and kernels carry a marker in their
environment, found again at the end even if their parent died first.
"""

import os
import signal
import threading
import time
from pathlib import Path


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[19])


def parent(pid: int) -> int | None:
    stat = _stat(pid)
    return stat[0] if stat else None


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def memory_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def _listening() -> dict[int, int]:
    """socket inode -> port, for every TCP socket listening on this machine."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                found[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    return found


def listening_ports(pids) -> set[int]:
    """The TCP ports the given processes listen on."""
    sockets = _listening()
    ports = set()
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        for link in links:
            if link.startswith("socket:["):
                inode = int(link[8:-1])
                if inode in sockets:
                    ports.add(sockets[inode])
    return ports


def port_is_listening(port: int) -> bool:
    return port in _listening().values()


class Tracker:
    """Records every descendant of `root` (and every process carrying `marker`) until stopped.

    Args:
        root: the pid of the process the test started.
        marker: "NAME=VALUE" set in the environment of the servers the hub spawns.
    """

    def __init__(self, root: int, marker: str):
        self.root, self.marker = root, marker
        self.seen: dict[int, tuple[int, str]] = {}  # pid -> (start time, command line)
        self.ports: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _alive(self, pid: int, start: int) -> bool:
        stat = _stat(pid)
        return stat is not None and stat[1] == start

    def snapshot(self) -> None:
        parents = {}
        for pid in _pids():
            stat = _stat(pid)
            if stat:
                parents[pid] = stat
        tree, grew = {self.root}, True
        while grew:
            grew = False
            for pid, (ppid, _) in parents.items():
                if ppid in tree and pid not in tree:
                    tree.add(pid)
                    grew = True
        key, _, value = self.marker.partition("=")
        for pid in parents:
            if pid not in tree and pid not in self.seen and environ(pid).get(key) == value:
                tree.add(pid)
        for pid in tree:
            if pid in parents and pid not in self.seen:
                self.seen[pid] = (parents[pid][1], cmdline(pid))
        self.ports |= listening_ports(pid for pid in self.seen if pid in parents)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            self.snapshot()

    def alive(self) -> list[int]:
        return [pid for pid, (start, _) in self.seen.items() if self._alive(pid, start)]

    def stop_all(self, grace: float = 20.0) -> list[str]:
        """Stop the watch, then every process still alive: SIGTERM, then SIGKILL after `grace` s; what needed it."""
        self.snapshot()
        self._stop.set()
        self._thread.join()
        self.snapshot()
        forced = []
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            alive = self.alive()
            if not alive:
                break
            if sig == signal.SIGKILL:
                forced = [self.seen[pid][1][:120] for pid in alive]
            for pid in alive:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.2)
        return forced

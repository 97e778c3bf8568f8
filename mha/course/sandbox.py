"""Run one submitted notebook's process sealed off from everything else, with limits, and end it completely.

Three levels of isolation, the best the machine allows (`detect`):

- `bwrap`: bubblewrap. The process sees a fresh root holding only the system's programs, Python and the course's
  environment (all read-only), its own working folder, and private `/tmp` and home; no network, its own process
  namespace (every process it starts dies with it), no way to gain privileges. Run as root, it also drops to an
  unprivileged user of its own, one per parallel job.
- `uid`: root without bubblewrap. The process runs as an unprivileged user of its own, one per parallel job; every
  process of that user is killed at the end. It can still read what any user may read and reach the network.
- `none`: neither. The process runs as you, with your permissions: it can read and change your files. Every
  process it starts is killed at the end, unless it escapes on purpose.

Limits, set before the notebook runs: memory (address space per process), processes (tasks of the user), the
largest file written, CPU time per process, wall time, and the output kept (the rest is read and discarded).
"""

import os
import pwd
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

MODES = ("bwrap", "uid", "none")
HOME = "/home/student"  # the working folder, as the process sees it under bubblewrap
COURSE = "/opt/mha-course"  # under bubblewrap, the folder holding the grader's own mha package (read-only)

# Runs a module of the course package the grader itself imported, whatever the notebook's Python would find:
# `python -I -c BOOT COURSE_PARENT MODULE ARGS...`. -I keeps the submission's folder, PYTHONPATH and user site out.
_BOOT = (
    "import runpy, sys\n"
    "sys.path.insert(0, sys.argv.pop(1))\n"
    "sys.argv[0] = sys.argv.pop(1)\n"
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
)


def _course_parent(mode: str) -> str:
    """The folder that holds the grader's mha package, as the sandboxed process sees it."""
    import mha

    return COURSE if mode == "bwrap" else str(Path(mha.__file__).resolve().parent.parent)


def course_command(mode: str, module: str, *args: str) -> list[str]:
    """The command that runs `python -m module args` in the sandbox, with the grader's own course package.

    The grader may have imported mha from the course's folder (its working folder) rather than an installed copy;
    the notebook's process must run the same code, never another copy it would find on its own.
    """
    return [sys.executable, "-I", "-c", _BOOT, _course_parent(mode), module, *args]


_FIRST_UID = 64100  # unprivileged users for parallel jobs: _FIRST_UID, _FIRST_UID + 1, ...
_TAIL = 64 << 10  # bytes of output kept to say how a notebook ended


@dataclass(frozen=True)
class Limits:
    """What one notebook's process may use.

    Args:
        timeout: wall seconds to run the notebook's cells (default 120).
        call_timeout: wall seconds for the calls of one exercise afterwards (default 30).
        memory_mb: address space of each process, in MiB (default 4096).
        processes: processes and threads the notebook may have at once (default 128).
        file_size_mb: largest file it may write, in MiB (default 256).
        cpu_seconds: CPU time of each process (default 600).
        output_mb: output read and kept; the rest is read and discarded (default 8).
    """

    timeout: float = 120.0
    call_timeout: float = 30.0
    memory_mb: int = 4096
    processes: int = 128
    file_size_mb: int = 256
    cpu_seconds: int = 600
    output_mb: float = 8.0

    def problems(self) -> list[str]:
        """What is wrong with these limits (empty: all fine)."""
        out = []
        for name in ("timeout", "call_timeout", "memory_mb", "processes", "file_size_mb", "cpu_seconds", "output_mb"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0 or value != value or value == float("inf"):
                out.append(f"{name} must be a positive number, got {value!r}")
        if not out and self.memory_mb < 512:
            out.append(f"memory_mb must be at least 512 (Python and PyTorch alone need that), got {self.memory_mb}")
        if not out and self.processes < 8:
            out.append(f"processes must be at least 8, got {self.processes}")
        return out

    def rlimits(self) -> dict[str, int]:
        """The resource limits the notebook's process sets on itself before running any cell."""
        return {
            "RLIMIT_AS": int(self.memory_mb) << 20,
            "RLIMIT_FSIZE": int(self.file_size_mb) << 20,
            "RLIMIT_CPU": int(self.cpu_seconds),
            "RLIMIT_NPROC": int(self.processes),
            "RLIMIT_CORE": 0,
        }


def detect(requested: str = "auto") -> str:
    """The isolation to use: `requested` if not "auto", else the best available."""
    if requested != "auto":
        if requested not in MODES:
            raise ValueError(f"isolation must be one of auto, {', '.join(MODES)}; got {requested!r}")
        if requested == "bwrap" and not shutil.which("bwrap"):
            raise ValueError("isolation bwrap asked for, but bubblewrap (`bwrap`) is not installed")
        if requested == "uid" and os.geteuid() != 0:
            raise ValueError("isolation uid needs root (it runs each notebook as an unprivileged user)")
        return requested
    if shutil.which("bwrap"):
        return "bwrap"
    return "uid" if os.geteuid() == 0 else "none"


def describe(mode: str) -> str:
    """One paragraph on what this level of isolation protects, for the instructor."""
    if mode == "bwrap":
        return (
            "isolation: bubblewrap. Each notebook sees only its own copy, read-only Python and course, private /tmp "
            "and home, no network; every process it starts dies with it"
            + ("; it runs as an unprivileged user of its own." if os.geteuid() == 0 else ".")
        )
    if mode == "uid":
        return (
            "ISOLATION IS PARTIAL (without bubblewrap): each notebook runs as an unprivileged user of its "
            "own and its processes are killed at the end, but it can read every file any user may read (other "
            "submissions too, if they are world-readable) and reach the network. Install bubblewrap "
            "(e.g. `apt-get install bubblewrap`) for full isolation."
        )
    return (
        "NO ISOLATION (without bubblewrap, and not as root): every notebook runs AS YOU, with your "
        "permissions. It can read and change your files, other submissions and this course's environment, and "
        "reach the network; a process started on purpose to escape may outlive the run. Grades come only from "
        "what its functions compute, but grade untrusted submissions in a container or an account of their own, "
        "or install bubblewrap (e.g. `apt-get install bubblewrap`)."
    )


def _has_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


class Users:
    """Unprivileged user ids that no account uses, one per parallel job, held by this process alone (root only).

    Each id is claimed with a lock file, so that two gradings on one machine never share a user: at the end of a
    notebook every process of its user is killed, which must never reach another grading's notebook. A claimed id
    is cleared of any process left by a grading that died. `release()` (or the end of this process) frees them.

    Args:
        count: how many ids.
    """

    def __init__(self, count: int):
        import fcntl
        import stat

        # one place for every grading on the machine, whatever its TMPDIR; ours alone (root's, 0700, not a link)
        folder = Path("/run/lock" if Path("/run/lock").is_dir() else "/tmp") / "mha-grade-users"
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise RuntimeError(f"{folder} is not a private folder of this user: remove it and grade again")
        self.ids: list[int] = []
        self._locks = []
        uid = _FIRST_UID - 1
        while len(self.ids) < count:
            uid += 1
            if _has_account(uid):
                continue
            lock = open(folder / f"{uid}.lock", "w")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()  # another grading holds it
                continue
            kill_user(uid)
            self.ids.append(uid)
            self._locks.append(lock)

    def release(self) -> None:
        for lock in self._locks:
            lock.close()
        self._locks, self.ids = [], []


class Process:
    """One notebook's process in its sandbox: started with `start`, ended (with everything it started) by `stop`.

    Args:
        mode: one of MODES.
        workdir: its private working folder (it holds the notebook's copy).
        argv: the command run inside (Python and its arguments).
        limits: the Limits.
        uid: the unprivileged user to run as (root only; None: stay who we are).
        pass_fds: file descriptors the command inherits.
        env: more environment variables for the command.
    """

    def __init__(
        self, mode: str, workdir: Path, argv: list[str], limits: Limits, uid: int | None, pass_fds=(), env=None
    ):
        self.mode, self.workdir, self.argv, self.limits, self.uid = mode, workdir, argv, limits, uid
        self.pass_fds, self.extra_env = tuple(pass_fds), dict(env or {})
        self.cell_errors: list[dict] = []  # what the process said went wrong in its cells (informative only)
        self.proc: subprocess.Popen | None = None
        self.output_bytes = 0
        self._tail = bytearray()
        self._reader: threading.Thread | None = None
        self.killed_by_us = False

    # ------------------------------------------------------------------------------------------ start

    def start(self) -> None:
        env = self._environment()
        if self.mode == "bwrap":
            cmd, cwd, preexec = self._bwrap_command(env), None, None
        elif self.mode == "uid":
            cmd, cwd, preexec = self.argv, self.workdir, _dropper(self.uid)
        else:
            reaper = Path(__file__).with_name("_reaper.py")
            cmd, cwd, preexec = [sys.executable, "-I", "-S", str(reaper), "--", *self.argv], self.workdir, None
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=None if self.mode == "bwrap" else env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=self.pass_fds,
            start_new_session=True,
            preexec_fn=preexec,
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _environment(self) -> dict[str, str]:
        home = HOME if self.mode == "bwrap" else str(self.workdir)
        tmp = "/tmp" if self.mode == "bwrap" else str(self.workdir / ".tmp")
        return {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": home,
            "TMPDIR": tmp,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": f"{tmp}/matplotlib",
            "IPYTHONDIR": f"{home}/.ipython",
            "XDG_CACHE_HOME": f"{tmp}/cache",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    def _bwrap_command(self, env: dict[str, str]) -> list[str]:
        cmd = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net", "--unshare-ipc"]
        cmd += ["--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
        if os.geteuid() != 0:
            cmd += ["--unshare-user", "--disable-userns"]
        made: set[str] = set()

        def directory(path: str) -> None:  # every folder on the way, readable by the unprivileged user
            for parent in reversed(Path(path).parents):
                if str(parent) != "/" and str(parent) not in made:
                    made.add(str(parent))
                    cmd.extend(["--perms", "0755", "--dir", str(parent)])

        cmd += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(256 << 20), "--tmpfs", "/tmp"]
        system = []
        for top in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "etc"):
            path = Path("/") / top
            if path.is_symlink():
                cmd += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                cmd += ["--ro-bind", str(path), str(path)]
                system.append(str(path))
        for path in _python_paths():
            if any(path == top or path.startswith(top + "/") for top in system):
                continue  # a system Python: already there
            directory(path)
            cmd += ["--ro-bind", path, path]
        import mha

        directory(COURSE + "/mha")
        cmd += ["--ro-bind", str(Path(mha.__file__).resolve().parent), COURSE + "/mha"]
        directory(HOME)
        cmd += ["--bind", str(self.workdir), HOME, "--chdir", HOME, "--clearenv"]
        for key, value in env.items():
            cmd += ["--setenv", key, value]
        return [*cmd, "--", *self.argv]

    def _drain(self) -> None:
        """Read the process's output as it comes, keeping only the last bytes and the count."""
        limit = int(self.limits.output_mb * (1 << 20))
        stream = self.proc.stdout
        while True:
            try:
                chunk = stream.read1(1 << 16)
            except (OSError, ValueError):
                break
            if not chunk:
                break
            self.output_bytes += len(chunk)
            if self.output_bytes - len(chunk) < limit:
                self._tail += chunk
                del self._tail[: max(0, len(self._tail) - _TAIL)]

    # ------------------------------------------------------------------------------------------ end

    @property
    def output_over_limit(self) -> bool:
        return self.output_bytes > self.limits.output_mb * (1 << 20)

    def last_line(self) -> str:
        """The last non-empty line it printed (before the output limit), at most 200 characters."""
        text = self._tail.decode("utf-8", "replace")
        lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
        return lines[-1][:200] if lines else ""

    def wait_briefly(self, seconds: float = 2.0) -> int | None:
        """Its exit status if it ends within `seconds`, else None."""
        try:
            return self.proc.wait(timeout=seconds) if self.proc else None
        except subprocess.TimeoutExpired:
            return None

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the process and all its descendants, as the kernel counts them."""
        if self.proc is None:
            return 0.0
        parents, times = {}, {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except (OSError, IndexError):
                    continue
                parents[int(entry)] = int(fields[1])
                times[int(entry)] = sum(int(x) for x in fields[11:15])  # utime, stime, and of reaped children
        mine, grew = {self.proc.pid}, True
        while grew:
            more = {pid for pid, parent in parents.items() if parent in mine} - mine
            grew, mine = bool(more), mine | more
        return sum(times.get(pid, 0) for pid in mine) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int | None:
        """End the process and every process it started; its exit status (None if we had to kill it)."""
        if self.proc is None:
            return None
        status = self.proc.poll()
        if status is None:
            self.killed_by_us = True
            if self.mode == "none":
                _signal_group(self.proc.pid, signal.SIGTERM)  # the reaper kills what it adopted, then exits
                try:
                    self.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
            _signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.kill()
        self.proc.wait()
        if self.mode in ("uid", "bwrap") and self.uid is not None:
            kill_user(self.uid)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()
        return None if self.killed_by_us else status


PROBE = (
    "import importlib.util, os, sys\n"
    "if sys.argv[1] != '-':\n"
    "    os.setgroups([]); os.setgid(int(sys.argv[1])); os.setuid(int(sys.argv[1]))\n"
    "import IPython\n"
    "course = importlib.util.find_spec('mha')\n"
    "assert course, 'the course package mha cannot be found'\n"
    "open(os.path.join(os.path.dirname(course.origin), 'course', '_runner.py')).close()\n"
    "open('probe', 'w').write('ok')\n"
)


def probe(mode: str, uid: int | None, limits: Limits = Limits()) -> str | None:
    """Try the sandbox once with nothing in it; None if it works, else what went wrong."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mha-probe-") as folder:
        workdir = Path(folder) / "work"
        workdir.mkdir()
        os.chmod(folder, 0o711)
        if uid is not None:
            os.chown(workdir, uid, uid)
        inside = str(uid) if mode == "bwrap" and uid is not None else "-"
        code = "import sys; sys.path.insert(0, sys.argv.pop(1))\n" + PROBE  # the grader's course, as the runner
        process = Process(mode, workdir, [sys.executable, "-I", "-c", code, _course_parent(mode), inside], limits, uid)
        try:
            process.start()
        except OSError as error:
            return (
                f"could not start Python as an unprivileged user ({error}): every folder on the way to Python, "
                f"its environment and the course must be readable by other users; or install bubblewrap"
            )
        status = process.wait_briefly(120)
        process.stop()
        if status != 0 or not (workdir / "probe").exists():
            return f"a test run ended with status {status}: {process.last_line() or 'no output'}"
    return None


def _python_paths() -> list[str]:
    """Folders the notebook's Python needs, read-only: the interpreter, its environment, the course package."""
    import site

    import mha

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(mha.__file__).resolve().parent)}
    paths.update(site.getsitepackages())
    paths.add(str(Path(sys.executable).resolve().parent))
    existing = sorted({str(Path(p).resolve()) for p in paths if Path(p).exists()})
    # a folder inside another bound folder needs no binding of its own
    return [p for p in existing if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in existing)]


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def drop_privileges(uid: int) -> None:
    """Become the unprivileged user `uid` (group `uid`, no supplementary groups); irreversible."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError(f"could not become user {uid}")


def _dropper(uid: int | None):
    if uid is None:
        return None

    def drop() -> None:
        drop_privileges(uid)
        die_with_parent()  # after the change of user, which clears it

    return drop


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when the thread that started it ends (Linux)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG


def processes_of(uid: int) -> list[int]:
    """Ids of the processes whose real user is `uid`."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/status") as f:
                    for line in f:
                        if line.startswith("Uid:"):
                            if int(line.split()[1]) == uid:
                                found.append(int(entry.name))
                            break
            except (OSError, ValueError):
                continue
    return found


def kill_user(uid: int, patience: float = 5.0) -> bool:
    """Kill every process of user `uid` (root only), as that user, until none is left; True if none is left."""
    deadline = time.monotonic() + patience
    while processes_of(uid):
        if time.monotonic() > deadline:
            return False
        # kill(-1) from a process of that user reaches exactly that user's processes (and spares itself)
        subprocess.run(["/bin/true"], preexec_fn=_kill_all_as(uid), check=False)
        time.sleep(0.02)
    return True


def _kill_all_as(uid: int):
    def kill() -> None:
        drop_privileges(uid)
        os.kill(-1, signal.SIGKILL)

    return kill


def apply_limits(limits: dict[str, int]) -> None:
    """Set the soft and hard resource limits named by `Limits.rlimits` on this process (never raising one)."""
    for name, value in limits.items():
        which = getattr(resource, name)
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        # CPU: a warning signal at the soft limit, the kill a few seconds later
        resource.setrlimit(which, (value, value + 5 if name == "RLIMIT_CPU" else value))


def count_tasks(uid: int) -> int:
    """Processes and threads of user `uid` now, so that a process limit can leave room for the ones it has."""
    total = 0
    for pid in processes_of(uid):
        try:
            total += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            continue
    return total

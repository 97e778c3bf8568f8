"""Run one submitted notebook's process sealed off from everything else, with limits, and end it completely.

Three levels of isolation, the best the machine allows (`detect`):

- `bwrap`: bubblewrap. The process sees a fresh root holding only the system's programs, Python and the course's
  environment (all read-only); its home (its work area, holding a copy of its notebook), `/tmp` and `/dev/shm` are
  private size-capped memory file systems that vanish with it; no network, its own process namespace (every process
  it starts dies with it, and `/proc` shows none of the machine's), no way to gain privileges. Run as root, it also
  drops to an unprivileged user of its own, one per parallel job.
- `uid`: root without bubblewrap. The process runs as an unprivileged user of its own, one per parallel job, with
  its work area, `/tmp`, `/var/tmp` and `/dev/shm` private size-capped memory file systems; every process of that
  user is killed at the end. It can still read what any user may read and reach the network.
- `none`: neither. The process runs as you, with your permissions: it can read and change your files. Every
  process it starts is killed at the end, unless it escapes on purpose.

Limits, set before the notebook runs and beyond its reach: memory (address space per process, and the resident
memory of all its processes together, watched from outside), processes (tasks of the user), the largest file
written, the bytes and the number of files of its work area, CPU time per process, wall time, and the output kept
(the rest is read and discarded). At every level, no process of the notebook may create a user namespace (a
seccomp filter), so none can gain the capabilities that come with one.
"""

import json
import os
import pwd
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

MODES = ("bwrap", "uid", "none")
HOME = "/home/student"  # the working folder, as the process sees it under bubblewrap
COURSE = "/opt/mha-course"  # under bubblewrap, the folder holding the grader's own mha package (read-only)
SCRATCH_MB = 64  # /tmp and /dev/shm (and /var/tmp without bubblewrap): each a memory file system of this size
WATCH_SECONDS = 0.5  # how often the resident memory (and, where the kernel cannot cap it, the files) is looked at

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
        call_timeout: wall seconds for all the exercise calls of one notebook afterwards, the grader's own deadline
            (default 60); each case also gets at most its check's time limit and 2 s.
        memory_mb: address space of each process, and resident memory of all its processes together, in MiB
            (default 4096).
        processes: processes and threads the notebook may have at once (default 128).
        file_size_mb: largest file it may write, in MiB (default 256).
        disk_mb: bytes its work area (its home) may hold, in MiB (default 512); `/tmp` and `/dev/shm` hold 64 MiB.
        files: files and folders its work area may hold (default 20000), and `/tmp` and `/dev/shm` each.
        cpu_seconds: CPU time of each process (default 600).
        output_mb: output read and kept; the rest is read and discarded (default 8).
    """

    timeout: float = 120.0
    call_timeout: float = 60.0
    memory_mb: int = 4096
    processes: int = 128
    file_size_mb: int = 256
    disk_mb: int = 512
    files: int = 20000
    cpu_seconds: int = 600
    output_mb: float = 8.0

    def problems(self) -> list[str]:
        """What is wrong with these limits (empty: all fine)."""
        out = []
        names = ("timeout", "call_timeout", "memory_mb", "processes", "file_size_mb", "disk_mb", "files")
        for name in (*names, "cpu_seconds", "output_mb"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0 or value != value or value == float("inf"):
                out.append(f"{name} must be a positive number, got {value!r}")
        if not out and self.memory_mb < 512:
            out.append(f"memory_mb must be at least 512 (Python and PyTorch alone need that), got {self.memory_mb}")
        if not out and self.processes < 8:
            out.append(f"processes must be at least 8, got {self.processes}")
        if not out and self.disk_mb < 16:
            out.append(f"disk_mb must be at least 16 (the notebook's copy and its settings), got {self.disk_mb}")
        if not out and self.files < 100:
            out.append(f"files must be at least 100, got {self.files}")
        return out

    def most_mb(self) -> int:
        """The most memory one notebook can hold, in MiB: its processes' (`memory_mb`) and its memory file systems
        full (its home, `disk_mb`, and `/tmp`, `/var/tmp`, `/dev/shm`). A batch system counts both, so a job that
        grades N notebooks at once must allow N times this and the grader's own memory."""
        return int(self.memory_mb) + int(self.disk_mb) + 3 * SCRATCH_MB

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
            "isolation: bubblewrap. Each notebook sees only its own copy, read-only Python and course, a private "
            "size-capped home and /tmp, no network, none of the machine's processes; every process it starts dies "
            "with it, and none may create a user namespace"
            + ("; it runs as an unprivileged user of its own." if os.geteuid() == 0 else ".")
        )
    if mode == "uid":
        return (
            "ISOLATION IS PARTIAL (without bubblewrap): each notebook runs as an unprivileged user of its "
            "own, in a private size-capped work folder and /tmp, and its processes are killed at the end, but it can "
            "read every file any user may read (other submissions too, if they are world-readable) and reach the "
            "network. Install bubblewrap (e.g. `apt-get install bubblewrap`) for full isolation."
        )
    return (
        "NO ISOLATION (without bubblewrap, and not as root): every notebook runs AS YOU, with your "
        "permissions. It can read and change your files, other submissions and this course's environment, fill "
        "the disk, and reach the network; a process started on purpose to escape may outlive the run. Grades come "
        "only from what its functions compute, but grade untrusted submissions in a container or an account of "
        "their own, or install bubblewrap (e.g. `apt-get install bubblewrap`)."
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
        workdir: a folder of the grader's holding the files to copy into the process's work area (its notebook):
            under bubblewrap they are copied into a private memory file system; without bubblewrap, as root, such a
            file system is mounted on the folder, for that process alone; with no isolation, it is the work area.
        argv: the command run inside (Python and its arguments).
        limits: the Limits.
        uid: the unprivileged user to run as (root only; None: stay who we are).
        pass_fds: file descriptors the command inherits.
        env: more environment variables for the command.
        read_only: (folder, where it appears under bubblewrap) pairs: folders of the grader's the process reads and
            cannot change (without bubblewrap it sees each at its own path; with no isolation, nothing stops it).
    """

    def __init__(
        self,
        mode: str,
        workdir: Path,
        argv: list[str],
        limits: Limits,
        uid: int | None,
        pass_fds=(),
        env=None,
        read_only=(),
    ):
        self.mode, self.workdir, self.argv, self.limits, self.uid = mode, workdir, argv, limits, uid
        self.pass_fds, self.extra_env = tuple(pass_fds), dict(env or {})
        self.read_only = [(str(folder), str(inside)) for folder, inside in read_only]
        self.cell_errors: list[dict] = []  # what the process said went wrong in its cells (informative only)
        self.proc: subprocess.Popen | None = None
        self.output_bytes = 0
        self._tail = bytearray()
        self._reader: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._ended = threading.Event()
        self._inner: int | None = None  # under bubblewrap, its first process inside (to see its file systems)
        self.killed_by_us = False
        self.over: str = ""  # "memory" or "files": the watcher stopped it for that
        self.peak_memory = 0  # bytes: the most its processes held in memory together, as the watcher saw it

    # ------------------------------------------------------------------------------------------ start

    def start(self) -> None:
        env = self._environment()
        fds, opened, info = list(self.pass_fds), [], None
        try:
            if self.mode == "bwrap":
                cmd, info = self._bwrap_command(env, fds, opened)
                cwd, environment = None, {"PATH": "/usr/bin:/bin"}  # bubblewrap's own process: nothing of ours
            elif self.mode == "uid":
                cmd, info, cwd, environment = self._sealed(self._uid_spec()), None, self.workdir, env
            else:
                (self.workdir / ".tmp").mkdir(exist_ok=True)  # its TMPDIR
                reaper = [sys.executable, "-I", "-S", str(Path(__file__).with_name("_reaper.py")), "--"]
                cmd, info, cwd, environment = reaper + self._sealed({"require_seccomp": False}), None, self.workdir, env
            self.proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=fds,
                start_new_session=True,
            )
        except BaseException:
            for fd in info or ():
                os.close(fd)
            raise
        finally:
            for fd in opened:
                os.close(fd)
        if info is not None:
            os.close(info[1])
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        self._watcher = threading.Thread(target=self._watch, args=(info[0] if info else None,), daemon=True)
        self._watcher.start()

    def _sealed(self, spec: dict, seal: str | None = None) -> list[str]:
        seal = seal or str(Path(__file__).with_name("_seal.py"))
        return [sys.executable, "-I", "-S", seal, json.dumps(spec), "--", *self.argv]

    def _uid_spec(self) -> dict:
        size, files = int(self.limits.disk_mb) << 20, int(self.limits.files)
        scratch = [[path, SCRATCH_MB << 20, files, 0o1777] for path in ("/tmp", "/var/tmp", "/dev/shm")]
        mounts = [[str(self.workdir), size, files, 0o700]] + [m for m in scratch if Path(m[0]).is_dir()]
        reach = _python_paths() + [folder for folder, _ in self.read_only]
        return {"mount": mounts, "uid": self.uid, "reach": reach}

    def _environment(self) -> dict[str, str]:
        home = HOME if self.mode == "bwrap" else str(self.workdir)
        tmp = str(self.workdir / ".tmp") if self.mode == "none" else "/tmp"
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

    def _bwrap_command(self, env: dict[str, str], fds: list[int], opened: list[int]) -> tuple[list[str], tuple]:
        """bubblewrap's command: its options travel in a file descriptor (`--args`), so that the sandbox's first
        process shows nothing of the machine (its folders, the grader's environment) in `/proc/1/cmdline`."""
        root = os.geteuid() == 0
        cmd = ["--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net", "--unshare-ipc"]
        cmd += ["--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
        if not root:
            cmd += ["--unshare-user", "--disable-userns"]
        made: set[str] = set()

        def directory(path: str) -> None:  # every folder on the way, readable by the unprivileged user
            for parent in reversed(Path(path).parents):
                if str(parent) != "/" and str(parent) not in made:
                    made.add(str(parent))
                    cmd.extend(["--perms", "0755", "--dir", str(parent)])

        scratch = str(SCRATCH_MB << 20)
        cmd += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", scratch, "--tmpfs", "/dev/shm"]
        cmd += ["--remount-ro", "/dev", "--perms", "1777", "--size", scratch, "--tmpfs", "/tmp"]
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
        for folder, inside in self.read_only:
            directory(inside)
            cmd += ["--ro-bind", folder, inside]
        directory(HOME)
        # its home: a memory file system of its own, writable by the user it becomes, that vanishes with it
        cmd += ["--perms", "0777" if root else "0700", "--size", str(int(self.limits.disk_mb) << 20), "--tmpfs", HOME]
        for entry in sorted(os.scandir(self.workdir), key=lambda e: e.name):
            if entry.is_file(follow_symlinks=False):
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
                opened.append(fd)
                fds.append(fd)
                cmd += ["--perms", "0644", "--file", str(fd), f"{HOME}/{entry.name}"]
        cmd += ["--chdir", HOME, "--clearenv"]
        for key, value in env.items():
            cmd += ["--setenv", key, value]
        options = os.memfd_create("bwrap-options", 0)
        opened.append(options)
        os.write(options, b"".join(arg.encode() + b"\0" for arg in cmd))
        os.lseek(options, 0, os.SEEK_SET)
        fds.append(options)
        info = os.pipe()
        fds.append(info[1])
        files = int(self.limits.files)
        spec: dict = {"uid": self.uid if root else None}
        if root:  # bubblewrap sets their size; the number of files is set from inside, as root, before anything runs
            spec["remount"] = [[HOME, int(self.limits.disk_mb) << 20, files]]
            spec["remount"] += [[path, SCRATCH_MB << 20, files] for path in ("/tmp", "/dev/shm")]
        sealed = self._sealed(spec, f"{COURSE}/mha/course/_seal.py")
        return ["bwrap", "--args", str(options), "--info-fd", str(info[1]), "--", *sealed], info

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

    def _watch(self, info: int | None) -> None:
        """Watch from outside what the kernel cannot cap per notebook: the memory of all its processes together, and
        (bubblewrap without root) the number of files in its file systems; stop it when it goes past a limit."""
        if info is not None:
            data = b""
            while len(data) < 4096:
                chunk = os.read(info, 4096)
                if not chunk:
                    break
                data += chunk
            os.close(info)
            try:
                self._inner = int(json.loads(data)["child-pid"])
            except (ValueError, KeyError, TypeError):
                self._inner = None
        memory = int(self.limits.memory_mb) << 20
        while not self._ended.wait(WATCH_SECONDS):
            pids = processes_of(self.uid) if self.mode == "uid" and self.uid is not None else self._tree()
            resident = sum(_resident(pid) for pid in pids)
            self.peak_memory = max(self.peak_memory, resident)
            files = self._files() if self.mode == "bwrap" and os.geteuid() != 0 else 0
            if resident > memory or files > self.limits.files:
                self.over = "memory" if resident > memory else "files"
                self._kill()
                return

    def _tree(self) -> set[int]:
        """The process and all its descendants, by their parent ids in /proc."""
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                fields = _stat_fields(int(entry))
                if fields:
                    parents[int(entry)] = int(fields[1])
        mine, grew = {self.proc.pid}, True
        while grew:
            more = {pid for pid, parent in parents.items() if parent in mine} - mine
            grew, mine = bool(more), mine | more
        return mine

    def _files(self) -> int:
        """Files and folders in the sandbox's home, /tmp and /dev/shm, seen through its first process."""
        if self._inner is None:
            return 0
        used = 0
        for path in (HOME, "/tmp", "/dev/shm"):
            try:
                info = os.statvfs(f"/proc/{self._inner}/root{path}")
            except OSError:
                continue
            used += max(0, info.f_files - info.f_ffree - 1)  # the root folder is not the notebook's
        return used

    def _kill(self) -> None:
        self.killed_by_us = True
        _signal_group(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.kill()
        except OSError:
            pass
        if self.mode == "uid" and self.uid is not None:
            kill_user(self.uid)

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
        ticks = 0
        for pid in self._tree():
            fields = _stat_fields(pid)
            if fields:
                ticks += sum(int(x) for x in fields[11:15])  # utime, stime, and of reaped children
        return ticks / os.sysconf("SC_CLK_TCK")

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
        self._ended.set()
        if self.mode in ("uid", "bwrap") and self.uid is not None:
            kill_user(self.uid)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()
        return None if self.killed_by_us else status


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command's name (state, parent, ...), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _resident(pid: int) -> int:
    """Bytes of memory a process holds, its pages shared with others counted in proportion (forked children share
    their parent's pages: the proportional set size), else its resident set."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) << 10
    except (OSError, ValueError, IndexError):
        pass
    fields = _stat_fields(pid)
    try:
        return int(fields[21]) * os.sysconf("SC_PAGE_SIZE") if fields else 0  # rss, in pages
    except (IndexError, ValueError):
        return 0


PROBE = (
    "import ctypes, importlib.util, os, sys\n"
    "import IPython\n"
    "course = importlib.util.find_spec('mha')\n"
    "assert course, 'the course package mha cannot be found'\n"
    "open(os.path.join(os.path.dirname(course.origin), 'course', '_runner.py')).close()\n"
    "open(os.path.join(os.environ['TMPDIR'], 'probe'), 'w').write('ok')\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "assert libc.unshare(0x10000000) != 0, 'the sandbox can create a user namespace'\n"
    "open('probe', 'w').write('ok')\n"
    "print('probe: sealed', flush=True)\n"
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
        code = "import sys; sys.path.insert(0, sys.argv.pop(1))\n" + PROBE  # the grader's course, as the runner
        process = Process(mode, workdir, [sys.executable, "-I", "-c", code, _course_parent(mode)], limits, uid)
        try:
            process.start()
        except OSError as error:
            return f"could not start the sandbox ({error})"
        status = process.wait_briefly(120)
        process.stop()
        if status != 0 or "probe: sealed" not in process.last_line():
            said = process.last_line() or "no output"
            advice = ""
            if mode == "uid" or (mode == "bwrap" and uid is not None):
                advice = (
                    "; an unprivileged user must be able to read Python, its environment and the course "
                    "(their files: the folders above them may be private)"
                )
            return f"a test run ended with status {status}: {said}{advice}"
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


def remove_tree(path: Path) -> None:
    """Remove a folder and everything in it, however deep, without recursion, never following a link.

    It walks down holding one open folder at a time and comes back up through "..", so that neither Python's
    recursion limit, nor the number of open files, nor the length of a path limits the depth. Folders a notebook
    made unreadable are opened up first. Meant for folders nothing else writes to any more (a graded notebook's).
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(path)
        return
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW

    def enter(name: str, parent: int | None) -> int:
        try:
            return os.open(name, flags, dir_fd=parent)
        except PermissionError:
            os.chmod(name, 0o700, dir_fd=parent)
            return os.open(name, flags, dir_fd=parent)

    fd, names = enter(str(path), None), []  # names: the folders entered below `path`, top first
    try:
        while True:
            try:
                os.fchmod(fd, 0o700)  # ours or root's: writable, so that what it holds can go
            except OSError:
                pass
            below = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        below = below or entry.name
                    else:
                        try:
                            os.unlink(entry.name, dir_fd=fd)
                        except FileNotFoundError:
                            pass
            if below is not None:
                inner = enter(below, fd)
                os.close(fd)
                fd = inner
                names.append(below)
                continue
            if not names:
                break
            outer = os.open("..", flags, dir_fd=fd)
            os.close(fd)
            fd = outer
            os.rmdir(names.pop(), dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(path)

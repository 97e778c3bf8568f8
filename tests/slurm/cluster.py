"""A one-node Slurm cluster on this machine, for `make test-slurm`: munge, slurmctld and slurmd from Debian's packages.

Everything it makes lies in one folder of its own: the munge key (made fresh), every socket, configuration, state,
spool, pid and log file, and what the test puts there (the course folder the jobs run in); all removed at the end.
The daemons run in the foreground, each in a process group of its own, and carry a marker in their environment (as
the jobs they start do), so that `stop` finds every process again, also one whose parent died first. Linux only, as
root (Slurm's daemons and the job array run as root on a one-node cluster).
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))
import processes  # noqa: E402

PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "squeue", "scancel")
INSTALL = "apt-get update && apt-get install -y slurm-wlm munge"
# The folders Debian's packages give the daemons by default: the cluster writes nothing there (checked at the end).
SYSTEM_FOLDERS = ("/run/munge", "/var/lib/munge", "/var/log/munge", "/var/lib/slurm", "/var/log/slurm", "/run/slurm")
START_LIMIT_S = 60
# The guide's script asks 4 CPUs and 16 GB per task: the node says it has enough for two tasks at once
# (config_overrides: Slurm believes the configuration, not the hardware; nothing here enforces those limits).
NODE_CPUS, NODE_MEMORY_MB = 8, 32768


def missing() -> str | None:
    """Why a cluster cannot be started on this machine, or None."""
    if sys.platform != "linux":
        return "the Slurm test runs on Linux"
    if os.geteuid() != 0:
        return "the Slurm test runs as root (its daemons and the job array run as root on one node)"
    absent = [p for p in PROGRAMS if not _program(p)]
    if absent:
        return f"{', '.join(absent)} not found: install Slurm and munge (`{INSTALL}`)"
    return None


def _program(name: str) -> str | None:
    """Its full path; the daemons are in /usr/sbin, which a non-login shell's PATH may lack."""
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listing() -> dict[str, list[str]]:
    return {f: sorted(os.listdir(f)) if os.path.isdir(f) else [] for f in SYSTEM_FOLDERS}


class Cluster:
    """munged, slurmctld and slurmd, configured in a temporary folder; `env` is what a shell needs to use them."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="mha-slurm-"))
        self.folder.chmod(0o755)  # munged wants every folder above its socket searchable by all
        self.marker = ("MHA_SLURM_TEST_RUN", secrets.token_hex(8))
        self.env = {**os.environ, "SLURM_CONF": str(self.folder / "slurm.conf"), self.marker[0]: self.marker[1]}
        self.daemons: dict[str, subprocess.Popen] = {}
        self.trackers: list[processes.Tracker] = []
        self.ports = (_free_port(), _free_port())
        self.before = _listing()
        self.version = ""
        self.start_seconds = 0.0

    def log(self, name: str, tail: int = 3000) -> str:
        path = self.folder / "log" / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {name}.log\n{self.log(name)}" for name in ("munged", "slurmctld", "slurmd"))

    def _start(self, name: str, *args: str) -> None:
        out = open(self.folder / "log" / f"{name}.out", "w")
        proc = subprocess.Popen(
            [_program(name), *args], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )  # fmt: skip
        out.close()
        self.daemons[name] = proc
        self.trackers.append(processes.Tracker(proc.pid, "=".join(self.marker)))

    def start(self) -> None:
        """Start the three daemons; a RuntimeError, with their logs, if the node is not idle within a minute."""
        started = time.monotonic()
        f = self.folder
        for name in ("munge", "state", "spool", "log"):
            (f / name).mkdir()
        (f / "munge").chmod(0o755)
        key = f / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        socket_path = f / "munge" / "munge.socket"
        host = socket.gethostname().split(".")[0]
        (f / "slurm.conf").write_text(
            f"""\
ClusterName=mhatest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={self.ports[0]}
SlurmdPort={self.ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={socket_path}
CredType=cred/munge
StateSaveLocation={f / "state"}
SlurmdSpoolDir={f / "spool"}
SlurmctldPidFile={f / "slurmctld.pid"}
SlurmdPidFile={f / "slurmd.pid"}
SlurmctldLogFile={f / "log" / "slurmctld.log"}
SlurmdLogFile={f / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory={NODE_MEMORY_MB} State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
        )
        self.version = subprocess.run([_program("slurmctld"), "-V"], capture_output=True, text=True).stdout.split()[-1]
        self._start(
            "munged", "--foreground", f"--key-file={key}", f"--socket={socket_path}",
            f"--pid-file={f / 'munge' / 'munged.pid'}", f"--seed-file={f / 'munge' / 'munged.seed'}",
            f"--log-file={f / 'log' / 'munged.log'}",
        )  # fmt: skip
        deadline = time.monotonic() + START_LIMIT_S
        while not socket_path.exists():
            self._check(deadline, "munged")
        self._start("slurmctld", "-D", "-i")  # -i: no state from an earlier run (there is none)
        self._start("slurmd", "-D", "-N", host)
        while self.run("sinfo", "-h", "-o", "%T", check=False).strip() != "idle":
            self._check(deadline, "the node")
        self.start_seconds = round(time.monotonic() - started, 1)

    def _check(self, deadline: float, what: str) -> None:
        dead = [name for name, proc in self.daemons.items() if proc.poll() is not None]
        if dead or time.monotonic() > deadline:
            why = f"{', '.join(dead)} exited" if dead else f"{what} was not ready within {START_LIMIT_S} s"
            outs = "\n".join((self.folder / "log" / f"{n}.out").read_text()[-1500:] for n in self.daemons)
            raise RuntimeError(f"the Slurm cluster did not start: {why}\n{outs}\n{self.logs()}")
        time.sleep(0.5)

    def run(self, *command: str, cwd: Path | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [_program(command[0]), *command[1:]], env=self.env, cwd=cwd, capture_output=True, text=True, timeout=60
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr}")
        return result.stdout

    def tasks(self, job: str) -> dict[str, tuple[str, str]]:
        """Array task -> (state, exit code) of every record of the job (a pending range is one record)."""
        out = self.run("scontrol", "-o", "show", "job", job)
        found = {}
        for line in out.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            found[fields.get("ArrayTaskId", "")] = (fields["JobState"], fields["ExitCode"])
        return found

    def stop(self) -> dict:
        """Stop every job and daemon and remove the folder, whatever state they are in; what it took, and what is
        left (nothing, unless something went wrong): processes, listening ports, files in the system's folders."""
        if "slurmctld" in self.daemons and self.daemons["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--user=root", check=False)  # jobs still running, if any, and let them end
            deadline = time.monotonic() + 30
            while self.run("squeue", "-h", check=False).strip() and time.monotonic() < deadline:
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):  # the jobs' node first, munge last: they use it to stop
            proc = self.daemons.get(name)
            if proc is None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        forced = [line for tracker in self.trackers for line in tracker.stop_all(grace=10)]
        seen = {pid for tracker in self.trackers for pid in tracker.seen}
        alive = sorted({pid for tracker in self.trackers for pid in tracker.alive()})
        shutil.rmtree(self.folder, ignore_errors=True)
        open_ports = [p for p in self.ports if processes.port_is_listening(p)]
        after = _listing()
        written = {f: sorted(set(after[f]) - set(self.before[f])) for f in after if after[f] != self.before[f]}
        return {
            "processes": len(seen),
            "killed": forced,
            "alive": alive,
            "ports": open_ports,
            "folder_left": self.folder.exists(),
            "system_files": written,
        }

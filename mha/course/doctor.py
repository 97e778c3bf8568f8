"""Check in a few seconds that this environment can run every lesson: `python -m mha.course doctor`.

For a learner whose notebook will not start, and for an instructor building a JupyterHub image. It checks, wherever
the package is installed (a checkout, or a plain `pip install .` into an image):
- Python, and every package at the version the course pins (the installed package `mha` declares the pins, read
  from requirements-student.txt when it was built);
- the Jupyter kernel the notebooks ask for, and that its Python imports this same `mha`;
- what lesson 05 reads: the pretrained model's wheel and files, and the reference outputs shipped in the package;
- that attention computes what PyTorch computes;
- with `--hub VERSION`, what a JupyterHub's single-user server needs: `jupyterhub` at the hub's version, and
  nbgitpuller for the course's links; and, for grading in that image, the solutions' fingerprints the package ships
  for every lesson the grader knows.
It ends with a one-line verdict and exits 1 if anything fails.
"""

import importlib.metadata
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KERNEL = "mha-course"
DISTRIBUTION = "mha"
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)\s*(;.*)?$")


def _requirements() -> dict[str, str]:
    """name -> pinned version, as the installed package `mha` declares them (empty if its metadata is missing)."""
    try:
        declared = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    pins = {}
    for line in declared:
        match = _PIN.match(line)
        marker = (match.group(3) or "").strip("; ") if match else ""
        if match and not marker.startswith("extra") and _applies(marker):
            pins[match.group(1).lower()] = match.group(2)
    return pins


def _applies(marker: str) -> bool:
    """Whether a pin's environment marker (e.g. `sys_platform == "linux"`, Triton's) holds here; no marker: True."""
    if not marker:
        return True
    from packaging.markers import Marker  # installed with JupyterLab

    return Marker(marker).evaluate()


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _pins(pins: dict[str, str]) -> list[tuple[bool, str]]:
    if not pins:
        return [(False, "the package mha declares no pinned versions: install it with `pip install .` from the course")]
    results = []
    for name, wanted in pins.items():
        version = _version(name)
        if version is None:
            results.append((False, f"{name} is not installed (the course pins {wanted})"))
            continue
        same = version.split("+")[0] == wanted  # 2.13.0+cpu is torch 2.13.0
        results.append((same, f"{name} {version}" + ("" if same else f" (the course pins {wanted})")))
    return results


def _package() -> tuple[bool, str]:
    import importlib.machinery

    import mha

    where = Path(mha.__file__).resolve().parent
    kind = "a checkout" if (where.parent / "pyproject.toml").is_file() else "an installed copy"
    # Run inside the course's folder, Python imports the folder's mha before the installed one: the check would
    # pass for the folder and say nothing of what the notebooks, started elsewhere, get.
    here = Path.cwd().resolve()
    if where.parent == here:
        others = [p for p in sys.path if p and Path(p).resolve() != here]
        installed = importlib.machinery.PathFinder.find_spec("mha", others)
        if installed and installed.origin and Path(installed.origin).resolve().parent != where:
            return (
                False,
                f"this checks the course folder you are in ({where}), not the installed mha "
                f"({Path(installed.origin).resolve().parent}): run the doctor from another folder",
            )
    return True, f"mha {_version(DISTRIBUTION) or '(no metadata)'} from {kind}: {where}"


def _kernel() -> list[tuple[bool, str]]:
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:
        return [(False, "jupyter_client is not installed: install the course's packages")]
    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        fix = f'python -m ipykernel install --sys-prefix --name {KERNEL} --display-name "Python (mha course)"'
        return [(False, f"Jupyter kernel '{KERNEL}' is missing: {fix}")]
    results = [(True, f"Jupyter kernel '{KERNEL}' ({spec.resource_dir})")]
    # The kernel runs its own Python: it must see the same mha (a kernel registered from another environment
    # starts, then fails at the first import).
    import mha

    probe = "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('mha').origin).resolve())"
    try:
        out = subprocess.run(  # from a neutral folder: a kernel does not start in the course's root
            [spec.argv[0], "-c", probe],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            cwd=tempfile.gettempdir(),
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        return results + [(False, f"the kernel's Python {spec.argv[0]} cannot import mha ({type(error).__name__})")]
    same = out == str(Path(mha.__file__).resolve())  # found without importing it (and torch): a fraction of a second
    results.append((same, "the kernel imports this mha" + ("" if same else f" (it imports {out})")))
    return results


def _lesson05() -> list[tuple[bool, str]]:
    from ..pretrained import encoder

    results = []
    wanted = encoder.INSTALL.rsplit("==", 1)[1]
    version = _version(encoder.PACKAGE.replace("_", "-"))
    same = version == wanted
    results.append(
        (
            same,
            f"lesson 05's model wheel {encoder.PACKAGE.replace('_', '-')} {version}"
            + ("" if same else f" (the course pins {wanted}: `{encoder.INSTALL}`)"),
        )
    )
    try:
        folder = encoder.model_dir()
        results.append((True, f"lesson 05's model files in {folder}"))
    except FileNotFoundError as error:
        results.append((False, f"lesson 05's model: {error}"))
    try:
        from safetensors import safe_open

        path = encoder.reference_file()
        with safe_open(path, "pt") as f:
            sentences = json.loads(f.metadata()["sentences"])
            names = set(f.keys())
        complete = {"input_ids", "mask", "hidden", "embeddings"} <= names and len(sentences) > 0
        results.append(
            (complete, f"lesson 05's reference outputs {path.name}" + ("" if complete else " are incomplete"))
        )
    except Exception as error:  # missing or unreadable: the message names the file
        results.append((False, f"lesson 05's reference outputs: {error}"))
    return results


def _hub(version: str) -> list[tuple[bool, str]]:
    found = _version("jupyterhub")
    same = found == version
    if found is None:
        note = f" is not installed: pip install jupyterhub=={version} (the single-user server)"
    else:
        note = "" if same else f" (the hub runs {version}: pip install jupyterhub=={version})"
    results = [(same, f"jupyterhub {found or ''}".rstrip() + note)]
    puller = _version("nbgitpuller")
    results.append((puller is not None, f"nbgitpuller {puller}" if puller else "nbgitpuller is not installed"))
    return results


def _fingerprints() -> tuple[bool, str]:
    """The solutions' fingerprints the grader compares answers with where there is no `solutions/` (an image)."""
    from . import answers, judging

    lessons = judging.lessons()
    missing = [lesson for lesson in lessons if answers.shipped_answers(lesson) is None]
    if missing:
        return (
            False,
            f"the package ships no fingerprints of the solutions of lesson {', '.join(missing)} "
            f"({answers.FINGERPRINTS}): grading here cannot compare answers with the solutions; run `make exercises` "
            f"in the course and install it again",
        )
    return True, f"the solutions' fingerprints for grading, lessons {lessons[0]} to {lessons[-1]}"


def checks(hub: str | None = None) -> list[tuple[bool, str]]:
    """(ok, what) for every check, in order; each runs even if an earlier one failed.

    Args:
        hub: the JupyterHub version the hub runs, to check a single-user image against (default None: no hub
            checks).
    """
    results = []
    major, minor = sys.version_info[:2]
    results.append(((major, minor) >= (3, 11), f"Python {platform.python_version()} (3.11 or newer needed)"))
    results.append(_package())
    results.extend(_pins(_requirements()))
    results.extend(_kernel())
    results.extend(_lesson05())
    results.append(_attention_agrees())
    if hub:
        results.extend(_hub(hub))
        results.append(_fingerprints())
    return results


def _attention_agrees():
    import torch
    import torch.nn.functional as F

    from ..attention import attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 16, 8, generator=g) for _ in range(3))
    start = time.perf_counter()
    ours, _ = attention(q, k, v, causal=True)
    seconds = time.perf_counter() - start
    same = torch.allclose(ours, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6)
    device = "a CUDA GPU" if torch.cuda.is_available() else "CPU only"
    return (
        same,
        f"mha.attention agrees with PyTorch's kernel ({device}; {torch.get_num_threads()} threads; "
        f"{1e3 * seconds:.1f} ms)",
    )

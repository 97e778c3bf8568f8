"""Check in a few seconds that this environment can run the course: `python -m mha.course doctor`.

For a learner whose notebook will not start, and for an instructor preparing a JupyterHub image: it checks the
Python and package versions against requirements.txt, the course's Jupyter kernel, the pretrained model's files,
and that attention computes what PyTorch computes; it ends with a one-line verdict and exits 1 if anything fails.
"""

import importlib.metadata
import platform
import sys
import time
from pathlib import Path

PINNED = ("torch", "numpy", "matplotlib", "ipywidgets", "nbformat", "safetensors", "tokenizers", "tqdm")
KERNEL = "mha-course"


def _requirements() -> dict[str, str]:
    """name -> pinned version, from the requirements.txt next to the package (None outside a checkout)."""
    path = Path(__file__).resolve().parents[2] / "requirements.txt"
    if not path.exists():
        return {}
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def checks():
    """(ok, what) for every check, in order; each runs even if an earlier one failed."""
    results = []
    major, minor = sys.version_info[:2]
    results.append(((major, minor) >= (3, 11), f"Python {platform.python_version()} (3.11 or newer needed)"))
    pins = _requirements()
    for name in PINNED:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            results.append((False, f"{name} is not installed: run `make setup`"))
            continue
        wanted = pins.get(name)
        same = wanted is None or version.split("+")[0] == wanted
        results.append((same, f"{name} {version}" + ("" if same else f" (requirements.txt pins {wanted})")))
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        specs = KernelSpecManager().find_kernel_specs()
        results.append(
            (
                KERNEL in specs,
                f"Jupyter kernel '{KERNEL}'"
                + ("" if KERNEL in specs else f" is missing: python -m ipykernel install --sys-prefix --name {KERNEL}"),
            )
        )
    except ImportError:
        results.append((False, "jupyter_client is not installed: run `make setup`"))
    try:
        from ..pretrained.encoder import model_dir

        folder = model_dir()
        results.append((True, f"pretrained model files in {folder.name}/ (lesson 05)"))
    except Exception as error:  # missing wheel: the message says how to install it
        results.append((False, f"pretrained model: {error}"))
    results.append(_attention_agrees())
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

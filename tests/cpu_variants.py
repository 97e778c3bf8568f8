"""The notebooks again, as other CPUs would run them: strict nbval under every other instruction set this CPU offers.

PyTorch picks its vectorised kernels by what the CPU can do ("default", "avx2", "avx512" on x86-64), and
`ATEN_CPU_CAPABILITY` lowers the choice. A machine with AVX-512 can therefore run the notebooks as a machine with
AVX2 only, and as one with neither, would: if their printed outputs still match the committed ones, the course
prints the same on all three. Each variant also runs with another number of threads than the machine's own run
(1, then one more than the cores), since a sum split between threads is added in another order.

    python tests/cpu_variants.py [pytest arguments]      # what `make notebooks-cpus` runs
    python tests/cpu_variants.py --list                  # the variants this machine can run, one per line

A machine without such instruction sets to lower (not x86-64) runs nothing and says so.
"""

import os
import subprocess
import sys

import torch

X86 = ("default", "avx2", "avx512")  # from the least to the most the CPU must offer


def variants(own: str, cores: int) -> list[tuple[str, int]]:
    """(capability, threads) for every x86-64 capability at or below `own` other than `own` itself.

    Args:
        own: what this machine picks, as `torch.backends.cpu.get_cpu_capability()` says ("AVX512", ...).
        cores: threads torch uses here by default; the variants use 1, then cores + 1, in turn.
    """
    own = own.lower()
    if own not in X86:
        return []
    lower = [c for c in X86[: X86.index(own)] if c != own]
    threads = [1, cores + 1]
    return [(capability, threads[i % 2]) for i, capability in enumerate(reversed(lower))]


def picked(capability: str) -> str:
    """What torch picks in a fresh process told `ATEN_CPU_CAPABILITY=capability`."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


def main(argv: list[str]) -> int:
    own, cores = torch.backends.cpu.get_cpu_capability(), torch.get_num_threads()
    runs = variants(own, cores)
    if argv[:1] == ["--list"]:
        print("\n".join(f"{c} {t}" for c, t in runs))
        return 0
    if not runs:
        print(f"this CPU's capability is {own}: no other x86-64 instruction set to run the notebooks under")
        return 0
    for capability, threads in runs:
        got = picked(capability).strip()
        if got.lower() != capability:
            print(f"asked torch for {capability}, it picked {got}: cannot run this variant", file=sys.stderr)
            return 1
        print(f"\n=== the notebooks as a {capability} CPU runs them, with {threads} threads (this one: {own}, {cores})")
        env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, "OMP_NUM_THREADS": str(threads)}
        status = subprocess.run([sys.executable, "-m", "pytest", *argv], env=env).returncode
        if status:
            print(
                f"the notebooks differ under ATEN_CPU_CAPABILITY={capability} with {threads} threads", file=sys.stderr
            )
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

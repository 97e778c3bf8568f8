"""The same numbers on every CPU: starting weights drawn alike everywhere, small models trained in float64.

PyTorch picks its vectorised kernels by what the CPU can do (`torch.backends.cpu.get_cpu_capability()`: "DEFAULT",
"AVX2", "AVX512"), and each rounds in its own way: sums are added in another order, exp and log come from another
library. In float32 the last bits differ between CPUs, and a training of a few thousand steps amplifies them into
the printed digits (a head's weight of 0.33 on one CPU, 0.32 on another). Two things remove the difference:

- `same_normals()`: torch's float32 `normal_` is itself such a kernel (the same draws turned into numbers by a
  different log and cos); inside this block, `torch.nn.init.normal_` (what `nn.Embedding` starts from) consumes the
  same random draws and returns numbers computed alike on every CPU.
- `same_linears(module, seed)`: torch's float32 `uniform_`, which `nn.Linear` starts from, also differs by one last
  bit between CPUs (1.5e-8): harmless for most lessons, but a training that passes through a sudden change (lesson
  11's phase change) amplifies it into the printed digits. It redraws every `nn.Linear` of a module from the same
  distribution as PyTorch's default, uniform in +-1/sqrt(in_features), with numbers computed alike on every CPU.
- `seeded(seed)`: a block whose global random draws depend on `seed` alone, the global random state restored after
  it, and no other thread's seeded block running meanwhile (torch's random state and `torch.nn.init.normal_` are one
  per process: two threads building models at once, as the grader's judges do with `--jobs 2`, would otherwise
  draw from each other's state and build other models than their seeds say).
- `TRAINING_DTYPE`: the course's small models train in float64, whose last bits are 1e-16, not 1e-7; what training
  amplifies stays far below anything printed. At these sizes it costs about 1.7x the time of float32.
"""

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

TRAINING_DTYPE = torch.float64  # the dtype every model the course trains live is trained in

_RANDOM_STATE = threading.RLock()  # held while a block seeds or patches torch's process-wide random state

_BLOCK = 16  # torch fills normals 16 at a time: 8 pairs of uniforms, each pair turned into 2 normals (Box-Muller)


def normal_(
    tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Fill `tensor` with normal numbers as `torch.nn.init.normal_` does, but with the same values on every CPU.

    It draws the same uniforms from the generator as torch's float32 kernel (so that the draws after it are
    unchanged) and applies the same Box-Muller transform, computed in float64 and rounded: within a rounding of
    what torch gives on any CPU, and identical on all of them.

    Args:
        tensor: filled in place.
        mean: mean of the normal distribution (default 0.0).
        std: standard deviation (default 1.0).
        generator: where the draws come from (default: torch's global generator).

    Returns:
        `tensor`.
    """
    n = tensor.numel()
    if tensor.dtype != torch.float32 or n < _BLOCK or not tensor.is_contiguous() or tensor.device.type != "cpu":
        with torch.no_grad():  # torch's own path for these is the same on every CPU
            return tensor.normal_(mean, std, generator=generator)
    values = torch.rand(n, generator=generator, dtype=torch.float32).double()  # the kernel's uniforms, in order
    blocks = n - n % _BLOCK
    out = values.clone()
    out[:blocks] = _box_muller(values[:blocks])
    if n % _BLOCK:  # torch redraws the last 16 and fills them again
        tail = torch.rand(_BLOCK, generator=generator, dtype=torch.float32).double()
        out[n - _BLOCK :] = _box_muller(tail)
    with torch.no_grad():
        tensor.copy_((out * std + mean).view(tensor.shape))
    return tensor


def _box_muller(uniforms: torch.Tensor) -> torch.Tensor:
    """Blocks of 16 uniforms to 16 normals: u1 from the first 8 of a block, u2 from the last 8, as torch pairs them."""
    u = uniforms.view(-1, 2, _BLOCK // 2)  # (blocks, 2, 8)
    radius = torch.sqrt(-2 * torch.log(1 - u[:, 0]))  # (blocks, 8)
    theta = 2 * math.pi * u[:, 1]  # (blocks, 8)
    return torch.stack([radius * torch.cos(theta), radius * torch.sin(theta)], dim=1).flatten()  # (blocks * 16,)


@contextmanager
def same_normals() -> Iterator[None]:
    """Inside the block, `torch.nn.init.normal_` is `normal_` above: modules built here start alike on every CPU."""
    with _RANDOM_STATE:
        original = torch.nn.init.normal_
        torch.nn.init.normal_ = normal_
        try:
            yield
        finally:
            torch.nn.init.normal_ = original


@contextmanager
def seeded(seed: int, *, portable: bool = False) -> Iterator[None]:
    """Inside the block, torch's global random state starts from `seed`; after it, the state is what it was before.

    No other thread's `seeded` (or `same_normals`) block runs meanwhile, so what is drawn inside depends on `seed`
    alone, whatever other threads do with the course's builders at the same time.

    Args:
        seed: seeds `torch.manual_seed` inside the block.
        portable: also `same_normals()` (starting weights alike on every CPU).
    """
    with _RANDOM_STATE, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if portable:
            with same_normals():
                yield
        else:
            yield


def same_linears(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Redraw the weight and bias of every `nn.Linear` in `module` as PyTorch's default does, alike on every CPU.

    PyTorch starts a Linear layer's weight and bias uniform in [-1/sqrt(in_features), 1/sqrt(in_features)]; its
    float32 `uniform_` rounds `low + (high - low) * u` differently on different CPUs. Here the uniforms come from
    `torch.rand` (the same on every CPU, as in `normal_`) and the arithmetic is done in float64, one exactly
    rounded operation at a time, then rounded to float32: the same numbers everywhere, held in the module's dtype.

    Args:
        module: changed in place, in the order of `module.modules()`.
        seed: seeds the draws (the global random state is left untouched).

    Returns:
        `module`.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if not isinstance(layer, torch.nn.Linear):
                continue
            bound = 1 / math.sqrt(layer.in_features)
            for parameter in (layer.weight, layer.bias):
                if parameter is None:
                    continue
                u = torch.rand(parameter.shape, generator=generator, dtype=torch.float32).double()
                values = (u * 2 - 1) * bound  # in [-bound, bound), each step rounded once, in float64
                parameter.copy_(values.float().to(parameter.dtype))
    return module

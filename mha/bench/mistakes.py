"""The classic mistakes of timing attention, each measured the wrong way and the right way.

The command is `python -m mha.bench mistakes`.

Each function runs one pair of measurements and returns a `Mistake`. Those that exist only on a GPU (forgetting to
synchronise, a mask that switches the flash kernel off) say why they did not run elsewhere.
"""

import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .._runtime import synchronize
from .._runtime import threads as using
from ..masks import causal_mask
from ..multihead import MultiHeadAttention, MultiHeadAttentionSDPA
from .results import fmt_ratio, fmt_time
from .timing import time_interleaved


@dataclass(frozen=True)
class Mistake:
    """One timing mistake: what the wrong way measured, what the right way measured, and the moral.

    Values are seconds, or ratios of two times when `ratio` is set. `skipped` says why it did not run on this device
    ("" when it ran); then both values are None.
    """

    name: str
    wrong: str
    wrong_value: float | None
    right: str
    right_value: float | None
    moral: str
    skipped: str = ""
    ratio: bool = False


def _medians(fns: dict, threads: int | dict, min_run_time: float) -> dict:
    """name -> median seconds, all timed in turns (`mha.bench.timing.time_interleaved`)."""
    return {name: t.median for name, t in time_interleaved(fns, threads, min_run_time, rounds=4).items()}


def first_call(device="cpu", threads: int = 1, min_run_time: float = 0.2, seq: int = 200) -> Mistake:
    """The first call of a freshly compiled layer, timed with a clock; then the median of many warm calls.

    Both are timed on `threads` threads, so that the only difference is the set-up the first call pays for: here
    `torch.compile`'s compilation, the largest of such costs (on a GPU a first call also creates the CUDA context
    and picks kernels). Where the compiler cannot run (no C++ compiler, say), the eager layer's first call is timed
    instead; what is printed is the same either way, so that the lesson reads the same on every machine.
    """
    torch.manual_seed(0)
    layer = MultiHeadAttention(256, 4).to(device).eval()
    x = torch.randn(2, seq, 256, device=device)
    with using(threads), torch.no_grad():
        torch._dynamo.reset()  # forget earlier compilations, so that this first call really compiles
        try:
            timed = torch.compile(layer)
            first = _first_call_seconds(timed, x, device)
        except Exception:  # no C++ compiler, or a platform the compiler does not support
            timed = layer
            first = _first_call_seconds(layer, x, device)
        warm = _medians({"warm": lambda: timed(x)}, threads, min_run_time)["warm"]
    return Mistake(
        "timing the first call",
        "first call (compiling where torch.compile works)",
        first,
        "median of warm calls",
        warm,
        "the first call pays for setting up (compilation, memory, kernel choice): warm up, then time many calls",
    )


def _first_call_seconds(fn, x, device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn(x)
    synchronize(device)
    return time.perf_counter() - start


def default_threads(device="cpu", min_run_time: float = 0.2) -> Mistake:
    """`Timer` as it comes (one thread) against `Timer(num_threads=torch.get_num_threads())`."""
    torch.manual_seed(0)
    layer = MultiHeadAttentionSDPA(256, 4).to(device).eval()
    x = torch.randn(4, 256, 256, device=device)
    n = torch.get_num_threads()
    with torch.no_grad():
        t = _medians({"one": lambda: layer(x), "many": lambda: layer(x)}, {"one": 1, "many": n}, min_run_time)
    return Mistake(
        "Timer's default of one thread",
        "Timer(...) as it comes: 1 thread",
        t["one"],
        "Timer(..., num_threads=torch.get_num_threads())",
        t["many"],
        "torch.utils.benchmark.Timer runs with num_threads=1 unless told: say how many threads you time with",
    )


def float32_vs_bfloat16(device="cpu", threads: int = 1, min_run_time: float = 0.2) -> Mistake:
    """Hand-written batched against SDPA: with the first in bfloat16 and the second in float32, then both in float32."""
    torch.manual_seed(0)
    fused = MultiHeadAttentionSDPA(256, 4).to(device).eval()
    batched = MultiHeadAttention(256, 4).to(device).eval()
    batched.load_state_dict(fused.state_dict())
    x = torch.randn(4, 256, 256, device=device)
    with torch.no_grad():
        batched16 = MultiHeadAttention(256, 4).to(device, torch.bfloat16).eval()
        batched16.load_state_dict(fused.state_dict())
        x16 = x.to(torch.bfloat16)
        fns = {"sdpa": lambda: fused(x), "batched": lambda: batched(x), "batched16": lambda: batched16(x16)}
        t = _medians(fns, threads, min_run_time)
    return Mistake(
        "comparing float32 with bfloat16",
        "batched in bfloat16 / sdpa in float32",
        t["batched16"] / t["sdpa"],
        "batched in float32 / sdpa in float32",
        t["batched"] / t["sdpa"],
        "a dtype changes the work, the memory moved and the hardware's peak: compare implementations in one dtype, "
        "and say which",
        ratio=True,
    )


def need_weights(device="cpu", threads: int = 1, min_run_time: float = 0.2, seq: int = 1024) -> Mistake:
    """nn.MultiheadAttention with its default need_weights=True against need_weights=False, forward with gradients."""
    torch.manual_seed(0)
    layer = nn.MultiheadAttention(128, 8, batch_first=True, device=device)
    x = torch.randn(1, seq, 128, device=device)
    t = _medians(
        {"default": lambda: layer(x, x, x), "lean": lambda: layer(x, x, x, need_weights=False)}, threads, min_run_time
    )
    return Mistake(
        "need_weights=True, the default",
        "layer(x, x, x): need_weights=True",
        t["default"],
        "layer(x, x, x, need_weights=False)",
        t["lean"],
        "to return the weights, nn.MultiheadAttention must build them, so it cannot use the fused kernel",
    )


def mask_instead_of_causal(device="cpu", threads: int = 1, min_run_time: float = 0.2, seq: int = 1024) -> Mistake:
    """The causal mask passed as a tensor against `is_causal=True`: the same result, not the same kernel work."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, seq, 64, device=device) for _ in range(3))
    mask = causal_mask(seq, device=device)
    with torch.no_grad():
        fns = {
            "tensor": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
            "flag": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        }
        t = _medians(fns, threads, min_run_time)
    return Mistake(
        "a mask where is_causal would do",
        "attn_mask=causal_mask(seq)",
        t["tensor"],
        "is_causal=True",
        t["flag"],
        "a kernel told is_causal skips the blocks above the diagonal; given a mask tensor it must read every "
        "block (and on a GPU, flash refuses the mask altogether)",
    )


def no_synchronisation(device="cuda", threads: int = 1, min_run_time: float = 0.2, seq: int = 4096) -> Mistake:
    """A clock read right after a GPU call (it measures the launch), against `Timer`, which synchronises."""
    name, moral = (
        "no synchronisation",
        "a GPU runs asynchronously: synchronise before reading the clock (Timer does it for you)",
    )
    if torch.device(device).type != "cuda":
        return Mistake(name, "clock without synchronising", None, "Timer", None, moral, skipped="needs a CUDA GPU")
    q, k, v = (torch.randn(4, 16, seq, 128, device=device, dtype=torch.bfloat16) for _ in range(3))
    with torch.no_grad():
        F.scaled_dot_product_attention(q, k, v)
        synchronize(device)
        start = time.perf_counter()
        F.scaled_dot_product_attention(q, k, v)
        unsynchronised = time.perf_counter() - start  # the kernel is still running
        right = _medians({"timer": lambda: F.scaled_dot_product_attention(q, k, v)}, threads, min_run_time)["timer"]
    return Mistake(name, "clock without synchronising", unsynchronised, "Timer", right, moral)


def flash_refuses_mask(device="cuda", seq: int = 1024) -> str:
    """What happens when the flash backend is pinned and a mask tensor is passed: the reason torch gives."""
    q, k, v = (torch.randn(1, 4, seq, 64, device=device, dtype=torch.bfloat16) for _ in range(3))
    mask = causal_mask(seq, device=device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), torch.no_grad():
                F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        except RuntimeError as error:
            reasons = [str(w.message).splitlines()[0] for w in caught if "flash" in str(w.message).lower()]
            return f"refused: {str(error).splitlines()[0]} ({'; '.join(reasons) or 'no reason given'})"
    return "accepted: this device's flash kernel takes a mask tensor"


def format_mistake(m: Mistake) -> str:
    """Wrong, then right, with their values (masked by the notebook checks), then the moral."""
    if m.skipped:
        return f"{m.name}: not run here ({m.skipped})\n  {m.moral}"
    fmt = fmt_ratio if m.ratio else fmt_time
    return (
        f"{m.name}\n  wrong: {m.wrong:<48} {fmt(m.wrong_value):>12}\n  right: {m.right:<48} {fmt(m.right_value):>12}\n"
        f"  {m.moral}"
    )


def run_all(device="cpu", threads: int = 1, min_run_time: float = 0.2) -> list:
    """Every mistake, in the lesson's order."""
    return [
        first_call(device, threads, min_run_time),
        default_threads(device, min_run_time),
        float32_vs_bfloat16(device, threads, min_run_time),
        need_weights(device, threads, min_run_time),
        mask_instead_of_causal(device, threads, min_run_time),
        no_synchronisation(device, threads, min_run_time),
    ]

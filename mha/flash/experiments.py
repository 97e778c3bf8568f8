"""Lesson 10's experiments: the blocked versions agree with PyTorch, use memory linear in seq, move the modelled bytes.

agreement    the tiled loop and the Triton kernel against scaled_dot_product_attention, forward and backward,
             over shapes that vary batch, heads, kv_heads, lengths (1, odd, not a multiple of a block), d_head
             and causality
memory       peak memory of the tiled loop and of attention that holds the weights, against seq, and the slopes
traffic      bytes of standard and blocked attention (modelled, and counted on the loop), their FLOPs per byte,
             and where each sits on the roofline of published GPUs
"""

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..attention import attention
from ..bench.memory import peak_memory
from ..heads import repeat_kv
from .io import DEVICES, Problem, roofline, standard_traffic, traffic_model
from .tiled import Traffic, tiled_attention


@dataclass(frozen=True)
class Case:
    """One shape the blocked versions are checked on.

    Args:
        batch, heads, kv_heads, q_pos, k_pos, d_head: sizes (kv_heads divides heads).
        causal: query i attends to keys 0..i only.
    """

    batch: int
    heads: int
    kv_heads: int
    q_pos: int
    k_pos: int
    d_head: int
    causal: bool

    def __str__(self):
        return (
            f"batch {self.batch} · heads {self.heads}/{self.kv_heads} · q_pos {self.q_pos} · k_pos {self.k_pos} · "
            f"d_head {self.d_head} · {'causal' if self.causal else 'not causal'}"
        )


# One length of 1, odd ones, ones that are not a multiple of any block, grouped and multi-query heads, both masks.
CASES = (
    Case(1, 1, 1, 1, 1, 16, False),
    Case(2, 4, 2, 37, 37, 16, True),
    Case(1, 6, 3, 5, 50, 32, False),
    Case(2, 4, 1, 33, 20, 24, True),
    Case(1, 2, 2, 64, 64, 64, True),
    Case(1, 2, 2, 100, 100, 64, False),
)


def _inputs(case: Case, dtype, device, seed: int):
    g = torch.Generator().manual_seed(seed)

    def draw(heads, pos):
        return torch.randn(case.batch, heads, pos, case.d_head, generator=g, dtype=torch.float64)

    q, k, v = draw(case.heads, case.q_pos), draw(case.kv_heads, case.k_pos), draw(case.kv_heads, case.k_pos)
    grad = torch.randn(case.batch, case.heads, case.q_pos, case.d_head, generator=g, dtype=torch.float64)
    return [t.to(device, dtype) for t in (q, k, v, grad)]


def _reference(q, k, v, causal: bool):
    """Softmax attention in float64 with the key/value heads repeated: the answer every version must give."""
    q, k, v = (t.detach().double().requires_grad_() for t in (q, k, v))
    group = q.shape[1] // k.shape[1]
    mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril() if causal else None
    out, _ = attention(q, repeat_kv(k, group), repeat_kv(v, group), mask)
    return out, (q, k, v)


def relative(got: torch.Tensor, expected: torch.Tensor, scale: float) -> float:
    """Largest |got - expected|, over `scale` (the largest |expected| of the quantity)."""
    return float((got.detach().double() - expected.detach()).abs().max() / max(scale, 1e-30))


def agreement(versions: dict, cases=CASES, dtype=torch.float32, device="cpu", seed: int = 0) -> list[dict]:
    """Each version's largest relative error against float64 softmax attention, forward and backward, per case.

    Args:
        versions: name -> function (q, k, v, causal) returning the output (differentiable).
        cases: the shapes.
        dtype, device: where the versions run.
        seed: seeds the inputs.

    Returns:
        one dict per (case, version): case (text), version, forward and backward errors (the largest over dq, dk,
        dv, each relative to the largest of the three gradients), seconds (the forward and backward calls).
    """
    rows = []
    for i, case in enumerate(cases):
        q, k, v, grad = _inputs(case, dtype, device, seed + i)
        expected, leaves = _reference(q, k, v, case.causal)
        expected_grads = torch.autograd.grad(expected, leaves, grad.double())
        scale = max(float(g.abs().max()) for g in expected_grads)
        for name, fn in versions.items():
            mine = [t.detach().clone().requires_grad_() for t in (q, k, v)]
            start = time.perf_counter()
            out = fn(*mine, case.causal)
            grads = torch.autograd.grad(out, mine, grad)
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "case": str(case),
                    "version": name,
                    "forward": relative(out, expected, float(expected.detach().abs().max())),
                    "backward": max(relative(g, e, scale) for g, e in zip(grads, expected_grads)),
                    "seconds": seconds,
                }
            )
    return rows


def versions(triton: bool = True) -> dict:
    """The versions `agreement` compares: the tiled loop, PyTorch's SDPA, and (if asked) the Triton kernel."""
    found = {
        "tiled (PyTorch)": lambda q, k, v, causal: tiled_attention(q, k, v, causal, block_q=16, block_k=16)[0],
        "sdpa": lambda q, k, v, causal: F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True),
    }
    if triton:
        from .kernel import flash_attention  # imports triton

        found["Triton kernel"] = flash_attention
    return found


def within(error: float, tolerance: float = 1e-5) -> str:
    """An error as the lesson prints it: "< 1e-05" when within the tolerance (its digits would be the CPU's rounding,
    different on another machine), else the number."""
    return f"< {tolerance:.0e}" if error < tolerance else f"{error:.1e}"


def format_agreement(rows: list[dict], exact: bool = True) -> str:
    """One line per case and version: its largest relative errors, forward and backward.

    Args:
        rows: from `agreement`.
        exact: print the errors' digits (default); False prints them as `within` does, the same on every CPU.
    """
    show = (lambda e: f"{e:.1e}") if exact else within
    lines = [f"{'case':<70} {'version':<16} {'forward':>9} {'backward':>9}"]
    for r in rows:
        lines.append(f"{r['case']:<70} {r['version']:<16} {show(r['forward']):>9} {show(r['backward']):>9}")
    return "\n".join(lines)


def memory(seqs=(256, 512, 1024, 2048), d_head: int = 64, heads: int = 1, block: int = 64) -> list[dict]:
    """Peak memory of one call, against seq: the tiled loop, and attention that holds the (q_pos, k_pos) weights.

    Measured with lesson 06's meter (`mha.bench.memory.peak_memory`, on a CPU the bytes of the tensors the call
    creates), in float32, batch 1, self-attention.

    Returns:
        one dict per seq: seq, tiled and weights (bytes).
    """
    rows = []
    for seq in seqs:
        g = torch.Generator().manual_seed(seq)
        q, k, v = (torch.randn(1, heads, seq, d_head, generator=g) for _ in range(3))
        with torch.no_grad():
            tiled, _ = peak_memory(lambda q=q, k=k, v=v: tiled_attention(q, k, v, block_q=block, block_k=block), "cpu")
            weights, _ = peak_memory(lambda q=q, k=k, v=v: attention(q, k, v), "cpu")
        rows.append({"seq": seq, "tiled": tiled, "weights": weights})
    return rows


def slope(xs, ys) -> float:
    """The slope of log(y) against log(x), fitted by least squares: 1 grows like x, 2 like x²."""
    return float(np.polyfit(np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float)), 1)[0])


def format_memory(rows: list[dict]) -> str:
    lines = [f"{'seq':>6} {'tiled':>12} {'weights held':>14}"]
    for r in rows:
        lines.append(f"{r['seq']:>6} {_mib(r['tiled']):>12} {_mib(r['weights']):>14}")
    seqs = [r["seq"] for r in rows]
    lines.append(
        f"slope of log(memory) against log(seq): tiled {slope(seqs, [r['tiled'] for r in rows]):.2f}, "
        f"weights held {slope(seqs, [r['weights'] for r in rows]):.2f}"
    )
    return "\n".join(lines)


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


KINDS = ("standard", "blocked, block_q 64", "blocked, block_q 128", "blocked, K and V read once")


def traffic(seqs=(1024, 4096, 16384), d_head: int = 128, heads: int = 16, bytes_per_number: int = 2, device=None):
    """Bytes moved by standard and blocked attention, per length, and where each sits on a GPU's roofline.

    The blocked kernel reads K and V once per block of queries; "K and V read once" is its best case, where every
    loaded block of keys serves every block of queries (blocks of the whole length).

    Args:
        seqs: lengths (q_pos = k_pos), one sequence, not causal.
        d_head, heads, bytes_per_number: the sizes (default: 16 heads of 128, bfloat16).
        device: the GPU whose roofline places each kind (default: the H100 of `mha.flash.io.DEVICES`).

    Returns:
        one dict per seq: seq, flops, and for each of `KINDS` a dict of bytes and `roofline`'s fields.
    """
    device = device or DEVICES[0]
    rows = []
    for seq in seqs:
        p = Problem(1, heads, seq, seq, d_head, bytes_per_number=bytes_per_number)
        moved = {
            KINDS[0]: standard_traffic(p),
            KINDS[1]: traffic_model(p, 64, 128),
            KINDS[2]: traffic_model(p, 128, 128),
            KINDS[3]: traffic_model(p, seq, seq),  # one block each way: every number read once
        }
        row = {"seq": seq, "flops": p.flops()}
        for kind, t in moved.items():
            row[kind] = {"bytes": t.read + t.written, **roofline(p.flops(), t, device)}
        rows.append(row)
    return rows


def counted_against_model(case: Problem, block_q: int, block_k: int) -> tuple[Traffic, Traffic]:
    """The bytes `tiled_attention` reads and writes on random inputs of this size, and `traffic_model`'s count."""
    dtype = {2: torch.bfloat16, 4: torch.float32, 8: torch.float64}[case.bytes_per_number]
    g = torch.Generator().manual_seed(0)
    q = torch.randn(case.batch, case.heads, case.q_pos, case.d_head, generator=g).to(dtype)
    k, v = (torch.randn(case.batch, case.groups, case.k_pos, case.d_head, generator=g).to(dtype) for _ in range(2))
    counted = Traffic()
    with torch.no_grad():
        tiled_attention(q, k, v, case.causal, block_q, block_k, traffic=counted)
    return counted, traffic_model(case, block_q, block_k)


def format_traffic(rows: list[dict]) -> str:
    """One line per length: for each kind, the bytes moved, the FLOPs per byte, and which roof bounds it."""
    lines = [f"{'seq':>6}  " + "  ".join(f"{k:>28}" for k in KINDS)]
    for r in rows:
        cells = "  ".join(f"{_gb(r[k]['bytes']):>9} {r[k]['intensity']:6.0f} F/B {r[k]['bound']:>8}" for k in KINDS)
        lines.append(f"{r['seq']:>6}  {cells}")
    return "\n".join(lines)


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def interpreter_seconds(case: Case = Case(1, 2, 2, 128, 128, 64, False), repeats: int = 3) -> dict:
    """Seconds per call of the Triton kernel in its interpreter (forward, and forward with backward), median."""
    from .kernel import flash_attention

    q, k, v, grad = _inputs(case, torch.float32, "cpu", 0)
    forward, both = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            flash_attention(q, k, v, case.causal)
        forward.append(time.perf_counter() - start)
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        start = time.perf_counter()
        torch.autograd.grad(flash_attention(*leaves, case.causal), leaves, grad)
        both.append(time.perf_counter() - start)
    return {"case": str(case), "forward_s": sorted(forward)[len(forward) // 2], "both_s": sorted(both)[len(both) // 2]}


def balance_note(device) -> str:
    """The device's published figures and its balance point, in words."""
    return (
        f"{device.name}: {device.peak / 1e12:.0f} TFLOP/s (dense bfloat16) over {device.bandwidth / 1e12:.2f} TB/s "
        f"= {device.balance:.0f} FLOPs per byte; {device.sram // 1024} KB on-chip per SM, "
        f"{device.l2 // 2**20} MB of L2 cache\n    ({device.source})"
    )

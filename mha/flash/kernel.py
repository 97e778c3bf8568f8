"""FlashAttention in Triton: the blocked loop of `mha.flash.tiled` as one GPU kernel, forward and backward.

Triton writes a kernel as the work of one *program*, a block of queries of one head, and launches one program per
block and head; `tl.load` brings a block from main memory onto the chip, `tl.dot` multiplies blocks, `tl.store`
writes back. Everything between the loads and the stores stays on the chip: the scores S and weights P of a block
never reach main memory.

- forward (`_forward_kernel`): the loop of `tiled_attention`; it stores the output and, per query row, the
  log-sum-exp lse = m + log l of its scores.
- backward (FlashAttention-2, Dao 2023): P is recomputed block by block from the saved lse, P = exp(S - lse), never
  stored. With D = rowsum(dO ∘ O) (computed once, before the kernels), the gradient of the scores is
  dS = P ∘ (dP - D) where dP = dO Vᵀ; then dV = Pᵀ dO, dK = dSᵀ Q / √d, dQ = dS K / √d. One kernel walks the
  queries for each block of keys (dK, dV: for grouped-query attention it also walks the query heads of the group),
  another the keys for each block of queries (dQ): no two programs write the same numbers.
- `FlashAttention`, a `torch.autograd.Function`, joins them; `flash_attention(q, k, v, causal)` is the call.

Key/value head h // group serves query head h (grouped-query attention, lesson 07): the kernel indexes it, nothing is
copied. Lengths need not be multiples of the block: the last block's missing rows and keys are masked. d_head may be
any size: the kernel works on a block of the next power of two, at least 16, with the extra features masked.

On a GPU the kernels are compiled. On a CPU they run in Triton's interpreter, which executes the same Python code with
numpy, one program after another: slow, but the very kernel, checked on any machine. The interpreter is chosen by the
environment variable TRITON_INTERPRET=1, read when triton is imported: this module sets it (where there is no GPU)
before importing triton, so import it before anything else imports triton (torch.compile does).
"""

import math
import os
import sys

import torch

from .._validate import check_qkv, check_rank, check_tensor, kv_group_size

_TRITON_BEFORE = "triton" in sys.modules  # imported by someone else already: too late to choose the interpreter
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402 (after choosing the interpreter)
import triton.language as tl  # noqa: E402
from triton.runtime.interpreter import InterpretedFunction  # noqa: E402

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def interpreted() -> bool:
    """True if Triton runs kernels in its interpreter (on CPU tensors), False if it compiles them for a GPU.

    Decided when triton was first imported: its own helpers (`tl.zeros`, ...) are then made interpreted or compiled.
    """
    return isinstance(tl.zeros, InterpretedFunction)


@triton.jit
def _forward_kernel(
    Q, K, V, O, LSE,
    sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, svh, svn, svd, sob, soh, som, sod,
    heads, group, q_pos, k_pos, d_head, scale,
    CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    start_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = bh // heads, bh % heads
    kvh = h // group  # the key/value head this query head reads
    rows = start_m * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,) the queries of this program
    cols = tl.arange(0, BLOCK_N)
    feats = tl.arange(0, BLOCK_D)
    in_d = feats[None, :] < d_head
    q = tl.load(Q + b * sqb + h * sqh + rows[:, None] * sqm + feats[None, :] * sqd,
                mask=(rows[:, None] < q_pos) & in_d, other=0.0)  # (BLOCK_M, BLOCK_D), once  # fmt: skip
    m = tl.full([BLOCK_M], float("-inf"), tl.float32)  # running maximum of each row's scores
    l = tl.zeros([BLOCK_M], tl.float32)  # running sum of exp(score - m)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)  # running sum of exp(score - m) · value
    end = k_pos
    if CAUSAL:
        end = tl.minimum(k_pos, (start_m + 1) * BLOCK_M)  # blocks of keys after the last query are skipped
    for start_n in range(0, end, BLOCK_N):
        keys = start_n + cols
        at = (keys[:, None] < k_pos) & in_d
        k = tl.load(K + b * skb + kvh * skh + keys[:, None] * skn + feats[None, :] * skd, mask=at, other=0.0)
        v = tl.load(V + b * svb + kvh * svh + keys[:, None] * svn + feats[None, :] * svd, mask=at, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # (BLOCK_M, BLOCK_N)
        seen = keys[None, :] < k_pos  # the last block's missing keys
        if CAUSAL:
            seen = seen & (keys[None, :] <= rows[:, None])
        s = tl.where(seen, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, 1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m - m_new)  # rescales what was summed against the old maximum
        l = l * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m = m_new
    out = acc / l[:, None]
    tl.store(O + b * sob + h * soh + rows[:, None] * som + feats[None, :] * sod, out.to(O.dtype.element_ty),
             mask=(rows[:, None] < q_pos) & in_d)  # fmt: skip
    tl.store(LSE + bh * q_pos + rows, m + tl.log(l), mask=rows < q_pos)


@triton.jit
def _backward_kv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV,
    sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, svh, svn, svd,
    sdb, sdh, sdm, sdd, sgb, sgh, sgn, sgd,
    heads, kv_heads, group, q_pos, k_pos, d_head, scale,
    CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    start_n, bkv = tl.program_id(0), tl.program_id(1)
    b, kvh = bkv // kv_heads, bkv % kv_heads
    keys = start_n * BLOCK_N + tl.arange(0, BLOCK_N)  # (BLOCK_N,) the keys of this program
    feats = tl.arange(0, BLOCK_D)
    in_d = feats[None, :] < d_head
    at = (keys[:, None] < k_pos) & in_d
    k = tl.load(K + b * skb + kvh * skh + keys[:, None] * skn + feats[None, :] * skd, mask=at, other=0.0)
    v = tl.load(V + b * svb + kvh * svh + keys[:, None] * svn + feats[None, :] * svd, mask=at, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    begin = 0
    if CAUSAL:
        begin = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M  # queries before the first key see none of these keys
    for g in range(0, group):  # every query head that reads this key/value head
        h = kvh * group + g
        for start_m in range(begin, q_pos, BLOCK_M):
            rows = start_m + tl.arange(0, BLOCK_M)
            in_q = rows[:, None] < q_pos
            q = tl.load(Q + b * sqb + h * sqh + rows[:, None] * sqm + feats[None, :] * sqd, mask=in_q & in_d,
                        other=0.0)  # fmt: skip
            do = tl.load(DO + b * sdb + h * sdh + rows[:, None] * sdm + feats[None, :] * sdd, mask=in_q & in_d,
                         other=0.0)  # fmt: skip
            lse = tl.load(LSE + (b * heads + h) * q_pos + rows, mask=rows < q_pos, other=0.0)
            delta = tl.load(DELTA + (b * heads + h) * q_pos + rows, mask=rows < q_pos, other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # (BLOCK_M, BLOCK_N)
            seen = in_q & (keys[None, :] < k_pos)
            if CAUSAL:
                seen = seen & (keys[None, :] <= rows[:, None])
            p = tl.where(seen, tl.exp(s - lse[:, None]), 0.0)  # the weights, recomputed from the saved lse
            dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION)
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
            ds = p * (dp - delta[:, None])  # the gradient of the scores (before the 1/√d scale)
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    dk = dk * scale
    tl.store(DK + b * sgb + kvh * sgh + keys[:, None] * sgn + feats[None, :] * sgd, dk.to(DK.dtype.element_ty), mask=at)
    tl.store(DV + b * sgb + kvh * sgh + keys[:, None] * sgn + feats[None, :] * sgd, dv.to(DV.dtype.element_ty), mask=at)


@triton.jit
def _backward_q_kernel(
    Q, K, V, DO, LSE, DELTA, DQ,
    sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, svh, svn, svd, sdb, sdh, sdm, sdd,
    heads, group, q_pos, k_pos, d_head, scale,
    CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    start_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = bh // heads, bh % heads
    kvh = h // group
    rows = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    feats = tl.arange(0, BLOCK_D)
    in_d = feats[None, :] < d_head
    in_q = rows[:, None] < q_pos
    q = tl.load(Q + b * sqb + h * sqh + rows[:, None] * sqm + feats[None, :] * sqd, mask=in_q & in_d, other=0.0)
    do = tl.load(DO + b * sdb + h * sdh + rows[:, None] * sdm + feats[None, :] * sdd, mask=in_q & in_d, other=0.0)
    lse = tl.load(LSE + bh * q_pos + rows, mask=rows < q_pos, other=0.0)
    delta = tl.load(DELTA + bh * q_pos + rows, mask=rows < q_pos, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    end = k_pos
    if CAUSAL:
        end = tl.minimum(k_pos, (start_m + 1) * BLOCK_M)
    for start_n in range(0, end, BLOCK_N):
        keys = start_n + cols
        at = (keys[:, None] < k_pos) & in_d
        k = tl.load(K + b * skb + kvh * skh + keys[:, None] * skn + feats[None, :] * skd, mask=at, other=0.0)
        v = tl.load(V + b * svb + kvh * svh + keys[:, None] * svn + feats[None, :] * svd, mask=at, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        seen = in_q & (keys[None, :] < k_pos)
        if CAUSAL:
            seen = seen & (keys[None, :] <= rows[:, None])
        p = tl.where(seen, tl.exp(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    dq = dq * scale
    tl.store(DQ + b * sqb + h * sqh + rows[:, None] * sqm + feats[None, :] * sqd, dq.to(DQ.dtype.element_ty),
             mask=in_q & in_d)  # fmt: skip


def _blocks(q_pos: int, k_pos: int, d_head: int) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_D): powers of two of at least 16 (tl.dot's smallest), at most 64 and no larger than
    the sequence needs."""
    d = max(16, triton.next_power_of_2(d_head))
    return min(64, max(16, triton.next_power_of_2(q_pos))), min(64, max(16, triton.next_power_of_2(k_pos))), d


def _check(q, k, v) -> int:
    """Validate the inputs; return the group size heads // kv_heads."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, x)
        check_rank(name, x, (4,), "(batch, heads, seq, d_head)")
    check_qkv(q[:, :1], k[:, :1], v[:, :1])
    if q.dtype not in DTYPES:
        raise TypeError(f"the Triton kernel takes {[str(d).removeprefix('torch.') for d in DTYPES]}, got {q.dtype}")
    if q.device.type == "cpu" and not interpreted():
        raise RuntimeError(
            "CPU tensors run in Triton's interpreter, which must be chosen before triton is first imported: "
            + (
                "triton was imported before mha.flash.kernel (torch.compile imports it): restart Python and import "
                "mha.flash.kernel first, or set TRITON_INTERPRET=1 in the environment"
                if _TRITON_BEFORE
                else "set TRITON_INTERPRET=1 (this machine has a GPU: put the tensors on it instead)"
            )
        )
    if q.device.type not in ("cpu", "cuda") or not (q.device == k.device == v.device):
        raise ValueError(
            f"q, k and v must be on one device, the CPU or a CUDA GPU, got {q.device}, {k.device} and {v.device}"
        )
    return kv_group_size(q.shape[1], k.shape[1])


def _precision(dtype: torch.dtype) -> str:
    # float32 blocks multiplied in full float32 ("ieee"), not in a GPU's faster TF32: the tests compare to 1e-5
    return "ieee" if dtype == torch.float32 else "tf32"


def flash_forward(q, k, v, causal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward kernel alone: the output and the log-sum-exp of each query's scores (no autograd).

    Args:
        q: queries.
        k: keys, `kv_heads` heads, each read by heads // kv_heads query heads.
        v: values, as k.
        causal: query i attends to keys 0..i only (default: False).

    Shape:
        q (batch, heads, q_pos, d_head), k and v (batch, kv_heads, k_pos, d_head), float32, float16 or bfloat16;
        returns the output (batch, heads, q_pos, d_head) in q's dtype and lse (batch, heads, q_pos) float32.
    """
    group = _check(q, k, v)
    batch, heads, q_pos, d_head = q.shape
    k_pos = k.shape[2]
    block_m, block_n, block_d = _blocks(q_pos, k_pos, d_head)
    out = torch.empty_like(q)
    lse = torch.empty(batch, heads, q_pos, dtype=torch.float32, device=q.device)
    grid = (triton.cdiv(q_pos, block_m), batch * heads)
    _forward_kernel[grid](
        q, k, v, out, lse, *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        heads, group, q_pos, k_pos, d_head, 1 / math.sqrt(d_head),
        CAUSAL=causal, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, PRECISION=_precision(q.dtype),
    )  # fmt: skip
    return out, lse


def flash_backward(q, k, v, out, lse, grad_out, causal: bool = False):
    """The backward kernels: (dq, dk, dv) from the inputs, the output, the saved lse and the output's gradient.

    Shape:
        as `flash_forward`; grad_out like out; returns dq like q, dk and dv like k.
    """
    group = _check(q, k, v)
    batch, heads, q_pos, d_head = q.shape
    kv_heads, k_pos = k.shape[1], k.shape[2]
    block_m, block_n, block_d = _blocks(q_pos, k_pos, d_head)
    grad_out = grad_out.contiguous()
    delta = (grad_out.float() * out.float()).sum(dim=-1).contiguous()  # D = rowsum(dO ∘ O): (batch, heads, q_pos)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    common = dict(CAUSAL=causal, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, PRECISION=_precision(q.dtype))
    scale = 1 / math.sqrt(d_head)
    _backward_kv_kernel[(triton.cdiv(k_pos, block_n), batch * kv_heads)](
        q, k, v, grad_out, lse, delta, dk, dv, *q.stride(), *k.stride(), *v.stride(), *grad_out.stride(),
        *dk.stride(), heads, kv_heads, group, q_pos, k_pos, d_head, scale, **common,
    )  # fmt: skip
    _backward_q_kernel[(triton.cdiv(q_pos, block_m), batch * heads)](
        q, k, v, grad_out, lse, delta, dq, *q.stride(), *k.stride(), *v.stride(), *grad_out.stride(),
        heads, group, q_pos, k_pos, d_head, scale, **common,
    )  # fmt: skip
    return dq, dk, dv


class FlashAttention(torch.autograd.Function):
    """Attention with the Triton kernels: forward saves (q, k, v, out, lse), backward recomputes P from lse."""

    @staticmethod
    def forward(ctx, q, k, v, causal=False):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        out, lse = flash_forward(q, k, v, causal)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal = causal
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = flash_backward(q, k, v, out, lse, grad_out, ctx.causal)
        return dq, dk, dv, None


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """Softmax attention by the Triton kernels, differentiable: what `scaled_dot_product_attention` computes.

    Args:
        q: queries.
        k: keys, `kv_heads` heads, each read by heads // kv_heads query heads (grouped-query attention).
        v: values, as k.
        causal: query i attends to keys 0..i only (default: False).

    Shape:
        q (batch, heads, q_pos, d_head), k and v (batch, kv_heads, k_pos, d_head), float32, float16 or bfloat16, on a
        CUDA GPU (compiled) or the CPU (Triton's interpreter); returns (batch, heads, q_pos, d_head).
    """
    return FlashAttention.apply(q, k, v, causal)

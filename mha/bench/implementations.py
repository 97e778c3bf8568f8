"""Every way the course computes multi-head attention, and the check that they all agree.

Implementations compute the same function. "layer" ones take x (batch, seq, d_model) and include the four
projections; "core" ones take q, k, v (batch, heads, seq, d_head) and do the attention alone.

    loop                 layer  MultiHeadAttentionLoop: one head after another
    batched              layer  MultiHeadAttention: one fused Q, K, V projection, all heads in one batched product
    einsum               layer  MultiHeadAttentionEinsum
    sdpa                 layer  MultiHeadAttentionSDPA, PyTorch choosing the kernel
    nn.MHA               layer  torch.nn.MultiheadAttention, need_weights=True (its default)
    nn.MHA/no-weights    layer  the same with need_weights=False
    compiled             layer  torch.compile(MultiHeadAttention)
    core/hand            core   mha.attention: matmul, softmax, matmul
    core/sdpa            core   mha.sdpa (F.scaled_dot_product_attention), PyTorch choosing the kernel
    core/<backend>       core   the same, pinned to one backend (math, flash, efficient, cudnn) with `sdpa_kernel`
    core/triton          core   lesson 10's FlashAttention kernel in Triton (`mha.flash.kernel`); on a CPU it runs in
                                Triton's interpreter, far too slow to time but right: only lesson 10's suite uses it

Every problem is self-attention, causal or not: what the lesson times. (Other masks are tested where the core is,
against PyTorch, in tests/test_multihead.py.) `check` compares each implementation with a float64 reference computed
from the same weights, on a sample of query rows (so that it fits in memory at any seq): its output, and the
gradient of a loss on those rows.
"""

import contextlib
import importlib.util
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .._validate import head_size
from ..attention import attention, sdpa
from ..heads import merge_heads, split_heads
from ..masks import causal_mask
from ..multihead import MultiHeadAttention, MultiHeadAttentionEinsum, MultiHeadAttentionLoop, MultiHeadAttentionSDPA
from .flops import dtype_name

# Largest |output - reference| / largest |reference| accepted. float32: the figure asked for. bfloat16 keeps
# 8 bits of mantissa (a relative step of 2⁻⁸ ≈ 0.004), and attention rounds q, k, v, the weights and the output
# to it: a few steps of error are expected, a wrong implementation is off by far more (tests/test_bench.py).
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 3e-2}
BACKENDS = {
    "math": SDPBackend.MATH,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}
CUDA_ONLY_BACKENDS = ("efficient", "cudnn")  # PyTorch has CPU kernels for math and flash only


@dataclass(frozen=True)
class Shape:
    """The sizes of one self-attention problem.

    Args:
        batch, seq, d_model, heads: sizes; heads must divide d_model.
        causal: every query attends to itself and the keys before it only.

    Shape:
        x (batch, seq, d_model); q, k, v (batch, heads, seq, d_head).
    """

    batch: int
    seq: int
    d_model: int
    heads: int
    causal: bool = False

    def __post_init__(self):
        head_size(self.d_model, self.heads)
        if self.batch < 1 or self.seq < 1:
            raise ValueError(f"batch and seq must be at least 1, got batch={self.batch}, seq={self.seq}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.heads

    def __str__(self):
        mask = "causal" if self.causal else "not causal"
        return (
            f"batch {self.batch} · seq {self.seq} · d_model {self.d_model} · heads {self.heads} · "
            f"d_head {self.d_head} · {mask}"
        )


class Problem:
    """One problem that every implementation solves: the weights, the input x and its q, k, v.

    Weights are drawn so that scores have unit variance (std 1/sqrt(d_model) for W_Q, W_K, W_V), as in a freshly
    initialised model with normalised inputs; nn.Linear's default is smaller and would leave attention almost
    uniform, too easy to get right by accident. Biases are non-zero so that a dropped bias shows.

    Args:
        shape: the sizes, and whether attention is causal.
        device, dtype: where and in what precision everything runs.
        seed: seeds the weights and the input (default 0).

    Shape:
        x (batch, seq, d_model); q, k, v (batch, heads, seq, d_head).
    """

    def __init__(self, shape: Shape, device, dtype: torch.dtype, seed: int = 0):
        self.shape, self.device, self.dtype, self.causal = shape, torch.device(device), dtype, shape.causal
        gen = torch.Generator().manual_seed(seed)
        d_model = shape.d_model
        module = MultiHeadAttention(d_model, shape.heads)
        with torch.no_grad():
            module.in_proj.weight.copy_(torch.randn(3 * d_model, d_model, generator=gen) / math.sqrt(d_model))
            module.out_proj.weight.copy_(torch.randn(d_model, d_model, generator=gen) / math.sqrt(d_model))
            module.in_proj.bias.copy_(0.1 * torch.randn(3 * d_model, generator=gen))
            module.out_proj.bias.copy_(0.1 * torch.randn(d_model, generator=gen))
        self.module = module.to(self.device, dtype).eval()
        x = torch.randn(shape.batch, shape.seq, d_model, generator=gen)  # (batch, seq, d_model)
        self.x = x.to(self.device, dtype).requires_grad_()
        with torch.no_grad():
            qkv = self.module.project(self.x, self.x, self.x)  # 3 x (batch, seq, d_model)
        # (batch, heads, seq, d_head) each, own memory, leaves of the autograd graph for the core's backward
        self.q, self.k, self.v = (split_heads(t, shape.heads).contiguous().requires_grad_() for t in qkv)
        self.expected = {}  # the float64 reference, computed once for all implementations (see `check`)


@dataclass(frozen=True)
class Implementation:
    """One way of computing attention, as the benchmark builds and runs it.

    Args:
        name: how tables and the command line call it.
        scope: "layer" (projections and core, on x) or "core" (attention alone, on q, k, v).
        build: Problem -> (call with no arguments returning the output, tensors to differentiate for backward).
        materialises: builds the (batch, heads, q_pos, k_pos) weights, so its memory grows as seq².
        backend: the SDPA backend it is pinned to, if any.
    """

    name: str
    scope: str
    build: object
    materialises: bool = True
    backend: str | None = None


def _pinned(backend):
    return sdpa_kernel([BACKENDS[backend]]) if backend else contextlib.nullcontext()


def _copy(cls, module: MultiHeadAttention) -> MultiHeadAttention:
    if cls is MultiHeadAttentionLoop:
        return MultiHeadAttentionLoop.from_batched(module).eval()
    twin = cls(module.d_model, module.heads).to(module.in_proj.weight).eval()
    twin.load_state_dict(module.state_dict())
    return twin


def _layer(cls, compiled: bool = False):
    def build(p: Problem):
        module = _copy(cls, p.module)
        if compiled:
            torch._dynamo.reset()  # a fresh start for each problem: no recompilation limit reached over a sweep
            module = torch.compile(module)

        def call():
            return module(p.x, causal=p.causal)[0]

        return call, [p.x, *module.parameters()]

    return build


def _to_torch(module: MultiHeadAttention) -> nn.MultiheadAttention:
    """nn.MultiheadAttention with the same weights (the reverse of `MultiHeadAttention.from_torch`)."""
    weight = module.in_proj.weight
    twin = nn.MultiheadAttention(module.d_model, module.heads, batch_first=True, device=weight.device)
    twin = twin.to(weight.dtype).eval()
    with torch.no_grad():
        twin.in_proj_weight.copy_(weight)
        twin.in_proj_bias.copy_(module.in_proj.bias)
        twin.out_proj.weight.copy_(module.out_proj.weight)
        twin.out_proj.bias.copy_(module.out_proj.bias)
    return twin


def _torch_layer(need_weights: bool):
    def build(p: Problem):
        module = _to_torch(p.module)
        # torch's mask means "may not attend"; is_causal is only a hint there, the mask is still required
        attn_mask = ~causal_mask(p.shape.seq, device=p.device) if p.causal else None

        def call():
            return module(p.x, p.x, p.x, need_weights=need_weights, attn_mask=attn_mask, is_causal=p.causal)[0]

        return call, [p.x, *module.parameters()]

    return build


def _core(hand_written: bool, backend=None):
    def build(p: Problem):
        def call():
            if hand_written:
                return attention(p.q, p.k, p.v, causal=p.causal)[0]
            with _pinned(backend):
                return sdpa(p.q, p.k, p.v, causal=p.causal)

        return call, [p.q, p.k, p.v]

    return build


def _triton_core():
    def build(p: Problem):
        from ..flash.kernel import flash_attention  # imports triton: only the suite that times the kernel pays for it

        def call():
            return flash_attention(p.q, p.k, p.v, causal=p.causal)

        return call, [p.q, p.k, p.v]

    return build


IMPLEMENTATIONS = {
    impl.name: impl
    for impl in (
        Implementation("loop", "layer", _layer(MultiHeadAttentionLoop)),
        Implementation("batched", "layer", _layer(MultiHeadAttention)),
        Implementation("einsum", "layer", _layer(MultiHeadAttentionEinsum)),
        Implementation("sdpa", "layer", _layer(MultiHeadAttentionSDPA), materialises=False),
        Implementation("nn.MHA", "layer", _torch_layer(need_weights=True)),
        Implementation("nn.MHA/no-weights", "layer", _torch_layer(need_weights=False), materialises=False),
        Implementation("compiled", "layer", _layer(MultiHeadAttention, compiled=True)),
        Implementation("core/hand", "core", _core(hand_written=True)),
        Implementation("core/sdpa", "core", _core(hand_written=False), materialises=False),
        *(Implementation(f"core/{b}", "core", _core(False, b), b == "math", b) for b in BACKENDS),
        Implementation("core/triton", "core", _triton_core(), materialises=False),
    )
}
LESSON_10 = ("core/triton",)  # lesson 06's tables leave it out: it is lesson 10's subject, and needs triton


def unavailable(impl: Implementation, device) -> str | None:
    """Why `impl` cannot run on this device at all, or None. (Some refuse only some inputs: found when run.)"""
    device = torch.device(device)
    if impl.backend in CUDA_ONLY_BACKENDS and device.type != "cuda":
        return f"the {impl.backend} backend of scaled_dot_product_attention exists only on CUDA"
    if impl.name == "core/triton" and importlib.util.find_spec("triton") is None:
        return "Triton is not installed (pip install triton; it has wheels for Linux only)"
    return None


# ----------------------------------------------------------------------------------------------------- checking


def sample_rows(seq: int, n: int = 48) -> torch.Tensor:
    """Query positions the check looks at: all of them up to n, else n spread from the first to the last."""
    return torch.linspace(0, seq - 1, min(seq, n)).round().long().unique()


def reference(p: Problem, scope: str, rows: torch.Tensor):
    """The output at query positions `rows`, in float64, from the problem's weights; and the leaves to differentiate.

    Shape:
        layer: output (batch, rows, d_model), leaves [x]; core: output (batch, heads, rows, d_head), leaves [q, k, v].
    """
    rows = rows.to(p.device)
    if scope == "layer":
        x = p.x.detach().double().requires_grad_()
        leaves = [x]
        w = {name: t.detach().double() for name, t in p.module.named_parameters()}
        qkv = F.linear(x, w["in_proj.weight"], w["in_proj.bias"]).chunk(3, dim=-1)  # 3 x (batch, seq, d_model)
        q, k, v = (split_heads(t, p.shape.heads) for t in qkv)  # (batch, heads, seq, d_head)
    else:
        q, k, v = leaves = [t.detach().double().requires_grad_() for t in (p.q, p.k, p.v)]
    # (rows, k_pos): the query at rows[i] may see keys 0..rows[i]
    mask = causal_mask(p.shape.seq, device=p.device)[rows] if p.causal else None
    out, _ = attention(q[..., rows, :], k, v, mask)  # (batch, heads, rows, d_head)
    if scope == "layer":
        out = F.linear(merge_heads(out), w["out_proj.weight"], w["out_proj.bias"])  # (batch, rows, d_model)
    return out, leaves


def _at_rows(out, scope, rows):
    return out[:, rows] if scope == "layer" else out[..., rows, :]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest |actual - expected| over the largest |expected|: the error on the scale of the result."""
    scale = expected.abs().max().clamp_min(torch.finfo(torch.float64).tiny)
    return float((actual.detach().double() - expected).abs().max() / scale)


def check(impl: Implementation, call, grad_inputs, p: Problem, gradient: bool = True, seed: int = 1):
    """Errors of `impl` against the float64 reference: on the output, and on the gradient of a loss on sampled rows.

    Args:
        impl, call, grad_inputs: the implementation and what its `build` returned for `p`.
        p: the problem.
        gradient: also check the gradient (of x for a layer, of q, k, v for a core; default True).
        seed: seeds the direction of the loss whose gradient is compared (default 1).

    Returns:
        (output error, gradient error or None), each as `relative_error`.
    """
    rows, expected, direction, expected_grads = _expected(p, impl.scope, gradient, seed)
    with torch.no_grad():  # the forward exactly as it is timed (nn.MultiheadAttention takes another path here)
        out_error = relative_error(_at_rows(call(), impl.scope, rows), expected)
    if not gradient:
        return out_error, None
    out = _at_rows(call(), impl.scope, rows)  # with autograd on this time
    out_error = max(out_error, relative_error(out, expected))
    mine = grad_inputs[:1] if impl.scope == "layer" else grad_inputs[:3]  # x, or q, k, v
    grads = torch.autograd.grad((out * direction.to(out.dtype)).sum(), mine, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, mine)]  # unused: its gradient is 0
    grad_error = max(relative_error(g, e) for g, e in zip(grads, expected_grads))
    return out_error, grad_error


def _expected(p: Problem, scope: str, gradient: bool, seed: int):
    """The reference's rows, output, loss direction and gradients, computed once per problem, scope and seed."""
    key = scope, gradient, seed
    if key not in p.expected:
        rows = sample_rows(p.shape.seq)
        out, leaves = reference(p, scope, rows)
        direction = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        direction = direction.to(p.device)
        grads = torch.autograd.grad((out * direction).sum(), leaves) if gradient else None
        p.expected[key] = rows, out.detach(), direction, grads
    return p.expected[key]


def tolerance(dtype: torch.dtype) -> float:
    """The largest relative error `check` accepts in this dtype."""
    if dtype not in TOLERANCE:
        raise ValueError(f"dtype must be one of {[dtype_name(d) for d in TOLERANCE]}, got {dtype_name(dtype)}")
    return TOLERANCE[dtype]

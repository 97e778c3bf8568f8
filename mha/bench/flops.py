"""How much work multi-head attention does, and the most a device could do per second.

A FLOP is one floating-point multiply or add, so a matrix product (m, k) @ (k, n) costs 2·m·k·n FLOPs.
Self-attention over `batch` sequences of `seq` positions, with `heads` heads of d_head = d_model / heads:

    projections      W_Q, W_K, W_V and W_O: four (batch·seq, d_model) @ (d_model, d_model)   8·batch·seq·d_model²
    attention core   scores Q Kᵀ, per head (seq, d_head) @ (d_head, seq): 2·batch·heads·seq²·d_head
                     = 2·batch·seq²·d_model; weights @ V costs the same                 4·batch·seq²·d_model
                     halved when causal: half the (q_pos, k_pos) pairs are masked, and a fused kernel skips them
    backward         twice the forward: each product has two gradients, each as costly as the product itself

Softmax, scaling, masking and biases cost a factor d_head (or d_model) less than the products and are not counted,
as is usual (the FlashAttention papers count the same way). Hand-written attention computes the masked half of a
causal product anyway; the count is the useful work, the same for every implementation, so FLOP/s compare fairly.
"""

import re
from dataclasses import dataclass

import torch

SCOPES = ("layer", "core")


def core_flops(batch: int, seq: int, d_model: int, causal: bool = False) -> int:
    """FLOPs of the attention core, forward: scores Q Kᵀ and weights @ V for every head.

    Args:
        batch, seq, d_model: sizes; the number of heads does not matter (heads · d_head = d_model).
        causal: count only the half of the (q_pos, k_pos) pairs that a query may attend to.

    Shape:
        returns a count of FLOPs, 4·batch·seq²·d_model, halved when causal.
    """
    flops = 4 * batch * seq * seq * d_model
    return flops // 2 if causal else flops


def projection_flops(batch: int, seq: int, d_model: int) -> int:
    """FLOPs of the four projections W_Q, W_K, W_V, W_O, forward: 8·batch·seq·d_model².

    Args:
        batch, seq, d_model: sizes.

    Shape:
        returns a count of FLOPs.
    """
    return 4 * 2 * batch * seq * d_model * d_model


def attention_flops(
    batch: int, seq: int, d_model: int, causal: bool = False, scope: str = "layer", backward: bool = False
) -> int:
    """FLOPs of one call of self-attention: the core, plus the projections for a whole layer, times 3 with backward.

    Args:
        batch, seq, d_model, causal: as in `core_flops`.
        scope: "layer" (projections and core) or "core" (the attention core alone).
        backward: count forward and backward (the backward costs twice the forward).

    Shape:
        returns a count of FLOPs.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    flops = core_flops(batch, seq, d_model, causal)
    if scope == "layer":
        flops += projection_flops(batch, seq, d_model)
    return 3 * flops if backward else flops


@dataclass(frozen=True)
class Peak:
    """Dense peak throughput of one accelerator, from its maker's datasheet, in FLOP/s.

    Datasheets print tensor-core figures "with sparsity", twice the dense rate; these are the dense ones (half).
    `pattern` is a regular expression matched against `torch.cuda.get_device_name()`.
    """

    device: str
    pattern: str
    bfloat16: float  # tensor cores; float16 runs at the same rate
    float32: float  # plain float32, no tensor cores
    source: str


_T = 1e12
_H100 = "NVIDIA H100 datasheet, nvidia.com/en-us/data-center/h100 (sparse figures halved)"
_H200 = "NVIDIA H200 datasheet, nvidia.com/en-us/data-center/h200 (sparse figures halved)"
# Most specific names first: "H100 PCIe" must not fall through to the SXM entry.
KNOWN_PEAKS = (
    Peak("H200 NVL", r"\bH200 NVL\b", 835.5 * _T, 60 * _T, _H200),
    Peak("H200 SXM", r"\bH200\b", 989.5 * _T, 67 * _T, _H200),
    Peak("H100 PCIe", r"\bH100\b.*\bPCIe\b", 756.5 * _T, 51 * _T, _H100),
    Peak("H100 NVL", r"\bH100 NVL\b", 835.5 * _T, 60 * _T, _H100),
    Peak("H100 SXM", r"\bH100\b", 989.5 * _T, 67 * _T, _H100),
    Peak("A100", r"\bA100\b", 312 * _T, 19.5 * _T, "NVIDIA A100 datasheet, nvidia.com/en-us/data-center/a100"),
    Peak("L40S", r"\bL40S\b", 362 * _T, 91.6 * _T, "NVIDIA L40S datasheet, nvidia.com/en-us/data-center/l40s"),
    Peak("L4", r"\bL4\b", 121 * _T, 30.3 * _T, "NVIDIA L4 datasheet, nvidia.com/en-us/data-center/l4"),
)


def known_peak(device_name: str, dtype: torch.dtype) -> tuple[float, str] | None:
    """The datasheet's dense peak for this device and dtype, with where it comes from; None if not in the table.

    Args:
        device_name: as `torch.cuda.get_device_name()` spells it, e.g. "NVIDIA H100 80GB HBM3".
        dtype: the dtype of the computation (float32 without TF32, as PyTorch runs it by default).

    Returns:
        (FLOP/s, source), or None.
    """
    rates = {torch.bfloat16: "bfloat16", torch.float16: "bfloat16", torch.float32: "float32"}
    for peak in KNOWN_PEAKS:
        if re.search(peak.pattern, device_name, flags=re.IGNORECASE) and dtype in rates:
            return getattr(peak, rates[dtype]), f"{peak.device} dense {dtype_name(dtype)}: {peak.source}"
    return None


def dtype_name(dtype: torch.dtype) -> str:
    """ "float32" for torch.float32."""
    return str(dtype).removeprefix("torch.")

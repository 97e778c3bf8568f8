import os

import pytest
import torch

# The JupyterHub test (tests/hub/) starts a hub and builds an image, the Slurm test (tests/slurm/) a cluster:
# `make test-hub` and `make test-slurm` run them, `make unit` does not.
collect_ignore = [
    name for name, flag in (("hub", "MHA_HUB_TEST"), ("slurm", "MHA_SLURM_TEST")) if not os.environ.get(flag)
]

# Lesson 10's Triton kernels run on CPU tensors in Triton's interpreter, chosen when triton is first imported; some
# tests import it earlier, through torch.compile: choose the interpreter before any of them where there is no GPU.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

import os

import pytest
import torch

# The JupyterHub test (tests/hub/) starts a hub and builds an image: `make test-hub` runs it, `make unit` does not.
collect_ignore = [] if os.environ.get("MHA_HUB_TEST") else ["hub"]

# Lesson 10's Triton kernels run on CPU tensors in Triton's interpreter, chosen when triton is first imported; some
# tests import it earlier, through torch.compile: choose the interpreter before any of them where there is no GPU.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

import os

import pytest
import torch

# The JupyterHub test (tests/hub/) starts a hub and builds an image: `make test-hub` runs it, `make unit` does not.
collect_ignore = [] if os.environ.get("MHA_HUB_TEST") else ["hub"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

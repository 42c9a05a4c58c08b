import os
import sys

import pytest
import torch

# reference_sta.py and the helpers live beside the tests
sys.path.insert(0, os.path.dirname(__file__))
torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

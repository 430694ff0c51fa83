from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fake_backend import FakeBackend

from cocopart.partition import Partition


@pytest.fixture
def fake() -> Partition:
    """A 64 MiB, 2-vCPU, 2-workload-layer guest on the tests-only fake backend."""
    return Partition({"memory": "64MiB", "vcpus": 2, "workload_layers": 2}, FakeBackend())

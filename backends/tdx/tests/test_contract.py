"""The tdx backend keeps the backend contract (cocopart.testing)."""

from cocopart.testing import BackendContract


class TestTdxContract(BackendContract):
    backend = "tdx"

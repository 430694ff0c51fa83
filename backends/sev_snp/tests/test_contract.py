"""The sev-snp backend keeps the backend contract (cocopart.testing)."""

from cocopart.testing import BackendContract


class TestSnpContract(BackendContract):
    backend = "sev-snp"

"""The TD's L1 VMM as one :class:`cocopart.backend.PrivilegedPlatform`: its memory, vCPU and
attestation primitives over the shared L1 state."""

from __future__ import annotations

from typing import ClassVar

from cocopart_tdx.l1_attest import L1Attestation
from cocopart_tdx.l1_memory import L1Memory
from cocopart_tdx.l1_vcpus import L1Vcpus


class TdxPlatform(L1Memory, L1Vcpus, L1Attestation):
    """The TD's L1 VMM, implementing the neutral privileged primitives on TDX."""

    vendor: ClassVar[str] = "intel"

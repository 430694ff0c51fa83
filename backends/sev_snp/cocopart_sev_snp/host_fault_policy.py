"""The host RMP fault policies by name (the backend option ``host_fault_policy``).

Kept apart from :mod:`cocopart_sev_snp.host_faults`, which models what each policy does, so
that validating the option (and listing the backend) does not import the RMP model.
"""

from __future__ import annotations

from enum import Enum


class HostFaultPolicy(str, Enum):
    """What the host does with an RMP #PF on its own write."""

    SIGBUS = "sigbus"
    PANIC = "panic"
    CONVERT = "convert"


#: Linux's behaviour, kept after the seed-003 discussion (seed 003, Brijesh Singh replying to
#: Peter Gonda, KVM list, after 2021-11-12: "I am keeping the current implementation as-is and
#: *not* going with the auto conversion from private to shared").
DEFAULT_POLICY = HostFaultPolicy.SIGBUS
HOST_FAULT_POLICIES = tuple(p.value for p in HostFaultPolicy)

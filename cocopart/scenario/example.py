"""The default scenario (also ``examples/default.toml`` and ``cocopart scenario new``)."""

from __future__ import annotations

import tomllib
from typing import TYPE_CHECKING

from cocopart.model import PartitionConfig

if TYPE_CHECKING:
    from cocopart.scenario.model import Scenario

# --------------------------------------------------------------------------------------------
# The example / default scenario

EXAMPLE_SCENARIO = """\
# cocopart scenario: one partitioned guest and the steps to run on it.
# Run it with:   cocopart compare THIS_FILE.toml      (every installed backend, side by side)
#                cocopart setup THIS_FILE.toml        (one backend, with a summary)
# Sizes are bytes or strings such as "2MiB", "64GiB"; ranges are { start = ..., size = ... }.

name = "default"
description = "64 GiB, 16 vCPUs, 2 workload layers: bring-up, share round, attestation, interrupts"

[guest]                       # the PartitionConfig (cocopart.model)
memory = "64GiB"
vcpus = 16
workload_layers = 2           # l2.1 and l2.2 (SNP: VMPL1/VMPL2..., TDX: L2 VM 1 and 2)
interrupt_mode = "privileged-emulated"  # host-direct | privileged-doorbell | privileged-emulated | hardware-virtualized
strategy = "optimal"          # optimal (architectural minimum) | linux (what Linux does today)
services = ["vtpm"]           # services of the privileged layer (SVSM / L1)
seed = "cocopart"             # seed of the simulated attestation roots

# Options each backend receives as PartitionConfig.backend_options (its section only).
[backend_options.sev-snp]
# workload_vmpls = [1, 2]     # VMPL of l2.1, l2.2 (default: [2] / [1, 2] / [1, 2, 3])
# host_page_size = "2M"       # "4K": the host backs private memory with 4K RMP entries
# call_protocol = "ghcb"      # "msr": SVSM calls through the GHCB MSR protocol
# product = "Milan"           # "Genoa" | "Turin": simulated AMD-SP and report layout

[backend_options.tdx]
# host_mapping = "4K"         # upstream KVM maps private memory at 4K; "2M": 512x fewer AUGs
# module = "1.5"              # "2.0": 1G accept and TDG.MEM.PAGE.RELEASE
# gpaw = 48                   # 52: the shared bit is bit 51
# enable_tdvmcall = false     # true: an L2's TDG.VP.VMCALL goes straight to the host
# enable_shared_eptp = true   # false: L1 gives its L2s no shared EPT (no shared memory)
# host_memory_fault = "convert"  # "refuse": no implicit conversion of a shared GPA on ACCEPT

# Optional cost overrides in ns (same layout as examples/costs.toml):
# [costs.primitives]
# PVALIDATE = 150

# How the workload layers use guest RAM (validated by bring-up) and their vCPUs.
[[layers]]
name = "l2.1"
memory = { start = 0, size = "32GiB" }
vcpus = 16

[[layers]]
name = "l2.2"
memory = { start = "32GiB", size = "32GiB" }
vcpus = 16

# The steps, in order. A step is a macro or one operation (op = "validate", ...).
[[steps]]
macro = "bring-up"            # validate each layer's RAM from that layer, create its vCPUs

[[steps]]
macro = "share-round"         # convert to shared and back to private
layer = "l2.1"
range = { start = "16GiB", size = "2MiB" }

[[steps]]
macro = "attest-each-layer"   # evidence from l2.1 and l2.2
source = "service"            # service (privileged-layer attestation) | hardware | both

[[steps]]
macro = "interrupts"          # configure the mode, inject a few vectors into each layer
vectors = [0x20, 0x30, 0xec]
"""


def default_scenario() -> Scenario:
    """The default scenario (also ``examples/default.toml`` and ``cocopart scenario new``)."""
    from cocopart.scenario.load import loads_scenario

    return loads_scenario(EXAMPLE_SCENARIO, "<default scenario>")


def default_guest(backend: str) -> PartitionConfig:
    """The default scenario's guest as ``backend`` receives it, read without loading the
    scenario's steps: what ``cocopart backends`` answers its capability matrix for. Equal to
    ``default_scenario().config_for(backend)`` but for the memory map derived from the
    layers, which no capability depends on (tests/core/test_default_guest.py)."""
    data = tomllib.loads(EXAMPLE_SCENARIO)
    guest = dict(data["guest"])
    options = {
        **guest.get("backend_options", {}),
        **data.get("backend_options", {}).get(backend, {}),
    }
    return PartitionConfig.model_validate({**guest, "backend_options": options})

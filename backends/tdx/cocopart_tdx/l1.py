"""The L1 VMM of the TD: the privileged layer that serves the protocol on TDX primitives.

* :class:`TdxPlatform` implements :class:`cocopart.backend.PrivilegedPlatform`:

  - validate for an L2 = TDG.MEM.PAGE.ACCEPT (order by strategy: ``linux`` tries 1G, 2M, 4K
    like Linux ``try_accept_page``; ``optimal`` 2M then 4K) + TDG.MEM.PAGE.ATTR.WR granting
    that L2 VM R|W|Xs|Xu (as OpenHCL does right after ACCEPT, tdx.md §3);
  - rescind = ATTR.WR removing every L2's alias + TDG.MEM.PAGE.RELEASE on a module that has it
    (``module = "2.0"``); module 1.5 has no way to un-accept: UNSUPPORTED_CALL, with a reason;
  - set access = ATTR.WR; create vCPU = the L2 VMCS through TDG.VP.WR + the first
    TDG.VP.ENTER on L1 vCPU n; delete = the L2 VMCS's virtual-APIC address cleared (it can
    never be entered again) and its state buffer zeroed;
  - hardware report = TDG.MR.REPORT + TDVMCALL<GetQuote>; measurement = TDG.MR.RTMR.EXTEND with
    the UEFI CC PCR -> RTMR mapping (:func:`pcr_to_rtmr`).

* :class:`TdxTransport` implements :class:`cocopart.backend.Transport`: the L2's
  TDG.VP.VMCALL (vendor-specific, R10 = "COCOPART") exits to L1 with basic reason 77; L1 reads
  the request from the L2_ENTER_GUEST_STATE buffer, answers there, and TDG.VP.ENTERs back.
  With ``enable_tdvmcall`` an L2's TDG.VP.VMCALL would go to the host, so the L2 uses the
  VMCALL instruction (reason 18) instead — our choice, listed in the report.

Bulk work (:class:`LeafWalker`): pages are handled as runs. For a run of ``n`` equal blocks
the walker executes the first block for real on the module (including TD exits, host AUGs,
fallbacks to smaller levels) and, when that block ends in one uniform state, gives the other
``n - 1`` blocks the same state and counts its primitives ``n`` times. Counts equal what
``n`` separate executions record; the cost grows with the number of runs, not pages.

The code lives in modules named for what they model; this module re-exports their names:

* :mod:`cocopart_tdx.l1_platform` — :class:`TdxPlatform`, composed of
  :mod:`cocopart_tdx.l1_core` (L1's state and shared helpers),
  :mod:`cocopart_tdx.l1_memory` (validate / rescind / set access / MapGPA),
  :mod:`cocopart_tdx.l1_vcpus` (create / delete / enter L2 vCPUs) and
  :mod:`cocopart_tdx.l1_attest` (report, quote, RTMR extension);
* :mod:`cocopart_tdx.l1_walker` — the leaf operations and :class:`LeafWalker`;
* :mod:`cocopart_tdx.l1_transport` — :class:`TdxTransport`;
* :mod:`cocopart_tdx.l1_region` — L1's own memory (:class:`L1Region`);
* :mod:`cocopart_tdx.l1_errors` — :class:`L1Error` and the mapping to protocol codes;
* :mod:`cocopart_tdx.l1_tally` — trace buffering (:class:`Tally`).
"""

from __future__ import annotations

from cocopart_tdx.l1_attest import pcr_to_rtmr
from cocopart_tdx.l1_errors import EPT_UNRESOLVED, L1Error, error_of, protocol_code
from cocopart_tdx.l1_memory import (
    ACCEPT_ORDER,
    ENTRIES_PER_CALL,
    PROTOCOL_PAGE_GRANT,
    VALIDATE_GRANT,
)
from cocopart_tdx.l1_platform import TdxPlatform
from cocopart_tdx.l1_region import QUOTE_BUFFER_PAGES, L1Region
from cocopart_tdx.l1_tally import Tally, vm_name
from cocopart_tdx.l1_transport import TdxTransport
from cocopart_tdx.l1_vcpus import L2_BOOT_STATE, U64, EntryHooks, L2VcpuRecord
from cocopart_tdx.l1_walker import (
    MAX_BUSY_RETRIES,
    MAX_EXIT_RETRIES,
    AcceptOp,
    AttrWrOp,
    BlockOutcome,
    LeafOp,
    LeafWalker,
    ReleaseOp,
    WalkResult,
    leaf_levels,
)

__all__ = [
    "ACCEPT_ORDER",
    "ENTRIES_PER_CALL",
    "EPT_UNRESOLVED",
    "L2_BOOT_STATE",
    "MAX_BUSY_RETRIES",
    "MAX_EXIT_RETRIES",
    "PROTOCOL_PAGE_GRANT",
    "QUOTE_BUFFER_PAGES",
    "U64",
    "VALIDATE_GRANT",
    "AcceptOp",
    "AttrWrOp",
    "BlockOutcome",
    "EntryHooks",
    "L1Error",
    "L1Region",
    "L2VcpuRecord",
    "LeafOp",
    "LeafWalker",
    "ReleaseOp",
    "Tally",
    "TdxPlatform",
    "TdxTransport",
    "WalkResult",
    "error_of",
    "leaf_levels",
    "pcr_to_rtmr",
    "protocol_code",
    "vm_name",
]

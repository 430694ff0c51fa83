"""The per-vCPU calling area page (sev-snp.md §1.1).

Offset 0 call_pending (u8), 1 mem_available (u8), 2 no_eoi_required (u8, APIC emulation
extension), 3..7 reserved, 8.. the request buffer. The caller sets call_pending = 1, the
privileged layer clears it when it services the call; a call still pending after the world
switch back means the privileged layer never saw it.
"""

from __future__ import annotations

CAA_SIZE = 4096
CALL_PENDING = 0x000
MEM_AVAILABLE = 0x001
NO_EOI_REQUIRED = 0x002
BUFFER = 0x008
BUFFER_SIZE = CAA_SIZE - BUFFER

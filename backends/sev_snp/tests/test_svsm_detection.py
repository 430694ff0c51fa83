"""Issue 13 point 5: Linux's SVSM-detection termination codes. A guest below VMPL0 whose
secrets page does not describe a usable SVSM stops with its own reason per defect (LX
arch/x86/boot/startup/sev-shared.c svsm_setup_ca; arch/x86/include/asm/sev-common.h
GHCB_TERM_SECRETS_PAGE 6, GHCB_TERM_NO_SVSM 7, GHCB_TERM_SVSM_VMPL0 8, GHCB_TERM_SVSM_CAA 9)
and asks the host to terminate it through the GHCB MSR protocol."""

from __future__ import annotations

import struct

import pytest
from cocopart_sev_snp import ghcb as g
from cocopart_sev_snp import secrets
from snp_helpers import guest, machine

KEYS = secrets.derive_vmpcks("t")


@pytest.mark.parametrize(
    "field,value,code",
    [
        (secrets.SVSM_SIZE, b"\0" * 8, 7),  # GHCB_TERM_NO_SVSM
        (secrets.SVSM_GUEST_VMPL, b"\0", 8),  # GHCB_TERM_SVSM_VMPL0
        (secrets.SVSM_CAA, struct.pack("<Q", 0x5008), 9),  # GHCB_TERM_SVSM_CAA
    ],
)
def test_rule_svsm_detection_termination_codes(field: int, value: bytes, code: int) -> None:
    """RULE_SVSM_DETECTION_TERMINATION_CODES, through the machine: the workload's detection
    fails with (set 1, code) and the host receives that termination request."""
    m = machine(guest())
    page = m.messengers["l2.1"].secrets_page
    page[field : field + len(value)] = value
    d = m.detect_svsm("l2.1")
    assert not d.svsm and d.terminate == (secrets.TERM_SET_LINUX, code)
    assert m.host.terminated["l2.1"] == (1, code)
    assert m.trace.count("VMGEXIT", issuer="l2.1", target=f"MSR.{g.MsrInfo.TERM_REQ:#x}") == 1


def test_rule_svsm_detection_termination_codes_in_linux_order() -> None:
    """Several defects: the first Linux checks wins (size, then VMPL, then the CAA); no
    secrets page at all is code 6; a good page with a hypervisor lacking MULTI_VMPL is still
    NOT_VMPL0 (3)."""
    features = int(g.SVSM_REQUIRED_FEATURES)
    bad = bytearray(secrets.build(KEYS, caa=0x5008, guest_vmpl=0))
    assert secrets.detect_svsm(lambda: 2, bytes(bad), features).terminate == (1, 8)
    struct.pack_into("<Q", bad, secrets.SVSM_SIZE, 0)
    assert secrets.detect_svsm(lambda: 2, bytes(bad), features).terminate == (1, 7)
    assert secrets.detect_svsm(lambda: 2, b"", features).terminate == (1, 6)
    good = secrets.build(KEYS, caa=0x5000, guest_vmpl=2)
    assert secrets.detect_svsm(lambda: 2, good, int(g.HvFeature.SNP)).terminate == (1, 3)
    d = secrets.detect_svsm(lambda: 2, good, features)
    assert d.svsm and d.terminate is None and (d.vmpl, d.caa) == (2, 0x5000)
    # at VMPL0 (the probe succeeds) the secrets page is never looked at
    assert secrets.detect_svsm(lambda: 0, b"", features).terminate is None

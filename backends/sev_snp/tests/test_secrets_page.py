"""The secrets page (sev-snp.md §2.4) and the guest's SVSM detection (§2.3)."""

from __future__ import annotations

import struct

from cocopart_sev_snp import ghcb as g
from cocopart_sev_snp import secrets
from snp_helpers import guest, machine

KEYS = secrets.derive_vmpcks("layout")


def test_secrets_page_layout_offsets() -> None:
    assert secrets.VMPCK_OFFSETS == (0x20, 0x40, 0x60, 0x80)
    assert secrets.MSG_SEQNO_OFFSETS == (0xA0, 0xA4, 0xA8, 0xAC)
    assert (
        secrets.SVSM_BASE,
        secrets.SVSM_SIZE,
        secrets.SVSM_CAA,
        secrets.SVSM_MAX_VERSION,
        secrets.SVSM_GUEST_VMPL,
        secrets.TSC_FACTOR,
    ) == (0x140, 0x148, 0x150, 0x158, 0x15C, 0x160)
    page = secrets.build(KEYS, caa=0x5000, guest_vmpl=2)
    assert len(page) == secrets.SECRETS_SIZE == 4096
    assert page[0x40:0x60] == KEYS[1]
    f = secrets.svsm_fields(page)
    assert (f.caa, f.max_version, f.guest_vmpl) == (0x5000, 1, 2) and f.size > 0
    assert struct.unpack_from("<Q", page, 0x150)[0] == 0x5000


def test_the_copy_for_vmpl_n_has_vmpck0_to_n_minus_1_zeroed() -> None:
    page = secrets.build(KEYS)
    for vmpl in (1, 2, 3):
        copy = secrets.copy_for_vmpl(page, vmpl, 0x7000)
        for n in range(4):
            assert any(secrets.vmpck(copy, n)) == (n >= vmpl)
        assert secrets.svsm_fields(copy).guest_vmpl == vmpl


def test_each_workload_layer_detects_the_svsm_at_its_own_vmpl() -> None:
    m = machine(guest(workload_layers=2))
    for layer, vmpl in (("l2.1", 1), ("l2.2", 2)):
        d = m.detect_svsm(layer)
        assert d.svsm and d.vmpl == vmpl and d.terminate is None
        assert d.caa == m.service.state.caa(layer, 0)


def test_vmpl0_detects_no_svsm_because_its_rmpadjust_probe_succeeds() -> None:
    m = machine(guest())
    d = m.detect_svsm("l1")
    assert not d.svsm and d.vmpl == 0 and d.terminate is None


def test_boot_check_terminates_without_multi_vmpl_or_snp() -> None:
    m = machine(guest())
    m.host.options.hv_features &= ~g.HvFeature.MULTI_VMPL
    assert m.detect_svsm("l2.1").terminate == (1, 3)  # NOT_VMPL0
    m.host.options.hv_features &= ~g.HvFeature.SNP
    assert m.detect_svsm("l2.1").terminate == (0, 2)  # SNP_UNSUPPORTED


def test_detection_needs_a_usable_svsm_entry_in_the_secrets_page() -> None:
    page = bytearray(secrets.build(KEYS, caa=0x5000, guest_vmpl=2))
    struct.pack_into("<Q", page, secrets.SVSM_SIZE, 0)
    d = secrets.detect_svsm(lambda: 2, bytes(page), int(g.SVSM_REQUIRED_FEATURES))
    assert not d.svsm and d.terminate == (1, secrets.TERM_NO_SVSM) == (1, 7)  # issue 13

"""CipherTextHiding: the ASID split and what happens to guests outside their class.

Split rule (sev-snp.md §8; LX kvm sev.c): max_snp_asid = min(N, MIN_SEV_ASID-1); SNP 1..N,
SEV-ES N+1..MIN_SEV_ASID-1 (empty = SEV-ES disabled), legacy SEV MIN_SEV_ASID..max."""

from __future__ import annotations

import pytest
from cocopart_sev_snp.asids import AsidRange, AsidSpace, GuestType
from cocopart_sev_snp.psp import (
    FwStatus,
    FwVersion,
    Hardware,
    HostDriver,
    ModuleParams,
)
from hypothesis import given, settings
from hypothesis import strategies as st

HW = Hardware(max_asid=15, min_sev_asid=8, ciphertext_hiding_capable=True)


def host_with(asids: int, hw: Hardware = HW) -> HostDriver:
    """A probed host with ``kvm_amd.ciphertext_hiding_asids=asids``."""
    host = HostDriver(hw, ModuleParams(ciphertext_hiding_asids=asids))
    host.probe()
    return host


def test_split_without_hiding_sev_es_and_snp_share_the_joint_range() -> None:
    space = AsidSpace(max_asid=15, min_sev_asid=8)
    assert space.range_for(GuestType.SNP) == AsidRange(first=1, last=7)
    assert space.range_for(GuestType.SEV_ES) == AsidRange(first=1, last=7)
    assert space.range_for(GuestType.SEV) == AsidRange(first=8, last=15)
    assert space.kinds_for(3) == [GuestType.SEV_ES, GuestType.SNP]


def test_split_with_hiding_n_gives_snp_1_to_n_and_sev_es_the_rest() -> None:
    space = AsidSpace(max_asid=15, min_sev_asid=8).with_hiding(3)
    assert str(space.range_for(GuestType.SNP)) == "1-3"
    assert str(space.range_for(GuestType.SEV_ES)) == "4-7"
    assert str(space.range_for(GuestType.SEV)) == "8-15"


def test_hiding_request_is_clamped_to_min_sev_asid_minus_one() -> None:
    space = AsidSpace(max_asid=15, min_sev_asid=8).with_hiding(1000)
    assert space.max_snp_asid == 7


def test_sev_es_disabled_when_n_takes_every_joint_asid() -> None:
    host = host_with(1000)
    assert host.psp.max_snp_asid == 7 and host.psp.ciphertext_hiding_en
    assert not host.asids.usable(GuestType.SEV_ES)
    assert host.supported == {GuestType.SEV: True, GuestType.SEV_ES: False, GuestType.SNP: True}
    refused = host.launch_guest(GuestType.SEV_ES)
    assert not refused.ok and refused.status == "ENOTTY"
    assert "sev-es: unusable (ASIDs none)" in host.asids.describe()


def test_snp_init_ex_carries_ciphertext_hiding_and_max_snp_asid() -> None:
    host = host_with(3)
    snp = next(e for e in host.log.entries if e.action == "SNP_INIT_EX")
    assert snp.ok and "SNP ASIDs 1..3" in snp.message
    assert host.psp.snapshot().ciphertext_hiding_en and host.psp.snapshot().max_snp_asid == 3


def test_kvm_allocates_each_type_inside_its_class() -> None:
    host = host_with(3)
    got = {kind: host.launch_guest(kind).asid for kind in GuestType}
    assert got == {GuestType.SEV: 8, GuestType.SEV_ES: 4, GuestType.SNP: 1}


def test_snp_guest_with_asid_above_n_fails_invalid_asid() -> None:
    host = host_with(3)
    launch = host.launch_guest(GuestType.SNP, asid=5)
    assert not launch.ok and launch.status == "INVALID_ASID"
    refusal = next(e for e in host.log.entries if e.action == "SNP_ACTIVATE" and not e.ok)
    assert refusal.code == FwStatus.INVALID_ASID and FwStatus.INVALID_ASID.value == 0x0D
    assert not refusal.confirmed
    assert "not in the snp class (1-3)" in refusal.message
    assert host.psp.guest_counts()[GuestType.SNP] == 0  # KVM decommissioned the context


def test_sev_es_guest_with_snp_asid_fails_invalid_asid() -> None:
    host = host_with(3)
    launch = host.launch_guest(GuestType.SEV_ES, asid=2)
    assert not launch.ok and launch.status == "INVALID_ASID"
    assert host.psp.legacy_guest_count() == 0


def test_legacy_sev_guest_with_joint_asid_fails_invalid_asid() -> None:
    host = host_with(0)
    launch = host.launch_guest(GuestType.SEV, asid=7)
    assert not launch.ok and launch.status == "INVALID_ASID"


def test_asid_outside_the_machine_fails_invalid_asid_confirmed() -> None:
    host = host_with(3)
    launch = host.launch_guest(GuestType.SEV, asid=16)
    refusal = next(e for e in host.log.entries if e.action == "ACTIVATE" and not e.ok)
    assert launch.status == "INVALID_ASID" and refusal.confirmed


def test_hiding_ignored_when_hardware_lacks_it() -> None:
    host = host_with(3, HW.model_copy(update={"ciphertext_hiding_capable": False}))
    assert not host.psp.ciphertext_hiding_en and not host.asids.ciphertext_hiding
    assert "ignore ciphertext_hiding_asids" in host.log.actions()


def test_hiding_needs_snp_init_ex_firmware() -> None:
    host = host_with(3, HW.model_copy(update={"firmware": FwVersion(major=1, minor=51)}))
    assert "SNP_INIT" in host.log.actions() and not host.psp.ciphertext_hiding_en


def test_hiding_not_applied_when_snp_is_off_in_kvm() -> None:
    host = HostDriver(HW, ModuleParams(sev_snp=False, ciphertext_hiding_asids=3))
    host.probe()
    assert not host.asids.ciphertext_hiding and host.asids.usable(GuestType.SEV_ES)


def test_zero_keeps_hiding_off() -> None:
    host = host_with(0)
    assert not host.psp.ciphertext_hiding_en
    assert host.launch_guest(GuestType.SNP, asid=7).ok


def test_firmware_rejects_bad_max_snp_asid() -> None:
    host = HostDriver(HW)
    host.psp.wbinvd_all_cpus()
    result = host.psp.snp_init(ex=True, ciphertext_hiding=True, max_snp_asid=8)
    assert result.fw_status is FwStatus.INVALID_PARAM and not result.confirmed


def test_asid_space_rejects_max_snp_asid_beyond_joint_range() -> None:
    with pytest.raises(ValueError):
        AsidSpace(max_asid=15, min_sev_asid=8, max_snp_asid=8)


@settings(max_examples=60, deadline=None)
@given(max_asid=st.integers(1, 64), min_sev_asid=st.integers(1, 64), n=st.integers(0, 80))
def test_classes_never_overlap_except_es_and_snp_without_hiding(
    max_asid: int, min_sev_asid: int, n: int
) -> None:
    space = AsidSpace(max_asid=max_asid, min_sev_asid=min_sev_asid).with_hiding(n)
    for asid in range(1, max_asid + 1):
        kinds = space.kinds_for(asid)
        if asid >= min_sev_asid:
            assert kinds == [GuestType.SEV]
        elif space.ciphertext_hiding:
            assert len(kinds) == 1
            assert kinds == [GuestType.SNP if asid <= space.max_snp_asid else GuestType.SEV_ES]
        else:
            assert kinds == [GuestType.SEV_ES, GuestType.SNP]

"""Issue 13 points 7 and 8: re-validation with ignore_cf, what a workload keeps on its own
VMSA (a named option: COCONUT's READ or, by default, nothing), and the VMSA placement
erratum (no VMSA on a 2M-aligned page, for the SVSM, the host and the model's own layout)."""

from __future__ import annotations

import pytest
from cocopart_sev_snp import ghcb as g
from cocopart_sev_snp import svsm
from cocopart_sev_snp import vmsa as vm
from cocopart_sev_snp.rmp import RmpEntry
from snp_helpers import MIB, machine, validated

from cocopart.client import PageRun
from cocopart.errors import ConfigError
from cocopart.memory import ProtocolLayout
from cocopart.model import MAX_VCPUS, PAGE_2M, PAGE_4K, Access
from cocopart.ops import CreateVcpu
from cocopart.protocol.ids import ResultCode


def test_rule_ignore_cf_zeroes_own_page_at_the_instruction_level() -> None:
    """RULE_IGNORE_CF_ZEROES_OWN_PAGE (CS core.rs core_pvalidate_one): PVALIDATE's
    FAIL_UNCHANGED (CF=1) is swallowed, the page is zeroed and access granted again."""
    p = validated(16 * MIB)
    m = machine(p)
    m.memory.write(PAGE_2M, b"secret")
    keys = (("PVALIDATE.2M", "CF=1"), ("ZERO.2M", None), ("RMPADJUST", None))
    before = [p.trace.count(k, issuer="l1", result=r) for k, r in keys]
    res = m.client.pvalidate(
        "l2.1", 0, [PageRun(PAGE_2M, PAGE_2M, 1)], validate=True, ignore_cf=True
    )
    assert res.code == ResultCode.SUCCESS
    after = [p.trace.count(k, issuer="l1", result=r) for k, r in keys]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]
    assert m.memory.read(PAGE_2M, 6) == bytes(6)
    assert m.rmp_entry(PAGE_2M).perm(2) == int(Access.RWX)


@pytest.mark.parametrize(
    "option,perms", [(None, Access.NONE), ("none", Access.NONE), ("read", Access.READ)]
)
def test_rule_vmsa_guest_access_option(option: str | None, perms: Access) -> None:
    """RULE_VMSA_GUEST_ACCESS_OPTION: after CREATE_VCPU the workload keeps nothing on its
    VMSA by default (Linux snp_set_vmsa), READ with ``svsm_vmsa_access = "read"`` (CS
    sev/utils.rs rmp_set_guest_vmsa, RMPFlags::VMSA = READ | BIT_VMSA); never write."""
    opts = {} if option is None else {"svsm_vmsa_access": option}
    p = validated(16 * MIB, vcpus=2, backend_options=opts)
    m = machine(p)
    assert p.run(CreateVcpu(vcpu=1)).ok
    for ctx in (m.layout.context(0, 1), m.layout.context(0, 0)):  # created, and the BSP's
        e = m.rmp_entry(ctx)
        assert e.vmsa and e.perm(2) == int(perms)
        assert m.access("l2.1", ctx, Access.READ).ok is bool(perms & Access.READ)
        out = m.access("l2.1", ctx, Access.WRITE)
        assert not out.ok and out.fault == "#NPF" and out.handled_by == "host"
    assert svsm.DEFAULT_VMSA_GUEST_ACCESS == "none"


def test_vmsa_access_option_is_validated() -> None:
    with pytest.raises(ConfigError) as err:
        validated(16 * MIB, backend_options={"svsm_vmsa_access": "write"})
    assert err.value.field == "backend_options.svsm_vmsa_access"


def test_rule_vmsa_not_2m_aligned_create_vcpu_is_refused_before_any_change() -> None:
    """RULE_VMSA_NOT_2M_ALIGNED (CS sev/vmsa.rs VmsaPage::new, LX snp_alloc_vmsa_page, KVM
    sev_snp_ap_creation): CREATE_VCPU on a 2M-aligned page is INVALID_PARAMETER; nothing is
    revoked or marked."""
    p = validated(16 * MIB, vcpus=2)
    m = machine(p)
    m.memory.write(PAGE_2M, vm.build(2, m.sev_features["l2.1"]))
    before = m.rmp_entry(PAGE_2M)
    adjusts = p.trace.count("RMPADJUST")
    code = m.client.create_vcpu("l2.1", 0, PAGE_2M, m.layout.caa(0, 1), 1).code
    assert code == ResultCode.INVALID_PARAMETER
    assert m.rmp_entry(PAGE_2M) == before
    assert p.trace.count("RMPADJUST") == adjusts
    assert p.trace.count("VMGEXIT", issuer="l1", target="AP_CREATION") == 0
    # the page next to it is fine (point 2: inside the 2M entry)
    m.memory.write(PAGE_2M + PAGE_4K, vm.build(2, m.sev_features["l2.1"]))
    assert (
        m.client.create_vcpu("l2.1", 0, PAGE_2M + PAGE_4K, m.layout.caa(0, 1), 1).code
        == ResultCode.SUCCESS
    )


def test_rule_host_refuses_2m_aligned_vmsa_at_ap_creation() -> None:
    """RULE_HOST_REFUSES_2M_ALIGNED_VMSA (LX arch/x86/kvm/svm/sev.c sev_snp_ap_creation):
    even a page that is a valid VMSA in the RMP is refused when 2M aligned."""
    p = validated(16 * MIB, vcpus=2)
    m = machine(p)
    for gpa, ok in ((PAGE_2M, False), (PAGE_2M + PAGE_4K, True)):
        m.rmp.set(
            gpa, gpa + PAGE_4K, RmpEntry(assigned=True, validated=True, asid=m.asid, vmsa=True)
        )
        page = m.ghcb_page("l1", 0)
        page.request(g.ExitCode.AP_CREATION, g.ap_creation_info1(g.ApCreateOp.CREATE, 2, 1), gpa)
        page.set(g.OFF_RAX, m.sev_features["l2.1"])
        m.host.exit("l1", page)
        assert page.failed() is not ok
        if not ok:
            assert page.info2 == g.GhcbError.INVALID_INPUT


@pytest.mark.parametrize("vcpus", [1, 2, 255, 256, MAX_VCPUS])
def test_rule_context_page_off_2m_boundary(vcpus: int) -> None:
    """RULE_CONTEXT_PAGE_OFF_2M_BOUNDARY: the model's own VMSAs (the layout's context pages)
    are never 2M aligned, whatever the number of vCPUs and layers."""
    for layers in (1, 2, 3):
        lay = ProtocolLayout(1 << 30, layers, vcpus)
        pages = {lay.context(i, c) for i in range(layers) for c in range(vcpus)}
        assert len(pages) == layers * vcpus
        assert all(gpa % PAGE_2M for gpa in pages)
        assert not pages & {lay.caa(i, c) for i in range(layers) for c in range(vcpus)}
        assert lay.layer_region(layers - 1)[1] <= lay.total

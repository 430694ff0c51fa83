"""Issue 14 point 3: what the QEMU/KVM host does when the guest ACCEPTs a GPA the host treats
as shared. KVM reports the private fault as KVM_EXIT_MEMORY_FAULT for the 4K page (Linux
arch/x86/kvm/mmu ``kvm_mmu_prepare_memory_fault_exit``, size PAGE_SIZE); QEMU answers with
an implicit conversion (accel/kvm/kvm-all.c ``kvm_convert_memory`` with the PRIVATE flag);
KVM AUGs and the ACCEPT completes. The refusing host is the named option
``host_memory_fault = "refuse"``."""

from __future__ import annotations

from cocopart.ops import ConvertPages, Status, ValidatePages

from .tdx_helpers import MIB, PAGE_2M, PAGE_4K, guest, machine, rng

PAGE = 4 * MIB


def _shared(size: int, **opts: object) -> tuple:  # type: ignore[type-arg]
    p = guest(16 * MIB, **opts)  # type: ignore[arg-type]
    assert p.run(ConvertPages(range=rng(PAGE, size), to="shared")).ok
    return p, p.trace.mark()


def test_rule_host_implicit_conversion_accept_of_a_shared_gpa_completes() -> None:
    """Default host: the ACCEPT of a shared page exits, KVM_EXIT_MEMORY_FAULT, QEMU converts
    the page to private, KVM AUGs it, the ACCEPT completes: the page is private and
    accepted for the L2, with no MapGPA from the guest."""
    p, mark = _shared(PAGE_4K)
    r = p.run(ValidatePages(range=rng(PAGE, PAGE_4K)))
    assert r.ok, r
    d = p.trace.since(mark)
    counts = {k.mnemonic: n for k, n in d.primitives.items()}
    assert counts["KVM_EXIT_MEMORY_FAULT"] == counts["QEMU.CONVERT"] == 1
    assert counts["TDH.MEM.PAGE.AUG"] == 1
    assert "TDG.VP.VMCALL" not in counts  # no MapGPA
    [run] = p.memory_view(PAGE, PAGE + PAGE_4K)
    assert (run.private, run.validated, run.access) == (True, True, {"l2.1": "rwus"})
    assert not machine(p).host.shared.get(PAGE)


def test_implicit_conversion_is_per_4k_page_so_a_shared_2m_range_is_accepted_at_4k() -> None:
    """KVM reports one 4K page per memory fault, and a 2M block with shared pages left is
    mapped at 4K (HOST_NO_HUGE_PAGE_OVER_SHARED): a shared 2M range costs 512 conversions and
    512 4K AUGs even on a 2M host (the guest should MapGPA it first)."""
    p, mark = _shared(PAGE_2M, host_mapping="2M")
    assert p.run(ValidatePages(range=rng(PAGE, PAGE_2M))).ok
    d = p.trace.since(mark)
    counts = {(k.mnemonic, k.target): n for k, n in d.primitives.items()}
    assert counts[("QEMU.CONVERT", "to private")] == 512
    assert counts[("TDH.MEM.PAGE.AUG", "4K")] == 512


def test_refusing_host_is_a_named_option() -> None:
    """host_memory_fault = "refuse": the memory fault is not converted, the host never AUGs
    the shared GPA and the validate fails with the unresolved EPT violation."""
    p, mark = _shared(PAGE_4K, host_memory_fault="refuse")
    r = p.run(ValidatePages(range=rng(PAGE, PAGE_4K)))
    assert r.status is Status.ERROR and r.error is not None
    assert r.error.mnemonic == "EPT_VIOLATION"
    d = p.trace.since(mark)
    assert {k.mnemonic for k in d.primitives} >= {"KVM_EXIT_MEMORY_FAULT"}
    assert "QEMU.CONVERT" not in {k.mnemonic for k in d.primitives}
    assert machine(p).host.shared.get(PAGE)

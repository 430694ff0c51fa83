"""Issue 13 point 6: the C-bit on workload accesses. A guest access carries the C-bit of its
mapping; C=1 needs a private, validated page the VMPL may use (else #NPF to the host, or
#VC 0x404), C=0 needs a shared page. One access path (npf.guest_access) serves
``Machine.access`` and ``host_faults.guest_private_access``.

Sources: sev-snp.md §4.4 (APM vol. 2 "RMP and VMPL access checks"; LX kvm_host.h
PFERR_GUEST_*); CS cpu/vc.rs (#VC 0x404); seed 003, Peter Gonda 2021-11-12 ("Guest gets a
#VC error because the page is not PVALIDATED"); LX set_memory_decrypted (the guest clears
the C-bit itself after its page-state change to shared)."""

from __future__ import annotations

from cocopart_sev_snp import host_faults as hf
from cocopart_sev_snp.rmp import PageState
from snp_helpers import MIB, machine, rng, validated

from cocopart.model import PAGE_4K, Access
from cocopart.ops import ConvertPages

PAGE = 0x7000


def test_rule_c_bit_selects_the_check_a_page_the_host_took_is_not_ok() -> None:
    """The host made a validated private page shared behind the guest's back: the
    workload's access (its mapping still C=1) is no longer reported ok — #NPF, KVM assigns
    the page back unvalidated, the retried access takes #VC 0x404."""
    p = validated(16 * MIB, backend_options={"host_page_size": "4K"})
    m = machine(p)
    assert m.access("l2.1", PAGE, Access.READ).ok
    _done, err = m.host.make_shared(PAGE, False, 1)
    assert not err and m.rmp_entry(PAGE).state is PageState.HYPERVISOR
    npfs = p.trace.count("NPF", issuer="l2.1")
    out = m.access("l2.1", PAGE, Access.READ)
    assert not out.ok and out.fault == "#VC 0x404" and out.handled_by == "l2.1"
    assert p.trace.count("NPF", issuer="l2.1", target="host", result="RMP") == npfs + 1
    assert m.rmp_entry(PAGE).state is PageState.GUEST_INVALID


def test_rule_c_bit_selects_the_check_shared_memory_through_c0_is_fine() -> None:
    """A page the workload converted to shared itself is mapped C=0: its accesses are ok and
    fault nothing; the same page through a C=1 mapping is the #NPF path."""
    p = validated(16 * MIB, backend_options={"host_page_size": "4K"})
    m = machine(p)
    assert p.run(ConvertPages(range=rng(PAGE, PAGE_4K), to="shared")).ok
    assert not m.mappings.c_bit(PAGE) and m.mappings.c_bit(PAGE + PAGE_4K)
    npfs = p.trace.count("NPF")
    for bit in (Access.READ, Access.WRITE):
        assert m.access("l2.1", PAGE, bit).ok
    assert p.trace.count("NPF") == npfs
    out = m.access("l2.1", PAGE, Access.READ, c_bit=True)
    assert not out.ok and out.fault == "#VC 0x404"


def test_rule_c_bit_selects_the_check_c0_access_to_private_memory_faults() -> None:
    """C=0 on a page the RMP assigns to the guest fails the RMP check: #NPF to the host,
    which the model's host leaves unresolved (nothing changes)."""
    p = validated(16 * MIB)
    m = machine(p)
    before = m.rmp_entry(PAGE)
    out = m.access("l2.1", PAGE, Access.READ, c_bit=False)
    assert not out.ok and out.fault == "#NPF" and out.handled_by == "host"
    assert m.rmp_entry(PAGE) == before
    assert p.trace.count("NPF", issuer="l2.1", target="host", result="RMP") == 1


def test_rule_c_bit_selects_the_check_one_path_for_both_entry_points() -> None:
    """Machine.access with C=1 and host_faults.guest_private_access agree on every state."""
    p = validated(16 * MIB, workload_layers=2, backend_options={"host_page_size": "4K"})
    m = machine(p)
    m.host.make_shared(PAGE, False, 1)  # taken by the host
    p.run(ConvertPages(layer="l2.1", range=rng(PAGE + PAGE_4K, PAGE_4K), to="shared"))
    for gpa in (0, PAGE, PAGE + PAGE_4K, m.layout.context(0, 0)):
        for layer in ("l2.1", "l2.2"):
            a, b = p.machine.fork(), p.machine.fork()
            assert isinstance(a, type(m)) and isinstance(b, type(m))
            one = a.access(layer, gpa, Access.READ, c_bit=True)
            two, steps = hf.guest_private_access(b, layer, gpa, Access.READ)
            assert one == two and steps
            assert a.rmp.map.items() == b.rmp.map.items()


def test_rule_guest_owns_the_c_bit() -> None:
    """RULE_GUEST_OWNS_THE_C_BIT: only the guest's own page-state changes move the C-bit;
    the host's RMPUPDATE does not."""
    p = validated(16 * MIB, backend_options={"host_page_size": "4K"})
    m = machine(p)
    m.host.make_shared(PAGE, False, 1)
    assert m.mappings.c_bit(PAGE)
    assert p.run(ConvertPages(range=rng(2 * PAGE, PAGE_4K), to="shared")).ok
    assert not m.mappings.c_bit(2 * PAGE)
    assert p.run(ConvertPages(range=rng(2 * PAGE, PAGE_4K), to="private")).ok
    assert m.mappings.c_bit(2 * PAGE) and m.access("l2.1", 2 * PAGE, Access.WRITE).ok

"""The host's side (tdx.md §4.2, §4.3, §1.2, §6): TDH.MEM.PAGE.AUG on pending accepts at the
host's mapping size, MapGPA with RETRY, BLOCK/TRACK/REMOVE, GetQuote, the shared bit."""

from __future__ import annotations

import pytest
from cocopart_tdx import vmcall as vmc
from cocopart_tdx.host import TdxHost, create_vcpus, tdvps_pages
from cocopart_tdx.l1 import Tally
from cocopart_tdx.sept import LEVEL_2M, LEVEL_4K, NO_ALIAS, SeptEntry, SeptState
from cocopart_tdx.tdcall import TdExit

from cocopart.model import Access
from cocopart.ops import ConvertPages, ValidatePages

from .tdx_helpers import MIB, PAGE_2M, PAGE_4K, guest, machine, module, rng, sept


def host(**opts: object) -> TdxHost:
    return machine(guest(16 * MIB, **opts)).host  # type: ignore[arg-type]


def test_4k_host_augs_4k_even_for_a_2m_accept() -> None:
    h = host()
    assert h.on_ept_violation(TdExit("EPT_VIOLATION", 0, LEVEL_2M, 1), Tally())
    assert h.sept.entry(0) == SeptEntry(SeptState.PENDING, LEVEL_4K)
    assert h.sept.entry(PAGE_4K) == SeptEntry(SeptState.FREE, LEVEL_4K)  # structure added
    assert h.sept.entry(PAGE_2M) == SeptEntry(SeptState.FREE, LEVEL_2M)


def test_2m_host_augs_2m_for_a_2m_accept_and_4k_for_a_4k_accept() -> None:
    h = host(host_mapping="2M")
    t = Tally()
    assert h.on_ept_violation(TdExit("EPT_VIOLATION", 0, LEVEL_2M, 1), t)
    assert h.sept.entry(0x1F_F000) == SeptEntry(SeptState.PENDING, LEVEL_2M)
    assert h.on_ept_violation(TdExit("EPT_VIOLATION", PAGE_2M, LEVEL_4K, 1), t)
    assert h.sept.entry(PAGE_2M) == SeptEntry(SeptState.PENDING, LEVEL_4K)
    assert [i[1][2] for i in t.items] == ["2M", "4K"]


def test_host_augs_only_free_or_removed_pages() -> None:
    h = host()
    h.sept.set_entries(0, PAGE_4K, SeptEntry(SeptState.BLOCKED, LEVEL_4K))
    assert not h.on_ept_violation(TdExit("EPT_VIOLATION", 0, LEVEL_4K, 1), Tally())
    h.sept.set_entries(0, PAGE_4K, SeptEntry(SeptState.REMOVED, LEVEL_4K))
    assert h.on_ept_violation(TdExit("EPT_VIOLATION", 0, LEVEL_4K, 1), Tally())


def test_aug_happens_on_accept_not_before() -> None:
    p = guest(16 * MIB, host_mapping="2M")
    assert sept(p).entry(0).state is SeptState.FREE
    assert p.trace.count("TDH.MEM.PAGE.AUG") == 0
    assert p.run(ValidatePages(range=rng(0, 4 * MIB))).ok
    assert p.trace.count("TDH.MEM.PAGE.AUG", issuer="host", target="2M") == 2
    assert p.trace.switches[("l1", "host", "TD exit")] == 2


def test_map_gpa_to_shared_blocks_tracks_and_removes_private_pages() -> None:
    p = guest(16 * MIB, host_mapping="2M")
    assert p.run(ValidatePages(range=rng(0, 4 * MIB))).ok
    assert p.run(ConvertPages(range=rng(0, 4 * MIB), to="shared")).ok
    t = p.trace
    assert t.count("TDH.MEM.RANGE.BLOCK", issuer="host") == 2
    assert t.count("TDH.MEM.TRACK", issuer="host") == 1
    assert t.count("TDH.MEM.PAGE.REMOVE", issuer="host") == 2
    assert sept(p).entry(0) == SeptEntry(SeptState.FREE, LEVEL_2M)
    assert sept(p).alias(1, 0) == NO_ALIAS
    [run] = p.memory_view(0, 4 * MIB)
    assert (run.private, run.validated, run.access) == (False, False, {})
    m = machine(p)
    assert m.access("host", 0, Access.WRITE).ok
    assert m.access("l2.1", 0, Access.READ).ok  # the host's shared EPT (ENABLE_SHARED_EPTP)


def test_map_gpa_back_to_private_leaves_pages_for_the_accept() -> None:
    p = guest(16 * MIB, host_mapping="2M")
    p.run(ConvertPages(range=rng(0, 2 * MIB), to="shared"))
    assert p.run(ConvertPages(range=rng(0, 2 * MIB), to="private")).ok
    [run] = p.memory_view(0, 2 * MIB)
    assert (run.private, run.validated, run.access) == (True, True, {"l2.1": "rwus"})


def test_map_gpa_retry_resumes_from_r11() -> None:
    p = guest(16 * MIB, host_mapping="2M")
    machine(p).host.map_gpa_chunk = PAGE_2M
    assert p.run(ConvertPages(range=rng(0, 8 * MIB), to="shared")).ok
    assert p.trace.count("TDG.VP.VMCALL", issuer="l1", target="MapGPA") == 4
    assert p.trace.switches[("l2.1", "l1", "L2->L1 exit")] == 4  # the L2 re-issues each RETRY
    assert all(not r.private for r in p.memory_view(0, 8 * MIB))


def test_map_gpa_status_codes() -> None:
    h = host()
    sbit = h.module.shared_bit
    assert h.map_gpa(0x800 | sbit, PAGE_4K, Tally()) == (vmc.TdvmcallStatus.ALIGN_ERROR, 0)
    assert h.map_gpa(0, 1 << 40, Tally())[0] == vmc.TdvmcallStatus.INVALID_OPERAND
    h.map_gpa_chunk = PAGE_4K
    assert h.map_gpa(sbit, 2 * PAGE_4K, Tally()) == (vmc.TdvmcallStatus.RETRY, PAGE_4K | sbit)


def test_host_refuses_to_aug_a_gpa_it_treats_as_shared() -> None:
    """HOST_REFUSES_AUG_ON_SHARED is a named host behaviour since issue 14 (point 3 changed
    this test: the default host converts implicitly, test_host_implicit_conversion.py)."""
    p = guest(16 * MIB, host_mapping="2M", host_memory_fault="refuse")
    p.run(ConvertPages(range=rng(0, 2 * MIB), to="shared"))
    r = p.run(ValidatePages(range=rng(0, 2 * MIB)))
    assert not r.ok and r.error is not None and r.error.mnemonic == "EPT_VIOLATION"


def test_remove_transition_and_block_transition() -> None:
    m = machine(guest(16 * MIB))
    s = m.module.sept
    s.set_entries(0, PAGE_4K, SeptEntry(SeptState.MAPPED, LEVEL_4K))
    s.set_entries(PAGE_4K, 2 * PAGE_4K, SeptEntry(SeptState.PENDING, LEVEL_4K))
    t = Tally()
    assert m.host.block(0, 2 * PAGE_4K, t) == 2
    assert [s.entry(0).state, s.entry(PAGE_4K).state] == [
        SeptState.BLOCKED,
        SeptState.PENDING_BLOCKED,
    ]
    assert m.host.remove(0, 2 * PAGE_4K, t) == 2
    assert s.entry(0).state is SeptState.FREE and s.entry(PAGE_4K).state is SeptState.FREE


def test_host_sees_only_the_selected_gprs_and_the_vm_index() -> None:
    regs = {"rax": 0, "rcx": vmc.gpr_select("r12"), "r12": 5, "r13": 6}
    seen = vmc.host_view(regs, regs["rcx"], 2)
    assert (seen["r12"], seen["r13"], seen["rcx"] >> 32) == (5, 0, 2)


def test_get_quote_buffer_round_trip_and_host_rules() -> None:
    buf = vmc.GetQuoteBuffer.request(b"R" * 1024)
    raw = buf.encode(4 * PAGE_4K)
    assert raw[:24] == (1).to_bytes(8, "little") + vmc.GET_QUOTE_IN_FLIGHT.to_bytes(8, "little") + (
        1024
    ).to_bytes(4, "little") + bytes(4)
    assert vmc.GetQuoteBuffer.decode(raw) == buf
    h = host()
    assert h.get_quote(0x1000, PAGE_4K, Tally()) == vmc.TdvmcallStatus.INVALID_OPERAND  # private


def test_shared_bit_is_gpaw_minus_1() -> None:
    assert module(guest(16 * MIB)).shared_bit == 1 << 47
    assert module(guest(16 * MIB, gpaw=52)).shared_bit == 1 << 51


def test_host_cannot_read_td_private_memory() -> None:
    """The host never sees plaintext: its read of a TD-owned line completes without a fault
    and returns zeros (issue 14 point 8 changed this test: the old expectation, a refused
    access, contradicted host_faults.RULE_TDX_HOST_READ_RETURNS_ZEROS)."""
    from cocopart_tdx import host_faults as hf

    p = guest(16 * MIB, host_mapping="2M")
    p.run(ValidatePages(range=rng(0, 2 * MIB)))
    p.machine.memory.write(0, b"secret")
    assert machine(p).access("host", 0, Access.READ).ok
    assert hf.host_read(machine(p), 0, 6).data == bytes(6)


def test_each_vcpu_needs_6_plus_3_tdvps_pages_per_l2() -> None:
    assert [tdvps_pages(n) for n in (1, 2, 3)] == [9, 12, 15]


@pytest.mark.parametrize(
    "opts",
    [
        {"module": "3.0"},
        {"host_mapping": "1G"},
        {"gpaw": 50},
        {"enable_tdvmcall": "yes"},
        {"hugepages": True},
        {"host_memory_fault": "ignore"},
    ],
)
def test_bad_backend_options_name_the_field(opts: dict[str, object]) -> None:
    from cocopart.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        guest(16 * MIB, **opts)  # type: ignore[arg-type]
    assert f"backend_options.{next(iter(opts))}" in str(err.value)
    if "hugepages" in opts:
        assert "module, host_mapping, gpaw, enable_tdvmcall" in str(err.value)


def test_host_creates_l1_vcpus_with_tdvps_pages_and_the_init_state() -> None:
    m = machine(guest(16 * MIB, vcpus=4, layers=2, gpaw=52))
    assert len(m.l1_vcpus) == 4
    v3 = m.l1_vcpus[3]
    assert (v3["tdvps_pages"], v3["rip"], v3["rbx"], v3["rsi"], v3["cr0"], v3["efer"]) == (
        12,
        0xFFFF_FFF0,
        52,
        3,
        0x21,
        0x901,
    )
    with pytest.raises(ValueError):
        create_vcpus(0x10000, 1, 48)

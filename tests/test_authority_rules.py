"""Issue 11, "What is wrong today": one test per case, named after the authority rule it
checks (cocopart.authority RULE_* constants, plus the SNP rule RULE_IGNORE_CF_ZEROES_OWN_PAGE
of cocopart_sev_snp.svsm).

Every test reproduces the case through public interfaces only — ``Partition.run`` /
``plan`` / ``memory_view``, and the raw protocol as a workload would issue it
(``p.machine.transport.call`` with the request codecs of :mod:`cocopart.protocol`) — and
asserts both the fixed behaviour and that nothing that must stay the same changed (the
victim's ``memory_view`` runs, its bytes, its calling areas and vCPUs).

Sources quoted in the docstrings: ``sev-snp.md`` / ``tdx.md`` are ../shared/reference;
"CS" is COCONUT-SVSM; "TDX module" is the TDX module 1.5 source; "cocopart's choice" marks a
rule no specification makes for several workload layers (docs/authority.md).
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest

from cocopart import vtpm_commands as tpm
from cocopart.authority import (
    AUTHORITY_VENDOR,
    RULE_BSP_KEEPS_RUNNING,
    RULE_GRANT_WITHIN_HELD,
    RULE_PEER_ACCESS_NEEDS_OWNERSHIP,
    RULE_RANGE_INSIDE_RAM,
    RULE_STATE_CHANGE_NEEDS_OWNERSHIP,
)
from cocopart.errors import CocopartError, ConfigError
from cocopart.memory import (
    REPORT_BUFFER_SIZE,
    SCRATCH_CERTS,
    SCRATCH_MANIFEST,
    SCRATCH_REPORT,
    SCRATCH_VTPM,
)
from cocopart.model import GpaRange
from cocopart.ops import (
    ConvertPages,
    CreateVcpu,
    DeleteVcpu,
    EndOfInterrupt,
    InjectInterrupt,
    OperationResult,
    RescindPages,
    SetAccess,
    Status,
    ValidatePages,
)
from cocopart.partition import Partition
from cocopart.protocol import pvalidate as pv
from cocopart.protocol import vtpm as vtpm_codec
from cocopart.protocol.attest import MAX_CERTS_SIZE, AttestRequest
from cocopart.protocol.call import CallOutcome, Registers
from cocopart.protocol.calling_area import BUFFER
from cocopart.protocol.ids import AttestCall, CoreCall, ProtocolId, ResultCode, VtpmCall
from cocopart.protocol.manifest import VTPM_SERVICE_GUID
from cocopart.service.tpm import (
    TPM_ALG_SHA256,
    TPM_ALG_SHA384,
    TPM_CC_PCR_READ,
    TPM_RC_SIZE,
    TPM_ST_NO_SESSIONS,
)

MIB = 1 << 20
PAGE = 4096
BACKENDS = ("sev-snp", "tdx")
both = pytest.mark.parametrize("backend", BACKENDS)

#: Two tenants, each with half of guest RAM assigned for good.
L21_RAM = (0, 32 * MIB)
L22_RAM = (32 * MIB, 64 * MIB)
TWO_TENANTS: dict[str, Any] = {
    "memory": "64MiB",
    "vcpus": 2,
    "workload_layers": 2,
    "memory_map": {
        "l2.1": [{"start": 0, "size": "32MiB"}],
        "l2.2": [{"start": "32MiB", "size": "32MiB"}],
    },
}
#: Guest RAM is l1's pool (no memory map).
POOL_GUEST: dict[str, Any] = {"memory": "64MiB", "vcpus": 2, "workload_layers": 2}

#: A page of l2.2's RAM holding data (the victim of the cross-tenant cases).
VICTIM = L22_RAM[0] + 5 * PAGE
SECRET = b"l2.2's secret page contents " * 8
#: 16 pages of l2.1's own RAM left private but not validated (for raw PVALIDATE lists).
HOLE, HOLE_PAGES = 1 * MIB, 16
#: Bytes of l2.2's RAM the cross-tenant tests compare (VICTIM lies inside).
WATCHED = 8 * PAGE


# -- helpers ---------------------------------------------------------------------------------
def rng(start: int, size: int) -> GpaRange:
    return GpaRange(start=start, size=size)


def ok(result: OperationResult) -> OperationResult:
    assert result.status is Status.OK, (result.operation, result.reason)
    return result


def tenants(backend: str) -> Partition:
    """l2.1 and l2.2 have each validated their own RAM (l2.1 all but HOLE, which stays
    private and unvalidated on both backends); l2.2's VICTIM page holds SECRET."""
    p = Partition(TWO_TENANTS, backend)
    hole_end = HOLE + HOLE_PAGES * PAGE
    if backend == "tdx":  # L1 accepted all RAM at launch: leave the hole unvalidated
        ok(p.run(ValidatePages(layer="l2.1", range=rng(0, HOLE))))
        ok(p.run(ValidatePages(layer="l2.1", range=rng(hole_end, L21_RAM[1] - hole_end))))
    else:  # SNP RAM starts shared: validate it all, then rescind the hole (stays private)
        ok(p.run(ValidatePages(layer="l2.1", range=rng(*L21_RAM))))
        ok(p.run(RescindPages(layer="l2.1", range=rng(HOLE, HOLE_PAGES * PAGE))))
    ok(p.run(ValidatePages(layer="l2.2", range=rng(L22_RAM[0], L22_RAM[1] - L22_RAM[0]))))
    p.machine.memory.write(VICTIM, SECRET)
    p.machine.memory.write(L22_RAM[0], SECRET)
    [hole] = p.memory_view(HOLE, hole_end)
    assert (hole.private, hole.validated, hole.owner) == (True, False, "l2.1")
    return p


def victim_state(p: Partition, layer: str = "l2.2") -> tuple[Any, ...]:
    """Everything of ``layer`` a cross-tenant request must leave alone: its RAM's runs and
    first bytes, its protocol pages' runs and bytes, its calling areas and its vCPUs. When
    ``layer`` is the caller (l2.1), its calling areas and live context pages are left out of
    the bytes: issuing a call writes them (call_pending, the registers)."""
    i = p.config.workloads.index(layer)
    start, end = L22_RAM if layer == "l2.2" else L21_RAM
    ps, pe = p.machine.layout.layer_region(i)
    state = p.machine.service.state
    areas = {k: v for k, v in state.areas.items() if k[0] == layer}
    live = set(areas.values()) | {v.context_gpa for v in p.vcpus() if v.layer == layer}
    protocol = b"".join(
        p.machine.memory.read(g, PAGE)
        for g in range(ps, pe, PAGE)
        if layer == "l2.2" or g not in live
    )
    return (
        p.memory_view(start, end),
        p.machine.memory.read(start, WATCHED),
        p.machine.memory.read(VICTIM if layer == "l2.2" else 0x10000, PAGE),
        p.memory_view(ps, pe),
        protocol,
        areas,
        [v for v in p.vcpus() if v.layer == layer],
    )


def call(
    p: Partition,
    layer: str,
    protocol: int,
    call_id: int,
    rcx: int = 0,
    rdx: int = 0,
    r8: int = 0,
    vcpu: int = 0,
) -> CallOutcome:
    """One raw protocol call, as the workload's vCPU would issue it."""
    return p.machine.transport.call(layer, vcpu, Registers.call(protocol, call_id, rcx, rdx, r8))


def caa(p: Partition, layer: str, vcpu: int = 0) -> int:
    return p.machine.service.state.caa(layer, vcpu)


def header(p: Partition, gpa: int) -> tuple[int, int]:
    """(entries, next) of the PVALIDATE list at ``gpa``."""
    count, nxt, _ = pv.HEADER.unpack_from(p.machine.memory.read(gpa, pv.HEADER.size))
    return count, nxt


def raw_pvalidate(
    p: Partition, layer: str, entries: list[int], at: int | None = None
) -> tuple[CallOutcome, int]:
    """PVALIDATE with ``entries`` written at ``at`` (default: the caller's calling-area
    buffer); returns the outcome and the ``next`` index written back."""
    gpa = caa(p, layer) + BUFFER if at is None else at
    p.machine.memory.write(gpa, pv.encode(entries))
    out = call(p, layer, ProtocolId.CORE, CoreCall.PVALIDATE, gpa)
    return out, header(p, gpa)[1]


def refused(result: OperationResult, rule: str) -> None:
    """A refusal by cocopart's authority model that changed nothing."""
    assert result.status is Status.ERROR, (result.status, result.reason)
    assert result.error is not None
    assert (result.error.vendor, result.error.mnemonic) == (AUTHORITY_VENDOR, rule)
    assert result.changed == [] and result.progress is None


def pcr_read(selections: list[tuple[int, bytes]]) -> bytes:
    """TPM2_PCR_Read with the given (bank, pcrSelect bitmap) selections."""
    body = struct.pack(">I", len(selections)) + b"".join(
        struct.pack(">HB", alg, len(mask)) + mask for alg, mask in selections
    )
    return struct.pack(">HII", TPM_ST_NO_SESSIONS, 10 + len(body), TPM_CC_PCR_READ) + body


# == 1. no confused deputy: raw protocol calls from l2.1 =====================================
@both
def test_buffer_must_be_callers_remap_ca_onto_a_peers_page_is_invalid_address(backend: str) -> None:
    """RULE_BUFFER_MUST_BE_CALLERS: REMAP_CA onto a page of l2.2's RAM that l2.1 cannot
    write answers INVALID_ADDRESS and l1 does not zero it (sev-snp.md §2 REMAP_CA, §1.5;
    CS core.rs core_remap_ca; docs/authority.md)."""
    p = tenants(backend)
    before, mine = victim_state(p), caa(p, "l2.1")
    out = call(p, "l2.1", ProtocolId.CORE, CoreCall.REMAP_CA, VICTIM)
    assert out.code == ResultCode.INVALID_ADDRESS
    assert p.machine.memory.read(VICTIM, len(SECRET)) == SECRET
    assert victim_state(p) == before and caa(p, "l2.1") == mine


@both
def test_buffer_must_be_callers_remap_ca_onto_a_peers_calling_area_is_invalid_address(
    backend: str,
) -> None:
    """RULE_BUFFER_MUST_BE_CALLERS: l2.2's calling area (a protocol page of l2.2) is not
    l2.1's to write, so REMAP_CA onto it is INVALID_ADDRESS and l2.2 keeps its calling area
    and its bytes (sev-snp.md §2 REMAP_CA; CS core.rs core_remap_ca; docs/authority.md)."""
    p = tenants(backend)
    target = p.machine.layout.caa(1, 0)
    assert caa(p, "l2.2") == target
    p.machine.memory.write(target + BUFFER, b"l2.2 request in flight")
    before, mine = victim_state(p), caa(p, "l2.1")
    out = call(p, "l2.1", ProtocolId.CORE, CoreCall.REMAP_CA, target)
    assert out.code == ResultCode.INVALID_ADDRESS
    assert victim_state(p) == before and caa(p, "l2.1") == mine


@both
def test_context_page_untouchable_remap_ca_onto_a_peers_live_context_page_is_invalid_address(
    backend: str,
) -> None:
    """RULE_CONTEXT_PAGE_UNTOUCHABLE: l2.2's live vCPU context page (SNP VMSA / TDX L2
    state) never becomes anyone's calling area: INVALID_ADDRESS, the context unchanged
    (sev-snp.md §2.2, §4.2 VMSA page; tdx.md §2.3; docs/authority.md)."""
    p = tenants(backend)
    target = p.machine.layout.context(1, 0)
    assert any(v.context_gpa == target for v in p.vcpus())
    before, mine = victim_state(p), caa(p, "l2.1")
    out = call(p, "l2.1", ProtocolId.CORE, CoreCall.REMAP_CA, target)
    assert out.code == ResultCode.INVALID_ADDRESS
    assert victim_state(p) == before and caa(p, "l2.1") == mine


@both
def test_context_page_untouchable_remap_ca_onto_own_live_context_page_is_invalid_address(
    backend: str,
) -> None:
    """RULE_CONTEXT_PAGE_UNTOUCHABLE: not even the owner may turn its own live context page
    into its calling area (l1 would zero the running vCPU's state): INVALID_ADDRESS
    (sev-snp.md §4.2: lower VMPLs hold no write access to a VMSA; docs/authority.md)."""
    p = tenants(backend)
    target = p.machine.layout.context(0, 0)
    before, mine = victim_state(p, "l2.1"), caa(p, "l2.1")
    out = call(p, "l2.1", ProtocolId.CORE, CoreCall.REMAP_CA, target)
    assert out.code == ResultCode.INVALID_ADDRESS
    assert victim_state(p, "l2.1") == before and caa(p, "l2.1") == mine
    assert p.machine.memory.read(target, PAGE) != bytes(PAGE)  # the state was not zeroed


@both
def test_buffer_must_be_callers_remap_ca_onto_own_ram_page_still_succeeds(backend: str) -> None:
    """RULE_BUFFER_MUST_BE_CALLERS (the allowed side): REMAP_CA onto a page of l2.1's own
    RAM is SUCCESS, zeroes that page and nothing of l2.2 changes (sev-snp.md §2 REMAP_CA:
    "SVSM zeroes the new page"; CS core.rs core_remap_ca)."""
    p = tenants(backend)
    own = 0x40000
    p.machine.memory.write(own, b"old bytes")
    before = victim_state(p)
    assert call(p, "l2.1", ProtocolId.CORE, CoreCall.REMAP_CA, own).code == ResultCode.SUCCESS
    assert caa(p, "l2.1") == own and p.machine.memory.read(own, PAGE) == bytes(PAGE)
    assert victim_state(p) == before


def _attest_request(p: Partition, where: str) -> tuple[AttestRequest, int]:
    """An ATTEST_SERVICES request of l2.1 with one buffer moved into l2.2's RAM
    (``where``), and the GPA of the request."""
    lay, ca = p.machine.layout, caa(p, "l2.1")
    fields: dict[str, Any] = {
        "report_gpa": lay.scratch(0, SCRATCH_REPORT),
        "report_size": REPORT_BUFFER_SIZE,
        "nonce_gpa": ca + 0x800,
        "nonce_size": 64,
        "manifest_gpa": lay.scratch(0, SCRATCH_MANIFEST),
        "manifest_size": PAGE,
        "certs_gpa": lay.scratch(0, SCRATCH_CERTS),
        "certs_size": MAX_CERTS_SIZE,
    }
    if where in ("report", "manifest", "certs", "nonce"):
        fields[f"{where}_gpa"] = VICTIM
    elif where == "report-straddling":  # l2.1's last page + l2.2's first page
        fields["report_gpa"] = L21_RAM[1] - PAGE
    req = AttestRequest(**fields)
    at = VICTIM if where == "request" else ca + BUFFER
    p.machine.memory.write(at, req.encode())
    return req, at


@both
@pytest.mark.parametrize(
    "where", ["none", "report", "manifest", "certs", "nonce", "request", "report-straddling"]
)
def test_buffer_must_be_callers_attest_services_buffer_in_a_peers_page_is_invalid_address(
    backend: str, where: str
) -> None:
    """RULE_BUFFER_MUST_BE_CALLERS: ATTEST_SERVICES writes the report, manifest and
    certificates and reads the request and nonce only where l2.1 may itself write / read;
    any of them in l2.2's page is INVALID_ADDRESS and l2.2's bytes stay ("none": the same
    request with l2.1's own buffers succeeds) (sev-snp.md §3.1, §1.5; CS attest.rs)."""
    p = tenants(backend)
    _, at = _attest_request(p, where)
    before = victim_state(p)
    out = call(p, "l2.1", ProtocolId.ATTEST, AttestCall.ATTEST_SERVICES, at)
    if where == "none":
        assert out.code == ResultCode.SUCCESS and out.regs.r8 > 0
    else:
        assert out.code == ResultCode.INVALID_ADDRESS
    assert victim_state(p) == before  # l2.2's pages: same state, same bytes


@both
def test_buffer_must_be_callers_attest_single_service_report_in_a_peers_page_is_invalid_address(
    backend: str,
) -> None:
    """RULE_BUFFER_MUST_BE_CALLERS: the same for ATTEST_SINGLE_SERVICE (vTPM) with the
    report buffer in l2.2's page: INVALID_ADDRESS, l2.2 unchanged (sev-snp.md §3.1)."""
    p = tenants(backend)
    lay, ca = p.machine.layout, caa(p, "l2.1")
    req = AttestRequest(
        report_gpa=VICTIM,
        report_size=REPORT_BUFFER_SIZE,
        nonce_gpa=ca + 0x800,
        nonce_size=64,
        manifest_gpa=lay.scratch(0, SCRATCH_MANIFEST),
        manifest_size=PAGE,
        service_guid=VTPM_SERVICE_GUID,
    )
    p.machine.memory.write(ca + BUFFER, req.encode())
    before = victim_state(p)
    out = call(p, "l2.1", ProtocolId.ATTEST, AttestCall.ATTEST_SINGLE_SERVICE, ca + BUFFER)
    assert out.code == ResultCode.INVALID_ADDRESS
    assert victim_state(p) == before


@both
def test_buffer_must_be_callers_pvalidate_list_in_a_peers_page_is_invalid_address(
    backend: str,
) -> None:
    """RULE_BUFFER_MUST_BE_CALLERS: the PVALIDATE request list is read, and its ``next``
    written back, by l1 for the caller: a list in l2.2's page is INVALID_ADDRESS, its
    header is not written and none of its (l2.1-owned) entries runs (sev-snp.md §2.1;
    CS core.rs core_pvalidate)."""
    p = tenants(backend)
    p.machine.memory.write(VICTIM, pv.encode(pv.run_entries(HOLE, False, 2, True)))
    before, hole = victim_state(p), p.memory_view(HOLE, HOLE + HOLE_PAGES * PAGE)
    out = call(p, "l2.1", ProtocolId.CORE, CoreCall.PVALIDATE, VICTIM)
    assert out.code == ResultCode.INVALID_ADDRESS
    assert header(p, VICTIM) == (2, 0)
    assert victim_state(p) == before
    assert p.memory_view(HOLE, HOLE + HOLE_PAGES * PAGE) == hole


@both
@pytest.mark.parametrize("ignore_cf", [False, True], ids=["plain", "ignore_cf"])
def test_state_change_needs_ownership_pvalidate_entries_over_a_peers_pages_stop_at_that_entry(
    backend: str, ignore_cf: bool
) -> None:
    """RULE_STATE_CHANGE_NEEDS_OWNERSHIP: a list whose entries 0-2 are l2.1's own pages and
    entry 3 a validated page of l2.2 answers INVALID_ADDRESS with ``next`` = 3: entries
    0-2 are done, l2.2's pages keep their state and bytes (with ignore_cf too: never
    zeroed, never granted to l2.1), entry 4 is not run (sev-snp.md §2.1: on failure
    ``next`` indexes the failing entry; CS core.rs core_pvalidate; TDX module
    tdg_mem_page_accept.c never zeroes an accepted page; docs/authority.md)."""
    p = tenants(backend)
    entries = (
        pv.run_entries(HOLE, False, 3, True)
        + pv.run_entries(VICTIM, False, 2, True, ignore_cf)
        + pv.run_entries(HOLE + 3 * PAGE, False, 1, True)
    )
    before = victim_state(p)
    out, nxt = raw_pvalidate(p, "l2.1", entries)
    assert (out.code, nxt) == (ResultCode.INVALID_ADDRESS, 3)
    done, rest = (
        p.memory_view(HOLE, HOLE + 3 * PAGE),
        p.memory_view(HOLE + 3 * PAGE, HOLE + 4 * PAGE),
    )
    assert [(r.validated, r.owner, r.access) for r in done] == [(True, "l2.1", {"l2.1": "rwus"})]
    assert [r.validated for r in rest] == [False]
    assert victim_state(p) == before
    assert p.machine.memory.read(VICTIM, len(SECRET)) == SECRET


@both
def test_buffer_must_be_callers_vtpm_cmd_buffer_in_a_peers_page_is_invalid_address(
    backend: str,
) -> None:
    """RULE_BUFFER_MUST_BE_CALLERS: SVSM_VTPM_CMD reads and overwrites its 4K buffer; one
    in l2.2's page is INVALID_ADDRESS, the command is not executed (the PCR keeps its value)
    and the page keeps its bytes (sev-snp.md §3.2; CS vtpm.rs)."""
    p = tenants(backend)
    digest = hashlib.sha384(b"event").digest()
    p.machine.memory.write(VICTIM, vtpm_codec.encode_request(tpm.pcr_extend(10, digest)))
    before = victim_state(p)
    out = call(p, "l2.1", ProtocolId.VTPM, VtpmCall.CMD, VICTIM)
    assert out.code == ResultCode.INVALID_ADDRESS
    assert victim_state(p) == before
    code, rsp = p.machine.client.vtpm_command("l2.1", 0, tpm.pcr_read(10))
    assert code == ResultCode.SUCCESS and tpm.parse_pcr_read(rsp) == [bytes(48)]


@both
@pytest.mark.parametrize("which", ["context", "calling-area"])
def test_buffer_must_be_callers_create_vcpu_with_a_peers_page_is_invalid_address(
    backend: str, which: str
) -> None:
    """RULE_BUFFER_MUST_BE_CALLERS: CREATE_VCPU from l2.1 naming a page of l2.2's RAM as
    the new context (VMSA) or calling area is INVALID_ADDRESS; no vCPU is created and
    l2.2's page is untouched (sev-snp.md §2.2 CREATE_VCPU checks; CS core.rs
    core_create_vcpu; docs/authority.md)."""
    p = tenants(backend)
    lay = p.machine.layout
    ctx, area = (VICTIM, lay.caa(0, 1)) if which == "context" else (lay.context(0, 1), VICTIM)
    before, vcpus = victim_state(p), p.vcpus()
    out = call(p, "l2.1", ProtocolId.CORE, CoreCall.CREATE_VCPU, ctx, area, 1)
    assert out.code == ResultCode.INVALID_ADDRESS
    assert victim_state(p) == before and p.vcpus() == vcpus


def test_buffer_must_be_callers_remap_ca_onto_a_peers_shared_page_answers_alike_on_both() -> None:
    """RULE_BUFFER_MUST_BE_CALLERS, identical on both backends: l2.2 shares a page of its
    assigned RAM with the host (a bounce buffer holding data); l2.1 asks l1 to REMAP_CA onto
    it. Both answer INVALID_ADDRESS and the bytes stay (the SVSM maps a calling area private, C=1, and a C=1 access to a
    hypervisor-owned page fails the RMP check: sev-snp.md §4.2, §4.4; CS core.rs
    core_remap_ca; docs/authority.md "rules identical on both backends")."""
    answers = {}
    for backend in BACKENDS:
        p = tenants(backend)
        ok(p.run(ConvertPages(layer="l2.2", range=rng(VICTIM, PAGE), to="shared")))
        p.machine.memory.write(VICTIM, SECRET)
        out = call(p, "l2.1", ProtocolId.CORE, CoreCall.REMAP_CA, VICTIM)
        answers[backend] = (out.code, p.machine.memory.read(VICTIM, len(SECRET)) == SECRET)
    assert answers["sev-snp"] == answers["tdx"] == (ResultCode.INVALID_ADDRESS, True)


@both
def test_buffer_must_be_callers_calling_area_in_a_page_its_owner_made_private_again(
    backend: str,
) -> None:
    """RULE_BUFFER_MUST_BE_CALLERS over time: l2.2 shares one of its assigned pages, l2.1
    asks REMAP_CA onto it (INVALID_ADDRESS on both), l2.2 makes the page
    private again and writes data into it. Whatever REMAP_CA answered, l2.1's next call must
    not write into l2.2's private page (sev-snp.md §1.1 call_pending, §1.3; §4.4: a C=1
    access to another owner's page fails the RMP check; docs/authority.md)."""
    p = tenants(backend)
    page = rng(VICTIM, PAGE)
    ok(p.run(ConvertPages(layer="l2.2", range=page, to="shared")))
    call(p, "l2.1", ProtocolId.CORE, CoreCall.REMAP_CA, VICTIM)
    ok(p.run(ConvertPages(layer="l2.2", range=page, to="private")))
    p.machine.memory.write(VICTIM, SECRET)
    before = victim_state(p)
    call(p, "l2.1", ProtocolId.CORE, CoreCall.QUERY_PROTOCOL, (0 << 32) | 1)
    assert p.machine.memory.read(VICTIM, len(SECRET)) == SECRET
    assert victim_state(p) == before


@both
@pytest.mark.parametrize("page", ["vtpm-scratch", "calling-area-of-vcpu-1"])
def test_range_inside_ram_raw_pvalidate_of_own_protocol_pages_is_invalid_address(
    backend: str, page: str
) -> None:
    """RULE_RANGE_INSIDE_RAM, protocol pages: the pages above guest RAM that l1 set up for
    l2.1's protocol (calling areas, scratch buffers) are never validated, rescinded or
    zeroed through a workload's PVALIDATE — INVALID_ADDRESS, ``next`` = 0, page state and
    bytes unchanged, identically on both backends (cocopart_sev_snp.svsm
    RULE_SVSM_PROTECTS_PROTOCOL_PAGES; docs/authority.md "protocol/L1 pages are never
    convertible or rescindable by a workload")."""
    p = tenants(backend)
    lay = p.machine.layout
    gpa = lay.scratch(0, SCRATCH_VTPM) if page == "vtpm-scratch" else lay.caa(0, 1)
    p.machine.memory.write(gpa, b"protocol data")
    view = p.memory_view(gpa, gpa + PAGE)
    out, nxt = raw_pvalidate(p, "l2.1", pv.run_entries(gpa, False, 1, True, True))
    assert (out.code, nxt) == (ResultCode.INVALID_ADDRESS, 0)
    assert p.machine.memory.read(gpa, 13) == b"protocol data"
    assert p.memory_view(gpa, gpa + PAGE) == view


# == 2. vTPM output fits its buffer ===========================================================
def _vtpm_round_trip(p: Partition, command: bytes) -> tuple[CallOutcome, bytes, bytes, bytes]:
    """Send ``command`` from l2.1's vTPM page with a marker in the page after it (l2.2's
    calling area); returns the outcome, the TPM response, and the next page before/after."""
    lay = p.machine.layout
    buf = lay.scratch(0, SCRATCH_VTPM)
    after = buf + PAGE
    assert after == lay.caa(1, 0)  # the next page is another layer's calling area
    p.machine.memory.write(after + 0x100, b"\xa5" * (PAGE - 0x100))
    next_before = p.machine.memory.read(after, PAGE)
    p.machine.memory.write(buf, vtpm_codec.encode_request(command))
    out = call(p, "l2.1", ProtocolId.VTPM, VtpmCall.CMD, buf)
    rsp = vtpm_codec.decode_response(p.machine.memory.read(buf, PAGE))
    return out, rsp, next_before, p.machine.memory.read(after, PAGE)


@both
def test_output_fits_buffer_pcr_read_of_six_sha384_banks_is_tpm_rc_size(backend: str) -> None:
    """RULE_OUTPUT_FITS_BUFFER: a TPM2_PCR_Read selecting all 24 PCRs in 6 SHA-384
    selections (count 6 > the 2 implemented banks) is TPM_RC_SIZE in the TPM response — it
    used to produce a 7,258-byte response written past the 4 KiB buffer. Nothing is written
    past the buffer (TPM 2.0 Part 2 §10.9.7 TPML_PCR_SELECTION: count <= HASH_COUNT;
    sev-snp.md §3.2; cocopart/service/vtpm.py)."""
    p = Partition(TWO_TENANTS, backend)
    command = pcr_read([(TPM_ALG_SHA384, b"\xff\xff\xff")] * 6)
    assert len(command) == 50  # 10 header + 4 count + 6 x (2 alg + 1 size + 3 bitmap)
    out, rsp, next_before, next_after = _vtpm_round_trip(p, command)
    assert out.code == ResultCode.SUCCESS  # the protocol call worked; the TPM refused
    assert tpm.response_code(rsp) == TPM_RC_SIZE == 0x095 and len(rsp) == 10
    assert next_after == next_before


@both
def test_output_fits_buffer_pcr_read_of_every_pcr_in_both_banks_returns_at_most_8_digests(
    backend: str,
) -> None:
    """RULE_OUTPUT_FITS_BUFFER: a legal TPM2_PCR_Read of all 24 PCRs of both banks returns
    at most 8 digests (TPML_DIGEST holds 8) and pcrSelectionOut names exactly those: SHA-384
    PCRs 0-7, nothing of SHA-256. The response fits; the next page is unchanged (TPM 2.0
    Part 2 §10.9.2 TPML_DIGEST; Part 3 §22.4 TPM2_PCR_Read)."""
    p = Partition(TWO_TENANTS, backend)
    event = hashlib.sha384(b"boot").digest()
    code, rsp = p.machine.client.vtpm_command("l2.1", 0, tpm.pcr_extend(3, event))
    assert code == ResultCode.SUCCESS and tpm.response_code(rsp) == 0
    command = pcr_read([(TPM_ALG_SHA384, b"\xff\xff\xff"), (TPM_ALG_SHA256, b"\xff\xff\xff")])
    out, rsp, next_before, next_after = _vtpm_round_trip(p, command)
    assert out.code == ResultCode.SUCCESS and tpm.response_code(rsp) == 0
    digests = tpm.parse_pcr_read(rsp)
    assert len(digests) == 8
    assert digests[3] == hashlib.sha384(bytes(48) + event).digest()
    assert digests[:3] + digests[4:] == [bytes(48)] * 7
    # pcrUpdateCounter, TPML_PCR_SELECTION pcrSelectionOut
    count = struct.unpack_from(">I", rsp, 14)[0]
    sels = [rsp[18 + 6 * i : 24 + 6 * i] for i in range(count)]
    assert sels == [
        struct.pack(">HB", TPM_ALG_SHA384, 3) + b"\xff\x00\x00",
        struct.pack(">HB", TPM_ALG_SHA256, 3) + b"\x00\x00\x00",
    ]
    assert next_after == next_before


# == 3. lower layers never act on higher ones (SNP); TDX peers need ownership =================
def test_lower_never_acts_on_higher_vmpl2_set_access_for_vmpl1_is_not_supported() -> None:
    """RULE_LOWER_NEVER_ACTS_ON_HIGHER (SNP): l2.2 (VMPL2) may not set l2.1's (VMPL1) access,
    neither lowering nor raising it, even on a page l2.1 shared with it: not-supported, the
    graph's memory-control edges and every page state unchanged — also when the request
    reaches the backend without the executor (no SVSM call sets a VMPL's access; RMPADJUST
    only targets a less privileged VMPL: sev-snp.md §4.3; CS has no such protocol call)."""
    p = tenants("sev-snp")
    page = rng(0x10000, PAGE)
    ok(p.run(SetAccess(layer="l2.1", target="l2.2", range=page, access="r")))
    edges, view = p.graph.control_edges(), p.memory_view(*L21_RAM)
    assert ("l2.1", "l2.2") in edges and ("l2.2", "l2.1") not in edges
    for access in ("----", "rwus"):
        op = SetAccess(layer="l2.2", target="l2.1", range=page, access=access)
        assert p.run(op).status is Status.NOT_SUPPORTED
        assert p.plan(op).events == []
        assert p.machine.execute(op).status is Status.NOT_SUPPORTED
    assert p.graph.control_edges() == edges and p.memory_view(*L21_RAM) == view


def test_lower_never_acts_on_higher_vmpl1_restricts_vmpl2_by_rmpadjust() -> None:
    """RULE_LOWER_NEVER_ACTS_ON_HIGHER, the allowed direction (SNP): l2.1 (VMPL1) sets
    l2.2's (VMPL2) access on its own pages with RMPADJUST and removes it again; l2.1's own
    access is untouched (sev-snp.md §4.3 RMPADJUST: target VMPL numerically greater)."""
    p = tenants("sev-snp")
    page = rng(0x10000, PAGE)
    r = ok(p.run(SetAccess(layer="l2.1", target="l2.2", range=page, access="rw")))
    assert r.data.get("via") == "RMPADJUST"
    [run] = p.memory_view(page.start, page.end)
    assert run.access == {"l2.1": "rwus", "l2.2": "rw--"}
    ok(p.run(SetAccess(layer="l2.1", target="l2.2", range=page, access="----")))
    [run] = p.memory_view(page.start, page.end)
    assert run.access == {"l2.1": "rwus"} and run.owner == "l2.1"


@pytest.mark.parametrize("path", ["run", "raw-attr-wr"])
def test_peer_access_needs_ownership_reader_of_a_peers_page_cannot_revoke_the_owner(
    path: str,
) -> None:
    """RULE_PEER_ACCESS_NEEDS_OWNERSHIP (TDX): l2.1 grants its peer l2.2 R on one of its
    pages (allowed: its own page, within what it holds); l2.2, holding R, asks to set the
    owner's access to NONE — refused through Partition.run and by L1 itself when the L2's
    TDG.MEM.PAGE.ATTR.WR exits to it (TDX_OPERAND_INVALID); l2.1 keeps rwus and its bytes
    (tdx.md §2.4: every L2 TDCALL but VMCALL exits to L1; §3 ATTR.WR; docs/authority.md)."""
    p = tenants("tdx")
    page = rng(0x10000, PAGE)
    p.machine.memory.write(page.start, b"l2.1 data")
    ok(p.run(SetAccess(layer="l2.1", target="l2.2", range=page, access="r")))
    before = victim_state(p, "l2.1")
    [run] = p.memory_view(page.start, page.end)
    assert run.access == {"l2.1": "rwus", "l2.2": "r---"}
    op = SetAccess(layer="l2.2", target="l2.1", range=page, access="----")
    if path == "run":
        refused(p.run(op), RULE_PEER_ACCESS_NEEDS_OWNERSHIP)
    else:
        r = p.machine.hooks.l2_attr_wr(op.layer, op.target, op.range, op.access)
        assert r.done_bytes == 0 and r.error is not None
        assert r.error.mnemonic == "TDX_OPERAND_INVALID"
        assert RULE_PEER_ACCESS_NEEDS_OWNERSHIP in r.error.message
    assert victim_state(p, "l2.1") == before
    assert p.machine.memory.read(page.start, 9) == b"l2.1 data"


def test_peer_access_needs_ownership_raw_attr_wr_naming_vm_0_is_refused() -> None:
    """RULE_PEER_ACCESS_NEEDS_OWNERSHIP (TDX L1 path): l2.1's TDG.MEM.PAGE.ATTR.WR exits to
    L1 (tdx.md §2.4); one whose attribute word names VM 0 (L1 itself, never settable:
    tdx.md §3, the module answers TDX_OPERAND_INVALID) must be refused by L1's emulation
    and change nothing — it must not be applied to the last L2, removing l2.2's access to its
    own page."""
    from cocopart_tdx import attributes as attrs
    from cocopart_tdx.tdcall import Leaf

    p = tenants("tdx")
    m = p.machine
    before = victim_state(p)
    regs = {
        "rax": Leaf.MEM_PAGE_ATTR_WR,
        "rcx": VICTIM,
        "rdx": attrs.pack({0: 0}),
        "r8": attrs.pack({0: attrs.RWX}),
    }
    state = m.transport.l2_exit("l2.1", 0, regs, "TDG.MEM.PAGE.ATTR.WR")
    status = m.hooks.exits.emulate_attr_wr("l2.1", state, VICTIM, VICTIM + PAGE, 0, 0)
    m.transport.l2_resume("l2.1", 0, state)
    assert status != 0
    assert victim_state(p) == before


@both
def test_grant_within_held_a_workload_never_grants_more_than_it_holds(backend: str) -> None:
    """RULE_GRANT_WITHIN_HELD: l2.1 lowers its own access on a page to R and then asks to
    grant l2.2 RW there: refused (TDX: the authority rule; SNP: the hardware's own
    RMPADJUST FAIL_PERMISSION), l2.2 gets nothing (sev-snp.md §4.3 "granting more than the
    caller holds"; tdx.md §3; docs/authority.md)."""
    p = tenants(backend)
    page = rng(0x10000, PAGE)
    if backend == "tdx":
        ok(p.run(SetAccess(layer="l2.1", target="l2.1", range=page, access="r")))
    else:  # a VMPL cannot RMPADJUST itself: l1 lowers VMPL1's access
        ok(p.run(SetAccess(layer="l1", target="l2.1", range=page, access="r")))
    view = p.memory_view(page.start, page.end)
    r = p.run(SetAccess(layer="l2.1", target="l2.2", range=page, access="rw"))
    assert r.status is Status.ERROR and r.error is not None
    if backend == "tdx":
        refused(r, RULE_GRANT_WITHIN_HELD)
    else:
        assert r.error.vendor == "amd" and "PERMISSION" in r.error.mnemonic + r.error.message
    assert p.memory_view(page.start, page.end) == view
    assert view[0].access == {"l2.1": "r---"}


# == 4. nobody rescinds, re-validates or shares another workload's pages =====================
@both
@pytest.mark.parametrize("what", ["rescind", "convert-to-shared", "validate"])
def test_state_change_needs_ownership_workload_cannot_change_a_peers_pages(
    backend: str, what: str
) -> None:
    """RULE_STATE_CHANGE_NEEDS_OWNERSHIP: l2.2 rescinding, sharing or validating pages of
    l2.1 is refused before anything runs; l2.1 keeps its access and its bytes
    (docs/authority.md; the SVSM / L1 is the only layer that can do these for a workload)."""
    p = tenants(backend)
    target = rng(0x10000, 4 * PAGE)
    p.machine.memory.write(0x10000, b"l2.1 data")
    op = {
        "rescind": RescindPages(layer="l2.2", range=target),
        "convert-to-shared": ConvertPages(layer="l2.2", range=target, to="shared"),
        "validate": ValidatePages(layer="l2.2", range=target),
    }[what]
    before = victim_state(p, "l2.1")
    assert p.plan(op).events == []
    refused(p.run(op), RULE_STATE_CHANGE_NEEDS_OWNERSHIP)
    assert victim_state(p, "l2.1") == before
    [run] = p.memory_view(target.start, target.end)
    assert (run.access, run.owner) == ({"l2.1": "rwus"}, "l2.1")


@both
@pytest.mark.parametrize("action", ["validate", "validate-ignore_cf", "rescind"])
def test_state_change_needs_ownership_raw_pvalidate_of_a_peers_page_is_refused(
    backend: str, action: str
) -> None:
    """RULE_STATE_CHANGE_NEEDS_OWNERSHIP, enforced by l1 on the raw request: l2.2's
    PVALIDATE entry over l2.1's validated 2M page (validate, validate with ignore_cf =
    bit 3, or rescind) answers INVALID_ADDRESS with ``next`` = 0; l1 neither zeroes nor
    re-grants the page (TDX module 1.5 tdg_mem_page_accept.c: TDX_PAGE_ALREADY_ACCEPTED,
    never zeroes; CS core.rs core_pvalidate_one; sev-snp.md §2.1)."""
    p = tenants(backend)
    p.machine.memory.write(0x200000, b"l2.1 data")
    entries = pv.run_entries(0x200000, True, 1, action != "rescind", action.endswith("cf"))
    before = victim_state(p, "l2.1")
    out, nxt = raw_pvalidate(p, "l2.2", entries)
    assert (out.code, nxt) == (ResultCode.INVALID_ADDRESS, 0)
    assert victim_state(p, "l2.1") == before
    assert p.machine.memory.read(0x200000, 9) == b"l2.1 data"
    [run] = p.memory_view(0x200000, 0x400000)
    assert (run.validated, run.access, run.owner) == (True, {"l2.1": "rwus"}, "l2.1")


def test_state_change_needs_ownership_raw_map_gpa_of_a_peers_page_is_refused() -> None:
    """RULE_STATE_CHANGE_NEEDS_OWNERSHIP (TDX L1 path): l2.2's own TDG.VP.VMCALL<MapGPA>
    asking to share a page of l2.1 exits to L1, which answers INVALID_OPERAND without
    forwarding it to the host; l2.1's page stays private, accepted, rwus, with its bytes
    (tdx.md §1.2 TDVMCALL ABI, §2.4, §4.3; docs/authority.md)."""
    from cocopart_tdx.vmcall import TdvmcallStatus

    p = tenants("tdx")
    p.machine.memory.write(0x10000, b"l2.1 data")
    before = victim_state(p, "l2.1")
    sbit = p.machine.platform.module.shared_bit
    status = p.machine.hooks.map_gpa("l2.2", 0, 0x10000 | sbit, PAGE)
    assert status == TdvmcallStatus.INVALID_OPERAND
    assert victim_state(p, "l2.1") == before
    [run] = p.memory_view(0x10000, 0x11000)
    assert (run.private, run.validated, run.access) == (True, True, {"l2.1": "rwus"})


@both
def test_ignore_cf_zeroes_own_page_revalidating_own_valid_page_zeroes_it_and_keeps_it(
    backend: str,
) -> None:
    """RULE_IGNORE_CF_ZEROES_OWN_PAGE: PVALIDATE with ignore_cf over the caller's OWN
    already-valid 2M page succeeds, zeroes it and leaves it the caller's (same access,
    same owner); without ignore_cf it is PVALIDATE_FAIL_NO_CHANGE and nothing is zeroed;
    l2.2 is untouched (CS core.rs core_pvalidate_one: FAIL_UNCHANGED ignored, page zeroed,
    rmp_grant_guest_access; cocopart_sev_snp.svsm RULE_IGNORE_CF_ZEROES_OWN_PAGE)."""
    p = tenants(backend)
    own = 0x200000
    p.machine.memory.write(own + PAGE, b"mine")
    before = victim_state(p)
    out, _ = raw_pvalidate(p, "l2.1", pv.run_entries(own, True, 1, True, False))
    assert out.code == ResultCode.PVALIDATE_FAIL_NO_CHANGE
    assert p.machine.memory.read(own + PAGE, 4) == b"mine"
    out, nxt = raw_pvalidate(p, "l2.1", pv.run_entries(own, True, 1, True, True))
    assert (out.code, nxt) == (ResultCode.SUCCESS, 1)
    assert p.machine.memory.read(own, 2 * PAGE) == bytes(2 * PAGE)
    [run] = p.memory_view(own, own + 0x200000)
    assert (run.validated, run.access, run.owner, run.assigned) == (
        True,
        {"l2.1": "rwus"},
        "l2.1",
        True,
    )
    assert victim_state(p) == before


# == 5. ranges stay inside guest RAM ===========================================================
RANGES = {
    "protocol-region": (64 * MIB, PAGE),
    "straddling-ram-end": (62 * MIB, 4 * MIB),
    "0xffff_ffff_f000": (0xFFFF_FFFF_F000, PAGE),
    "2**64-4096": (2**64 - PAGE, PAGE),
}


@both
@pytest.mark.parametrize("where", list(RANGES))
def test_range_inside_ram_ops_beyond_guest_ram_raise_config_error(backend: str, where: str) -> None:
    """RULE_RANGE_INSIDE_RAM: validate, rescind, convert and set-access over a range reaching
    beyond guest RAM (the protocol region, or near 2**48 / 2**64) raise ConfigError naming
    ``range`` for l1 and every workload, as an Operation and as a dict; nothing changes and
    the partition stays usable — a later op from a workload succeeds (cocopart's choice,
    docs/authority.md: ranges bounded identically on both backends)."""
    p = tenants(backend)
    start, size = RANGES[where]
    lay = p.machine.layout
    before = (
        p.memory_view(0, 64 * MIB),
        p.memory_view(lay.base, lay.total),
        p.machine.memory.read(lay.base, 16 * PAGE),
    )
    r = rng(start, size)
    for layer in ("l1", "l2.1", "l2.2"):
        ops: list[Any] = [
            ValidatePages(layer=layer, range=r),
            RescindPages(layer=layer, range=r),
            ConvertPages(layer=layer, range=r, to="shared"),
            ConvertPages(layer=layer, range=r, to="private"),
            SetAccess(layer=layer, target="l2.2", range=r, access="r"),
            {"op": "validate", "layer": layer, "range": {"start": start, "size": size}},
        ]
        for op in ops:
            with pytest.raises(ConfigError) as info:
                p.run(op)
            assert info.value.field == "range" and RULE_RANGE_INSIDE_RAM in str(info.value)
            with pytest.raises(ConfigError):
                p.plan(op)
    assert (
        p.memory_view(0, 64 * MIB),
        p.memory_view(lay.base, lay.total),
        p.machine.memory.read(lay.base, 16 * PAGE),
    ) == before
    page = rng(0x10000, PAGE)
    ok(p.run(ConvertPages(layer="l2.1", range=page, to="shared")))
    ok(p.run(ConvertPages(layer="l2.1", range=page, to="private")))
    [run] = p.memory_view(page.start, page.end)
    assert (run.private, run.validated, run.owner) == (True, True, "l2.1")
    ok(p.run(InjectInterrupt(layer="l2.2", target="l2.2", vcpu=0, vector=0x30)))


# == 6. partial progress is exact ==============================================================
@both
def test_range_inside_ram_forced_2m_page_size_must_tile_the_range(backend: str) -> None:
    """Page-size tiling (checked with RULE_RANGE_INSIDE_RAM before anything runs): a forced
    page_size="2M" on a range that is 2 MiB + 12 KiB is a ConfigError naming page_size —
    the 12 KiB tail is never dropped silently — and nothing was validated (cocopart's
    choice, cocopart/executor.py check_bounds; docs/authority.md)."""
    p = Partition(POOL_GUEST, backend)
    view = p.memory_view()
    op = ValidatePages(layer="l2.1", range=rng(0, 2 * MIB + 3 * PAGE), page_size="2M")
    with pytest.raises(ConfigError) as info:
        p.run(op)
    assert info.value.field == "page_size"
    assert p.memory_view() == view
    ok(p.run(op.model_copy(update={"range": rng(0, 2 * MIB)})))


@both
@pytest.mark.parametrize("failing", ["peer-ram", "own-context-page", "peer-calling-area"])
def test_state_change_needs_ownership_raw_pvalidate_failing_part_way_reports_exact_next(
    backend: str, failing: str
) -> None:
    """Exact progress of a raw PVALIDATE that fails inside l1: entries 0-2 (l2.1's own
    pages) are done, entry 3 is refused (l2.2's RAM, l2.1's live context page or l2.2's
    calling area) with INVALID_ADDRESS and ``next`` = 3, entry 4 is not run; nothing of
    l2.2 or of the protocol pages changes (sev-snp.md §2.1: ``next`` indexes the failing
    entry; CS core.rs core_pvalidate; RULE_STATE_CHANGE_NEEDS_OWNERSHIP,
    RULE_CONTEXT_PAGE_UNTOUCHABLE)."""
    p = tenants(backend)
    lay = p.machine.layout
    bad = {
        "peer-ram": VICTIM,
        "own-context-page": lay.context(0, 0),
        "peer-calling-area": lay.caa(1, 0),
    }[failing]
    entries = (
        pv.run_entries(HOLE, False, 3, True)
        + pv.run_entries(bad, False, 1, True)
        + pv.run_entries(HOLE + 3 * PAGE, False, 1, True)
    )
    before, own = victim_state(p), victim_state(p, "l2.1")[3:]
    out, nxt = raw_pvalidate(p, "l2.1", entries)
    assert (out.code, nxt) == (ResultCode.INVALID_ADDRESS, 3)
    assert [r.validated for r in p.memory_view(HOLE, HOLE + 3 * PAGE)] == [True]
    assert [r.validated for r in p.memory_view(HOLE + 3 * PAGE, HOLE + 4 * PAGE)] == [False]
    assert victim_state(p) == before
    assert victim_state(p, "l2.1")[3:] == own  # l2.1's protocol pages: same state


@both
def test_exact_progress_partial_validate_reports_the_done_prefix_and_resumes(backend: str) -> None:
    """Exact progress through Partition.run: validating [2 MiB, 4 MiB) in 4K pages when the
    page at 3 MiB is already valid is ``partial`` with done_bytes = 1 MiB and next_gpa =
    3 MiB; exactly [2 MiB, 3 MiB) is newly validated, ``changed`` lists only state changes
    after the prefix, and resuming after the valid page completes the range (cocopart's
    choice, docs/authority.md "failure atomicity and exact progress"; issue 11 item 6)."""
    p = Partition(POOL_GUEST, backend)
    ok(p.run(ValidatePages(layer="l2.1", range=rng(3 * MIB, PAGE), page_size="4K")))
    r = p.run(ValidatePages(layer="l2.1", range=rng(2 * MIB, 2 * MIB), page_size="4K"))
    assert r.status is Status.PARTIAL and r.progress is not None
    assert (r.progress.done_bytes, r.progress.next_gpa) == (1 * MIB, 3 * MIB)
    assert [(x.start, x.end, x.validated) for x in p.memory_view(2 * MIB, 4 * MIB)] == [
        (2 * MIB, 3 * MIB + PAGE, True),
        (3 * MIB + PAGE, 4 * MIB, False),
    ]
    assert all(c.start >= 3 * MIB for c in r.changed)
    for c in r.changed:  # what it says changed did change
        assert all(
            ("private" if x.private else "shared") in c.after for x in p.memory_view(c.start, c.end)
        )
    ok(
        p.run(
            ValidatePages(layer="l2.1", range=rng(3 * MIB + PAGE, 1 * MIB - PAGE), page_size="4K")
        )
    )
    assert [(x.validated, x.owner) for x in p.memory_view(2 * MIB, 4 * MIB)] == [(True, "l2.1")]


# == 7. typed errors, and the BSP keeps running ================================================
@both
@pytest.mark.parametrize(
    "op,field",
    [
        (42, "op"),
        ({"op": "frobnicate", "layer": "l2.1"}, "op"),
        (
            {"op": "validate", "layer": "l2.1", "range": {"start": "abc", "size": 4096}},
            "validate.range.start",
        ),
        (
            {"op": "validate", "layer": "l2.1", "range": {"start": 0, "size": 4096}, "bogus": 1},
            "validate.bogus",
        ),
    ],
    ids=["not-an-operation", "unknown-op", "bad-field", "extra-field"],
)
def test_typed_errors_run_and_plan_raise_config_error_naming_the_field(
    backend: str, op: Any, field: str
) -> None:
    """Typed errors: Partition.run / plan with something that is not an operation, an
    unknown op name or a bad field raise ConfigError (a CocopartError) naming the field —
    never AttributeError or a pydantic ValidationError; the partition still works
    (cocopart's choice, docs/authority.md; issue 11 item 8)."""
    p = Partition(POOL_GUEST, backend)
    for method in (p.run, p.plan):
        with pytest.raises(ConfigError) as info:
            method(op)
        assert isinstance(info.value, CocopartError) and info.value.field == field
    ok(p.run(ValidatePages(layer="l2.1", range=rng(0, PAGE))))


@both
def test_typed_errors_duplicated_service_is_config_error(backend: str) -> None:
    """Typed errors: a PartitionConfig listing a service twice is a ConfigError naming
    ``services`` (not a plain ValueError) (cocopart's choice; issue 11 item 8)."""
    with pytest.raises(ConfigError) as info:
        Partition({**POOL_GUEST, "services": ["vtpm", "vtpm"]}, backend)
    assert info.value.field == "services" and "vtpm" in str(info.value)


@both
@pytest.mark.parametrize("requester", ["l2.1", "l1"])
def test_bsp_keeps_running_deleting_vcpu_0_is_refused_and_interrupts_still_work(
    backend: str, requester: str
) -> None:
    """RULE_BSP_KEEPS_RUNNING: deleting vCPU 0 of l2.1, from l2.1 itself or from l1, is an
    error with mnemonic BSP_KEEPS_RUNNING on both backends (TDX used to allow it and then
    raise on the next IPI/EOI); vCPU 0 keeps running and a later IPI and EOI to l2.1 work
    (cocopart's choice, docs/authority.md; issue 11 item 8)."""
    p = tenants(backend)
    vcpus = p.vcpus()
    r = p.run(DeleteVcpu(layer=requester, target="l2.1", vcpu=0))
    assert r.status is Status.ERROR and r.error is not None
    assert (r.error.vendor, r.error.mnemonic) == (AUTHORITY_VENDOR, RULE_BSP_KEEPS_RUNNING)
    assert p.vcpus() == vcpus
    ipi = ok(p.run(InjectInterrupt(layer="l2.1", target="l2.1", vcpu=0, vector=0x40)))
    assert ipi.data["delivery"]["status"] == "delivered"
    eoi = ok(p.run(EndOfInterrupt(layer="l2.1", target="l2.1", vcpu=0)))
    assert eoi.data["eoi"]["vector"] == 0x40
    ok(p.run(ConvertPages(layer="l2.1", range=rng(0x10000, PAGE), to="shared")))


@both
def test_bsp_keeps_running_raw_delete_of_own_bsp_is_refused_on_both_backends(backend: str) -> None:
    """RULE_BSP_KEEPS_RUNNING holds for raw calls too: the privileged layer's DELETE_VCPU
    handler refuses l2.1's own vCPU 0 with INVALID_PARAMETER (cocopart's choice, one rule
    for both backends; docs/authority.md), and l2.1 keeps working."""
    p = tenants(backend)
    out = call(p, "l2.1", ProtocolId.CORE, CoreCall.DELETE_VCPU, p.machine.layout.context(0, 0))
    assert out.code == ResultCode.INVALID_PARAMETER
    assert [v.vcpu for v in p.vcpus() if v.layer == "l2.1"] == [0]
    ok(p.run(ValidatePages(layer="l2.1", range=rng(HOLE, PAGE))))


@both
def test_a_deleted_vcpu_issues_no_calls_on_either_backend(backend: str) -> None:
    """A vCPU whose context was deleted does not run, so it cannot issue a protocol call
    (sev-snp.md §2 DELETE_VCPU clears EFER.SVME; tdx.md §6): call_pending stays set and the
    caller sees INVALID_REQUEST, on both backends; l1 can recreate the vCPU."""
    p = tenants(backend)
    ok(p.run(CreateVcpu(layer="l2.1", target="l2.1", vcpu=1)))
    out = call(p, "l2.1", ProtocolId.CORE, CoreCall.DELETE_VCPU, p.machine.layout.context(0, 1))
    assert out.code == ResultCode.SUCCESS
    after = p.machine.transport.call(
        "l2.1", 1, Registers.call(ProtocolId.CORE, CoreCall.QUERY_PROTOCOL, (0 << 32) | 1)
    )
    assert after.code == ResultCode.INVALID_REQUEST
    ok(p.run(CreateVcpu(layer="l1", target="l2.1", vcpu=1)))
    again = p.machine.transport.call(
        "l2.1", 1, Registers.call(ProtocolId.CORE, CoreCall.QUERY_PROTOCOL, (0 << 32) | 1)
    )
    assert again.code == ResultCode.SUCCESS


# == 8. memory_view shows owners ===============================================================
@both
def test_state_change_needs_ownership_memory_view_shows_owners_of_ram_and_protocol_pages(
    backend: str,
) -> None:
    """Ownership is visible: every memory_view run carries ``owner`` and ``assigned`` —
    RAM named in memory_map is its layer's (assigned), other RAM is l1's pool (owner l1,
    not assigned), each layer's protocol pages are its own (docs/authority.md
    "Ownership is explicit")."""
    cfg = {**POOL_GUEST, "memory_map": {"l2.1": [{"start": "16MiB", "size": "8MiB"}]}}
    p = Partition(cfg, backend)
    assert [(r.start, r.end, r.owner, r.assigned) for r in p.memory_view()] == [
        (0, 16 * MIB, "l1", False),
        (16 * MIB, 24 * MIB, "l2.1", True),
        (24 * MIB, 64 * MIB, "l1", False),
    ]
    lay = p.machine.layout
    for i, layer in enumerate(p.config.workloads):
        s, e = lay.layer_region(i)
        assert {(r.owner, r.assigned) for r in p.memory_view(s, e)} == {(layer, True)}


@pytest.mark.parametrize(
    "backend,options",
    [("sev-snp", {}), ("tdx", {"module": "2.0"})],
    ids=["sev-snp", "tdx-module-2.0"],
)
def test_state_change_needs_ownership_pool_page_is_the_validators_until_rescinded(
    backend: str, options: dict[str, Any]
) -> None:
    """Pool pages become the validator's: l2.2 validates pool RAM and owns it (not
    assigned); l2.1 may not validate it; after l2.2 rescinds it the pages are l1's pool
    again and l2.1 may take them — zeroed, never with l2.2's bytes (docs/authority.md;
    TDX module 2.0 TDG.MEM.PAGE.RELEASE: tdx.md §1.1; CS core.rs core_pvalidate_one zeroes
    after validation)."""
    p = Partition({**POOL_GUEST, "backend_options": options}, backend)
    ok(p.run(ValidatePages(layer="l2.2", range=rng(0, 2 * MIB))))
    p.machine.memory.write(PAGE, SECRET)
    assert [(r.owner, r.assigned, r.validated) for r in p.memory_view(0, 2 * MIB)] == [
        ("l2.2", False, True)
    ]
    refused(
        p.run(ValidatePages(layer="l2.1", range=rng(0, 2 * MIB))), RULE_STATE_CHANGE_NEEDS_OWNERSHIP
    )
    ok(p.run(RescindPages(layer="l2.2", range=rng(0, 2 * MIB))))
    assert [(r.owner, r.assigned, r.validated) for r in p.memory_view(0, 2 * MIB)] == [
        ("l1", False, False)
    ]
    ok(p.run(ValidatePages(layer="l2.1", range=rng(0, 2 * MIB))))
    assert [(r.owner, r.assigned, r.access) for r in p.memory_view(0, 2 * MIB)] == [
        ("l2.1", False, {"l2.1": "rwus"})
    ]
    assert p.machine.memory.read(PAGE, len(SECRET)) == bytes(len(SECRET))


@both
def test_state_change_needs_ownership_pool_page_returns_to_the_pool_when_shared(
    backend: str,
) -> None:
    """Pool pages go back to the pool when shared: l2.2 converts pool pages it validated to
    shared; they are l1's pool again (owner l1, not assigned) and l2.1 may make them private
    for itself (docs/authority.md; issue 11 "Ownership is explicit")."""
    p = Partition(POOL_GUEST, backend)
    ok(p.run(ValidatePages(layer="l2.2", range=rng(2 * MIB, 2 * MIB))))
    ok(p.run(ConvertPages(layer="l2.2", range=rng(2 * MIB, 2 * MIB), to="shared")))
    assert [(r.owner, r.assigned, r.private) for r in p.memory_view(2 * MIB, 4 * MIB)] == [
        ("l1", False, False)
    ]
    ok(p.run(ConvertPages(layer="l2.1", range=rng(2 * MIB, PAGE), to="private")))
    assert [(r.owner, r.assigned, r.validated) for r in p.memory_view(2 * MIB, 2 * MIB + PAGE)] == [
        ("l2.1", False, True)
    ]
    refused(
        p.run(ConvertPages(layer="l2.2", range=rng(2 * MIB, PAGE), to="shared")),
        RULE_STATE_CHANGE_NEEDS_OWNERSHIP,
    )


@pytest.mark.parametrize(
    "backend,options",
    [("sev-snp", {}), ("tdx", {"module": "2.0"})],
    ids=["sev-snp", "tdx-module-2.0"],
)
def test_state_change_needs_ownership_assigned_pages_stay_with_their_layer(
    backend: str, options: dict[str, Any]
) -> None:
    """memory_map pages stay assigned: l2.1's assigned RAM, rescinded or shared by l2.1,
    is still l2.1's (assigned) and l2.2 may not take it (docs/authority.md "assigned to its
    layer for good")."""
    cfg = {
        **POOL_GUEST,
        "backend_options": options,
        "memory_map": {"l2.1": [{"start": "16MiB", "size": "8MiB"}]},
    }
    p = Partition(cfg, backend)
    ok(p.run(ValidatePages(layer="l2.1", range=rng(16 * MIB, 8 * MIB))))
    ok(p.run(RescindPages(layer="l2.1", range=rng(16 * MIB, 2 * MIB))))
    ok(p.run(ConvertPages(layer="l2.1", range=rng(18 * MIB, 2 * MIB), to="shared")))
    assert {(r.owner, r.assigned) for r in p.memory_view(16 * MIB, 24 * MIB)} == {("l2.1", True)}
    for op in (
        ValidatePages(layer="l2.2", range=rng(16 * MIB, 2 * MIB)),
        ConvertPages(layer="l2.2", range=rng(18 * MIB, PAGE), to="private"),
    ):
        refused(p.run(op), RULE_STATE_CHANGE_NEEDS_OWNERSHIP)


@both
def test_state_change_needs_ownership_l1_validating_pool_pages_takes_them_out_of_the_pool(
    backend: str,
) -> None:
    """l1 validating pool RAM for itself takes it out of the pool (owner l1, assigned);
    no workload may validate or share it (docs/authority.md: "l1 validating a pool page
    for itself takes it out of the pool")."""
    p = Partition(POOL_GUEST, backend)
    ok(p.run(ValidatePages(layer="l1", range=rng(40 * MIB, 2 * MIB))))
    assert [(r.owner, r.assigned, r.validated) for r in p.memory_view(40 * MIB, 42 * MIB)] == [
        ("l1", True, True)
    ]
    for layer in ("l2.1", "l2.2"):
        refused(
            p.run(ValidatePages(layer=layer, range=rng(40 * MIB, PAGE))),
            RULE_STATE_CHANGE_NEEDS_OWNERSHIP,
        )
        refused(
            p.run(ConvertPages(layer=layer, range=rng(40 * MIB, PAGE), to="shared")),
            RULE_STATE_CHANGE_NEEDS_OWNERSHIP,
        )


@both
def test_access_on_validated_pages_a_grant_never_outlives_a_pool_page(backend: str) -> None:
    """RULE_ACCESS_ON_VALIDATED_PAGES (cocopart's choice, docs/authority.md; found by the
    authority state machine): l1 may not set a layer's access on a page nobody validated —
    the permission would be recorded (SNP RMPADJUST on an assigned page; TDX ATTR.WR on a
    PENDING page) and the next layer to validate, i.e. claim, the page would find another
    layer already holding access to its private memory."""
    p = Partition(POOL_GUEST, backend)
    page = rng(0, 2 * MIB)
    r = p.run(SetAccess(layer="l1", range=page, target="l2.1", access="rwx"))
    assert r.error is not None and r.error.mnemonic == "ACCESS_ON_VALIDATED_PAGES"
    assert r.primitives == 0
    ok(p.run(ValidatePages(layer="l2.2", range=page)))
    assert all(
        run.access == {"l2.2": "rwus"} and run.owner == "l2.2" for run in p.memory_view(0, 2 * MIB)
    )
    ok(p.run(SetAccess(layer="l1", range=page, target="l2.1", access="r")))  # now it may
    assert {run.access.get("l2.1") for run in p.memory_view(0, 2 * MIB)} == {"r---"}


@both
def test_typed_errors_memory_view_outside_the_guest_is_a_config_error(backend: str) -> None:
    """Only CocopartError subclasses escape the public API: a memory view beyond the guest's
    physical space is a ConfigError naming the range (found by the protocol fuzz on TDX)."""
    p = Partition(POOL_GUEST, backend)
    for start, end in ((0, 1 << 50), (64 * MIB, 32 * MIB), (-PAGE, PAGE)):
        with pytest.raises(ConfigError, match="range"):
            p.memory_view(start, end)
    assert p.memory_view(0, p.machine.layout.total)[-1].end == p.machine.layout.total


@both
def test_state_change_needs_ownership_a_refused_operation_plans_nothing(backend: str) -> None:
    """``plan`` agrees with ``run``: an operation the authority rules refuse would execute
    no primitive at all (the refusal happens before anything runs)."""
    p = tenants(backend)
    op = ValidatePages(layer="l2.1", range=rng(VICTIM, PAGE))
    plan = p.plan(op)
    assert plan.events == [] and plan.primitives == plan.world_switches == 0
    assert p.run(op).primitives == 0


@both
def test_guest_wide_needs_control_only_l1_or_a_controlling_layer_switches_the_mode(
    backend: str,
) -> None:
    """RULE_GUEST_WIDE_NEEDS_CONTROL (cocopart's choice, docs/authority.md): the interrupt
    mode is guest-wide, so it is switched by l1 or by a workload that controls every other
    workload layer — SNP VMPL1 over VMPL2, never a TDX L2 (peers) — and a refused switch
    changes nothing; a guest with one workload layer switches it itself."""
    from cocopart.ops import ConfigureInterrupts

    p = Partition({**POOL_GUEST, "interrupt_mode": "alternate"}, backend)
    r = p.run(ConfigureInterrupts(layer="l2.2", mode="restricted"))
    assert r.error is not None and r.error.mnemonic == "GUEST_WIDE_NEEDS_CONTROL"
    assert r.primitives == 0
    r = p.run(ConfigureInterrupts(layer="l2.1", mode="restricted"))
    assert r.ok == (backend == "sev-snp"), r.reason
    ok(
        p.run(
            ConfigureInterrupts(
                layer="l1", mode="secure-avic" if backend == "tdx" else "restricted"
            )
        )
    )
    single = Partition({**POOL_GUEST, "workload_layers": 1, "interrupt_mode": "alternate"}, backend)
    ok(single.run(ConfigureInterrupts(layer="l2.1", mode="restricted")))

"""What a host access to TD-private memory does on TDX — the counterpart of the SEV-SNP RMP
fault policies. TDX has no host-side check on writes, so there is no host fault and nothing
for a host policy to decide: the consequences show up later, in the TD.

The model follows the memory-integrity chapter of the TDX module base architecture
specification (§16, "Memory Integrity Protection and Machine Check Handling"; read through a
public translation that quotes it, and the Linux sources that cite it) and the TDX module 1.5
source. Per 4K page it keeps the state of the page's cache lines as far as the host has
touched them (:class:`LineState`); each rule below is a named constant with its source:

* :data:`RULE_TDX_HOST_WRITE_UNCHECKED` — a host write completes; it clears the TD-owner bit
  (the line is now written with a shared KeyID) and replaces the TD's data;
* :data:`RULE_TDX_HOST_READ_RETURNS_ZEROS` — a host read of a TD-owned line returns zeros;
* :data:`RULE_TDX_TD_READ_AFTER_HOST_WRITE_POISONS` and :data:`RULE_TDX_MC_IN_TD_IS_FATAL` —
  the TD's next read of that line fails the integrity check, consumes poison (#MC) and the TDX
  module marks the TD fatal: the host can only tear it down;
* :data:`RULE_TDX_PARTIAL_WRITE_ERRATUM` — on early TDX CPUs a partial write poisons at once,
  and then even a host read machine-checks (:data:`RULE_TDX_HOST_POISON_CONSUMPTION`);
* :data:`RULE_TDX_KEXEC` — kexec: refused on erratum platforms, otherwise it just works.

Entry points: :func:`host_write`, :func:`host_read`, :func:`td_read`, :func:`kexec_allowed`;
:func:`host_access` is what ``TdxMachine.access("host", ...)`` does — the same code path, so a
host read of a TD-owned line returns zeros without a fault wherever it is asked (issue 14).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from cocopart.spi import PAGE_4K, Access, AccessOutcome, FaultStep, HostAccessor, RangeMap
from cocopart_tdx import status as st
from cocopart_tdx.sept import AUG_FROM

if TYPE_CHECKING:
    from cocopart_tdx.machine import TdxMachine

HOST = "host"
MODULE = "firmware"
#: The platform erratum name :class:`cocopart.host_faults.ScenarioSetup` uses.
ERRATUM_PW_MCE = "tdx-pw-mce"
MACHINE_CHECK = "#MC"

# -- rules ------------------------------------------------------------------------------------

#: "Memory writes do not check the TD Owner bit. Preventing writes to private memory assigned to
#: a TD is the host VMM's responsibility" (TDX module base spec §16.2.4); a write with a shared
#: KeyID clears the line's TD-owner bit (§16.2.2). No fault: "Kernel read/write to TDX private
#: memory doesn't cause machine check on hardware w/o this erratum" (Kai Huang, LX
#: tdx_reset_memory(), x86/virt/tdx).
RULE_TDX_HOST_WRITE_UNCHECKED = "host writes to TD-private memory complete, TD-owner bit cleared"

#: "Reads outside of SEAM mode (i.e. with a shared HKID) of any TD private data (TD Owner = 1)
#: return all zeros"; no new poison (TDX module base spec §16.2.3; Linux's model already says
#: the host never sees plaintext).
RULE_TDX_HOST_READ_RETURNS_ZEROS = "host reads of TD-owned lines return zeros"

#: After a host write the host reads its own data back (the line's TD-owner bit and MAC match a
#: shared-KeyID read). UNCONFIRMED: observed in a public write-up of the spec chapter, not
#: stated in the spec text seen.
RULE_TDX_HOST_READS_BACK_ITS_WRITE = "host reads of a host-written line return the host's data"

#: A private-KeyID read of a line whose TD-owner bit does not match (or whose MAC fails, Ci
#: mode) generates poison: all-zero data with a poison indication, stored sticky with the line;
#: consuming it is a machine check (TDX module base spec §16.2.3).
RULE_TDX_TD_READ_AFTER_HOST_WRITE_POISONS = "TD read of a host-written line: poison, #MC"

#: A #MC during TD execution exits to the TDX module, which marks the TD fatal; TDH.VP.ENTER
#: returns TDX_NON_RECOVERABLE_TD_NON_ACCESSIBLE (MOD 1.5 td_other_exits.c: "This exit was due
#: to a #MC, disable the TD"; the spec's §16.5.1 text names TDX_NON_RECOVERABLE_TD_FATAL). The
#: host can only tear the TD down. The host itself is not affected (LMCE recommended, §16.4).
RULE_TDX_MC_IN_TD_IS_FATAL = "#MC in the TD: the TD is fatal, only teardown remains"

#: On CPUs with the partial-write erratum (Linux X86_BUG_TDX_PW_MCE) "A partial write to a TDX
#: private memory cacheline will silently 'poison' the line. Subsequent reads will consume the
#: poison and generate a machine check"; partial writes are non-temporal stores, UC/WC mappings
#: and device DMA (LX Documentation/arch/x86/tdx.rst, "Erratum").
RULE_TDX_PARTIAL_WRITE_ERRATUM = "erratum: a partial host write poisons the line at once"

#: A host context that consumes poison takes a #MC: a user-space process is killed (memory
#: failure, SIGBUS), the kernel panics. UNCONFIRMED for this path: Linux's generic machine-check
#: handling (mce_panic for kernel context), not a TDX-specific statement.
RULE_TDX_HOST_POISON_CONSUMPTION = "host consumes poison: process killed / kernel panics"

#: "Currently kexec doesn't work on the TDX platforms with the aforementioned erratum. It fails
#: when loading the kexec kernel image. Otherwise it works normally." (LX
#: Documentation/arch/x86/tdx.rst, "Kexec"; machine_kexec_prepare() returns -EOPNOTSUPP, "Not
#: allowed on platform with tdx_pw_mce bug"). A 2026 series (Vishal Verma, TDH.SYS.DISABLE on
#: kexec) lifts the restriction; its merge status is unconfirmed and it is not modelled.
RULE_TDX_KEXEC = "kexec: refused on erratum platforms, otherwise it works"

#: KVM's own accesses know which GFNs are private (the shared bit, tdx.md §4.3) and only use
#: the shared alias, so the checked path refuses a private GPA (model decision, the counterpart
#: of the SNP rule).
RULE_TDX_KVM_REFUSES_PRIVATE = "KVM's checked path refuses private GPAs"

UNCONFIRMED = (
    RULE_TDX_HOST_READS_BACK_ITS_WRITE,
    RULE_TDX_HOST_POISON_CONSUMPTION,
    RULE_TDX_KVM_REFUSES_PRIVATE,
)


class LineState(str, Enum):
    """The cache lines of a 4K page, as far as the host has touched them."""

    CLEAN = "clean"  # as the TD (or the TDX module) last wrote it: TD-owner bit set
    HOST_WRITTEN = "host-written"  # written with a shared KeyID: TD-owner bit clear
    POISONED = "poisoned"  # poison stored with the line (sticky until a full-line write)


@dataclass
class MemoryIntegrity:
    """Line state per page of one TD's memory, and whether the TD was marked fatal."""

    size: int
    states: RangeMap[LineState] = field(init=False)
    fatal_status: int | None = None

    def __post_init__(self) -> None:
        self.states = RangeMap(self.size, LineState.CLEAN)

    def state(self, gpa: int) -> LineState:
        return self.states.get(gpa)

    def set(self, gpa: int, state: LineState) -> None:
        page = gpa - gpa % PAGE_4K
        self.states.set(page, page + PAGE_4K, state)

    @property
    def fatal(self) -> bool:
        return self.fatal_status is not None


class TdxHostAccess(BaseModel):
    """One host access to TD memory and its consequences."""

    gpa: int
    kind: str  # "write" | "read"
    accessor: HostAccessor
    process: str
    td_private: bool
    completed: bool
    data: bytes | None = None  # what a read returned
    line_state: LineState
    machine_check: bool = False
    killed: str | None = None
    panicked: bool = False
    steps: list[FaultStep] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)


def td_private(m: TdxMachine, gpa: int) -> bool:
    """The page belongs to the TD: not shared, and the SEPT holds a page for it."""
    return not m.host.shared.get(gpa) and m.module.sept.entry(gpa).state not in AUG_FROM


def host_write(
    m: TdxMachine,
    gpa: int,
    data: bytes = b"host data",
    *,
    accessor: HostAccessor = HostAccessor.USER,
    process: str = "qemu",
    partial: bool = False,
    errata: frozenset[str] = frozenset(),
) -> TdxHostAccess:
    """The host writes ``data`` at ``gpa``; ``partial``: a sub-cacheline write (non-temporal
    store, UC/WC mapping, DMA) — it matters only with the :data:`ERRATUM_PW_MCE` erratum."""
    who = process if accessor is HostAccessor.USER else "host kernel"
    private = td_private(m, gpa)
    out = TdxHostAccess(
        gpa=gpa,
        kind="write",
        accessor=accessor,
        process=who,
        td_private=private,
        completed=True,
        line_state=m.integrity.state(gpa),
    )
    m.memory.write(gpa, data)
    if not private:
        out.steps.append(
            FaultStep(actor=who, action=f"write {gpa:#x} (shared page)", result="written")
        )
        return out
    state = LineState.HOST_WRITTEN
    out.rules.append(RULE_TDX_HOST_WRITE_UNCHECKED)
    if partial and ERRATUM_PW_MCE in errata:
        state = LineState.POISONED
        out.rules.append(RULE_TDX_PARTIAL_WRITE_ERRATUM)
    m.integrity.set(gpa, state)
    m.trace.record(HOST, "WRITE_TD_PRIVATE", who, state.value)
    out.steps.append(
        FaultStep(
            actor=who,
            action=f"write {gpa:#x} (TD-private page)",
            result=f"completes without a fault; the lines are now "
            f"{state.value} (TD-owner bit cleared)",
        )
    )
    return out.model_copy(update={"line_state": state})


def _consume_in_host(m: TdxMachine, out: TdxHostAccess) -> TdxHostAccess:
    m.trace.record(HOST, "MACHINE_CHECK", out.process, "poison consumed")
    out.rules.append(RULE_TDX_HOST_POISON_CONSUMPTION)
    if out.accessor is HostAccessor.KERNEL:
        out.steps.append(FaultStep(actor=HOST, action="#MC in kernel context", result="host panic"))
        return out.model_copy(update={"machine_check": True, "panicked": True, "completed": False})
    out.steps.append(
        FaultStep(
            actor=HOST,
            action=f"#MC in {out.process}",
            result=f"{out.process} is killed (memory failure)",
        )
    )
    return out.model_copy(update={"machine_check": True, "killed": out.process, "completed": False})


def host_read(
    m: TdxMachine,
    gpa: int,
    size: int = 64,
    *,
    accessor: HostAccessor = HostAccessor.USER,
    process: str = "qemu",
) -> TdxHostAccess:
    """The host reads ``size`` bytes at ``gpa``."""
    who = process if accessor is HostAccessor.USER else "host kernel"
    private = td_private(m, gpa)
    state = m.integrity.state(gpa)
    out = TdxHostAccess(
        gpa=gpa,
        kind="read",
        accessor=accessor,
        process=who,
        td_private=private,
        completed=True,
        line_state=state,
    )
    if state is LineState.POISONED:
        return _consume_in_host(m, out)
    if not private or state is LineState.HOST_WRITTEN:
        if private:
            out.rules.append(RULE_TDX_HOST_READS_BACK_ITS_WRITE)
        return out.model_copy(update={"data": m.memory.read(gpa, size)})
    out.rules.append(RULE_TDX_HOST_READ_RETURNS_ZEROS)
    out.steps.append(
        FaultStep(actor=who, action=f"read {gpa:#x} (TD-owned lines)", result="all zeros, no fault")
    )
    return out.model_copy(update={"data": bytes(size)})


def host_access(m: TdxMachine, gpa: int, access: Access) -> AccessOutcome:
    """The host touching ``gpa`` (``TdxMachine.access("host", ...)``): a write is
    :func:`host_write` (it completes, :data:`RULE_TDX_HOST_WRITE_UNCHECKED`), anything else
    a 64-byte :func:`host_read` (zeros from TD-owned lines, no fault,
    :data:`RULE_TDX_HOST_READ_RETURNS_ZEROS`; a poisoned line machine-checks the host)."""
    if access & Access.WRITE:
        return AccessOutcome(ok=host_write(m, gpa).completed)
    r = host_read(m, gpa)
    if r.machine_check:
        return AccessOutcome(
            ok=False, fault=f"{MACHINE_CHECK} (poison consumed by the host)", handled_by=HOST
        )
    return AccessOutcome(ok=True)


def td_read(m: TdxMachine, layer: str, gpa: int) -> tuple[AccessOutcome, list[FaultStep]]:
    """``layer`` (L1 or an L2 VM of the TD) reads ``gpa``: a host-written or poisoned line is
    a machine check and the TD becomes fatal; otherwise the TD's normal access checks apply."""
    steps: list[FaultStep] = []
    state = m.integrity.state(gpa)
    if td_private(m, gpa) and state is not LineState.CLEAN:
        m.integrity.set(gpa, LineState.POISONED)
        status = int(st.TdxStatus.NON_RECOVERABLE_TD_NON_ACCESSIBLE)
        m.integrity.fatal_status = status
        m.trace.record(MODULE, "MACHINE_CHECK", layer, "TD fatal")
        m.trace.switch(layer, HOST, "TD exit")
        steps.append(
            FaultStep(
                actor=layer,
                action=f"read {gpa:#x}",
                result=f"integrity check fails on a {state.value} line: "
                f"poison consumed, {MACHINE_CHECK}",
            )
        )
        steps.append(
            FaultStep(
                actor=MODULE,
                action="#MC exit from the TD",
                result=f"TD marked fatal; TDH.VP.ENTER returns {st.mnemonic(status)}",
            )
        )
        return AccessOutcome(ok=False, fault=f"{MACHINE_CHECK} (TD fatal)", handled_by=HOST), steps
    if m.integrity.fatal:
        return AccessOutcome(ok=False, fault="the TD is fatal", handled_by=HOST), steps
    outcome = m.access(layer, gpa, Access.READ)
    steps.append(
        FaultStep(
            actor=layer,
            action=f"read {gpa:#x}",
            result="ok" if outcome.ok else outcome.fault or "fault",
        )
    )
    return outcome, steps


def kexec_allowed(errata: frozenset[str]) -> bool:
    """Whether Linux lets the host kexec (:data:`RULE_TDX_KEXEC`)."""
    return ERRATUM_PW_MCE not in errata

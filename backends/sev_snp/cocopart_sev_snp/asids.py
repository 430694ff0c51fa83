"""The SEV ASID space of an AMD host: which ASIDs each guest type may use, and the
firmware's per-ASID cache state (clean / dirty / in use).

Two independent pieces, both used by :mod:`cocopart_sev_snp.psp`:

:class:`AsidSpace` — the class split (immutable).
    CPUID 0x8000_001F ECX is the highest ASID, EDX is MIN_SEV_ASID. Without CipherTextHiding,
    SEV-ES and SEV-SNP guests share ``1 .. MIN_SEV_ASID-1`` and legacy SEV guests use
    ``MIN_SEV_ASID .. max`` (sev-snp.md §8; LX kvm ``sev_hardware_setup``). With
    ``kvm_amd.ciphertext_hiding_asids=N`` the firmware gets ``max_snp_asid = min(N,
    MIN_SEV_ASID-1)`` in SNP_INIT_EX; SNP then owns ``1 .. max_snp_asid`` and SEV-ES
    ``max_snp_asid+1 .. MIN_SEV_ASID-1``, which is empty — SEV-ES effectively disabled —
    when N takes every joint ASID (sev-snp.md §8; LX kvm sev.c, Ashish Kalra's
    ciphertext-hiding series 2025; LX ``kernel-parameters.txt`` kvm-amd.ciphertext_hiding_asids).

:class:`AsidCache` — the firmware's WBINVD / DF_FLUSH bookkeeping (mutable).
    After SNP_INIT, or SEV INIT while SNP is UNINIT, every ASID is *dirty* and the per-core
    WBINVD_DONE flags are cleared. DF_FLUSH fails with WBINVD_REQUIRED unless a WBINVD ran on
    every core since, and otherwise turns dirty ASIDs clean. ACTIVATE of a dirty ASID fails with
    DFFLUSH_REQUIRED, of an ASID bound to another guest with ASID_OWNED. Deactivating a guest
    that ran makes its ASID dirty and clears WBINVD_DONE again. (AMD-ASPFW, Genoa SEV FW
    1.55.25: ``sev_mcmd.c`` mcmd_df_flush_common / activate_common / sev_mcmd_init_common /
    snp_mcmd_init_common, ``sev_guest.c`` sev_guest_deactivate.) The model keeps one flag for
    "WBINVD done on every core" instead of the firmware's per-CCX bit masks.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator


class GuestType(StrEnum):
    """The three encrypted guest types, each with its own ASID class."""

    SEV = "sev"
    SEV_ES = "sev-es"
    SNP = "snp"


class AsidRange(BaseModel):
    """An inclusive ASID range; ``first > last`` means the class is empty (unusable)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    first: int
    last: int

    @property
    def empty(self) -> bool:
        """True when no ASID is in the range (KVM prints the type as "unusable")."""
        return self.first > self.last

    @property
    def size(self) -> int:
        """How many ASIDs the range holds."""
        return 0 if self.empty else self.last - self.first + 1

    def __contains__(self, asid: object) -> bool:
        return isinstance(asid, int) and self.first <= asid <= self.last

    def __str__(self) -> str:
        return "none" if self.empty else f"{self.first}-{self.last}"


class AsidSpace(BaseModel):
    """The ASID classes of one host. ``max_snp_asid == 0`` means CipherTextHiding is off."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: CPUID 0x8000_001F ECX: the highest ASID usable by an encrypted guest.
    max_asid: int
    #: CPUID 0x8000_001F EDX: the lowest ASID for a legacy (SEV, non-ES) guest.
    min_sev_asid: int
    #: The SNP_INIT_EX ``max_snp_asid`` in force (0 = ciphertext hiding disabled).
    max_snp_asid: int = 0

    @model_validator(mode="after")
    def _check(self) -> AsidSpace:
        if self.min_sev_asid < 1 or self.max_asid < 1:
            raise ValueError("max_asid and min_sev_asid must be >= 1")
        if not 0 <= self.max_snp_asid <= self.min_sev_asid - 1:
            raise ValueError(f"max_snp_asid {self.max_snp_asid} outside 0..{self.min_sev_asid - 1}")
        return self

    @property
    def ciphertext_hiding(self) -> bool:
        """True when the SNP/SEV-ES split is in force."""
        return self.max_snp_asid > 0

    def with_hiding(self, requested: int) -> AsidSpace:
        """The space after enabling ciphertext hiding for ``requested`` SNP ASIDs.

        KVM passes ``min(ciphertext_hiding_asids, MIN_SEV_ASID - 1)`` to the firmware, so an
        over-large request takes every joint ASID (LX kvm sev.c sev_hardware_setup). 0 turns
        hiding off."""
        return self.model_copy(
            update={"max_snp_asid": max(0, min(requested, self.min_sev_asid - 1))}
        )

    def range_for(self, kind: GuestType) -> AsidRange:
        """The ASIDs a guest of ``kind`` may use."""
        joint_last = self.min_sev_asid - 1
        if kind is GuestType.SEV:
            return AsidRange(first=self.min_sev_asid, last=self.max_asid)
        if kind is GuestType.SNP:
            return AsidRange(
                first=1, last=self.max_snp_asid if self.ciphertext_hiding else joint_last
            )
        return AsidRange(first=self.max_snp_asid + 1, last=joint_last)

    def allows(self, kind: GuestType, asid: int) -> bool:
        """True when ``asid`` is in the class of ``kind``."""
        return asid in self.range_for(kind)

    def kinds_for(self, asid: int) -> list[GuestType]:
        """The guest types whose class contains ``asid`` (empty when out of range)."""
        return [kind for kind in GuestType if self.allows(kind, asid)]

    def usable(self, kind: GuestType) -> bool:
        """False when the class of ``kind`` is empty (e.g. SEV-ES when hiding takes all)."""
        return not self.range_for(kind).empty

    def describe(self) -> list[str]:
        """One line per type, in the spirit of KVM's "SEV-ES enabled (ASIDs a - b)" lines."""
        lines = []
        for kind in GuestType:
            rng = self.range_for(kind)
            state = "unusable" if rng.empty else "enabled"
            lines.append(f"{kind.value}: {state} (ASIDs {rng})")
        if self.ciphertext_hiding:
            lines.append(f"ciphertext hiding: on (max_snp_asid={self.max_snp_asid})")
        return lines


BindOutcome = Literal["ok", "dirty", "owned"]


class AsidCache:
    """Firmware view of every ASID: clean, dirty (needs WBINVD + DF_FLUSH) or bound.

    ASIDs start clean; :meth:`mark_all_dirty` models the INIT commands."""

    def __init__(self) -> None:
        self.dirty: set[int] = set()
        self.bound: dict[int, int] = {}
        #: True once WBINVD ran on every core since the flags were last cleared.
        self.wbinvd_done = False

    def mark_all_dirty(self, max_asid: int) -> None:
        """SNP_INIT / first INIT: every ASID dirty, nothing bound, WBINVD_DONE cleared."""
        self.dirty = set(range(1, max_asid + 1))
        self.bound.clear()
        self.wbinvd_done = False

    def wbinvd_all_cpus(self) -> None:
        """A WBINVD on every core sets the WBINVD_DONE flags."""
        self.wbinvd_done = True

    def df_flush(self) -> bool:
        """DF_FLUSH: False (WBINVD_REQUIRED) without a WBINVD on every core; otherwise every
        dirty ASID becomes clean."""
        if not self.wbinvd_done:
            return False
        self.dirty.clear()
        return True

    def bind(self, asid: int, handle: int) -> BindOutcome:
        """ACTIVATE: bind ``asid`` to guest ``handle`` if it is clean and unowned."""
        if asid in self.bound and self.bound[asid] != handle:
            return "owned"
        if asid in self.dirty:
            return "dirty"
        self.bound[asid] = handle
        return "ok"

    def release(self, asid: int) -> None:
        """DEACTIVATE / DECOMMISSION of a guest that ran: its ASID becomes dirty and the
        WBINVD_DONE flags are cleared."""
        self.bound.pop(asid, None)
        self.dirty.add(asid)
        self.wbinvd_done = False

    def is_clean(self, asid: int) -> bool:
        """True when ``asid`` is neither dirty nor bound."""
        return asid not in self.dirty and asid not in self.bound

    def all_clean(self) -> bool:
        """True when no ASID is dirty or bound (what SNP_SHUTDOWN requires)."""
        return not self.dirty and not self.bound

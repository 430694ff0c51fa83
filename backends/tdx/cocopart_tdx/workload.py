"""TDX partitioning's answers to the core's requesting side (:mod:`cocopart.workload`).

* validate / rescind from an L2: PVALIDATE protocol calls (the same protocol as SNP) with 2M
  entries where aligned; ``linux`` puts at most 64 entries in a call (one PSC descriptor's
  worth), ``optimal`` 510 (a full calling area) — :data:`cocopart_tdx.l1.ENTRIES_PER_CALL`.
  L1 maps each entry to TDG.MEM.PAGE.ACCEPT (+ fallbacks) and TDG.MEM.PAGE.ATTR.WR. L1 for
  itself: TDG.MEM.PAGE.ACCEPT (strategy order, or exactly the forced level) and, on module
  "2.0", TDG.MEM.PAGE.RELEASE. TD memory is private until converted, so validating asks the
  host nothing (the host AUGs on the ACCEPT's EPT-violation TD exit).
* convert: TDVMCALL<MapGPA> (shared bit set for shared) with the Linux RETRY loop; to shared
  rescinds first on module "2.0" only (on 1.5 L1 removes the L2 aliases while forwarding
  MapGPA and the host's TDH.MEM.PAGE.REMOVE un-accepts). An L2's TDVMCALL exits to L1
  (reason 77), which forwards MapGPA to the host, or goes straight to the host with
  ``enable_tdvmcall``.
* set access: L1's TDG.MEM.PAGE.ATTR.WR; an L2 issues TDG.MEM.PAGE.ATTR.WR itself, which
  exits to L1 (reason 77); L1 checks :data:`L1_ATTR_POLICY` and issues the real ATTR.WR.
* a new vCPU's context page is its L2_ENTER_GUEST_STATE buffer, filled with the start state.
* attest: only L1 may call TDG.MR.REPORT (a hardware report for an L2 is not supported);
  service evidence is a quote with the simulated PCS collateral.
* extend measurement: L1's TDG.MR.RTMR.EXTEND; an L2's goes through the vTPM protocol and L1
  mirrors it into an RTMR.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cocopart.spi import (
    L1,
    PAGE_4K,
    Access,
    ArchError,
    DirectResult,
    Evidence,
    GpaRange,
    HardwareAttestation,
    Limits,
    NotSupportedError,
    PageRun,
    PageSize,
    PartitionConfig,
    ResultCode,
    Trace,
    WorkloadHooks,
    span,
)
from cocopart_tdx import attributes as attrs
from cocopart_tdx import vmcall as vmc
from cocopart_tdx.l1 import (
    ENTRIES_PER_CALL,
    L1Error,
    Tally,
    TdxPlatform,
    TdxTransport,
    error_of,
    pcr_to_rtmr,
    vm_name,
)
from cocopart_tdx.l1_emulation import L1_ATTR_POLICY, L2Exits
from cocopart_tdx.sept import LEVEL_2M, LEVEL_4K, LEVEL_BYTES, SeptState
from cocopart_tdx.simroots import SimulatedIntelRoots
from cocopart_tdx.status import status_name
from cocopart_tdx.tdcall import Leaf
from cocopart_tdx.vp_enter import EnterGuestState

#: The protocol's own error codes travel as ArchError with this vendor.
PROTOCOL_VENDOR = "cocopart-protocol"
#: Start state an L2 writes into a new vCPU's state buffer (its AP entry point; a
#: placeholder — the model does not execute L2 code).
AP_START_RIP = 0xFFFF_FFF0
#: The vCPU an L2 issues requests from (its BSP always runs: RULE_BSP_KEEPS_RUNNING).
CALLER = 0
NO_1G = (
    "PVALIDATE protocol entries are 4K or 2M; only L1 can accept a 1G page (and only "
    "on a module that allows it)"
)


def intel_error(err: L1Error) -> ArchError:
    return ArchError(vendor="intel", mnemonic=err.mnemonic, code=err.code, message=err.message)


@dataclass
class TdxWorkloadHooks(WorkloadHooks):
    """The TDX primitives behind every request of L1 or an L2 VM."""

    config: PartitionConfig
    platform: TdxPlatform
    transport: TdxTransport
    trace: Trace
    #: The simulated Intel roots whose collateral goes out with the evidence.
    roots: SimulatedIntelRoots | None = None

    def __post_init__(self) -> None:
        #: L1 serving the L2's TDVMCALL and ATTR.WR exits.
        self.exits = L2Exits(self.config, self.platform, self.transport, self.trace)

    protocol_vendor = PROTOCOL_VENDOR

    @property
    def workloads(self) -> tuple[str, ...]:
        return self.config.workloads

    def limits(self) -> Limits:
        return Limits(per_call=ENTRIES_PER_CALL[self.config.strategy])

    def check_entry_size(self, size: PageSize) -> None:
        if size is PageSize.SIZE_1G:
            raise NotSupportedError("1G pages from an L2", NO_1G)

    def underlying_error(self) -> ArchError | None:
        err = self.platform.take_error()
        return intel_error(err) if err is not None else None

    # -- memory ----------------------------------------------------------------------------
    def direct_pages(
        self, rng: GpaRange, forced: PageSize | None, *, validate: bool, ignore_unchanged: bool
    ) -> DirectResult:
        """L1's own TDG.MEM.PAGE.ACCEPT (strategy order, or exactly the forced level), or
        TDG.MEM.PAGE.RELEASE after removing every L2 alias (module "2.0")."""
        p = self.platform
        if validate:
            levels = (
                p.accept_levels(None)
                if forced is None
                else (next(lv for lv, s in LEVEL_BYTES.items() if s == forced.bytes),)
            )
            r = p.accept_range(rng.start, rng.end, levels)
            if r.status:
                return DirectResult(
                    r.done,
                    intel_error(
                        error_of(r.status, f"TDG.MEM.PAGE.ACCEPT of {r.failed_gpa or 0:#x}")
                    ),
                )
            return DirectResult(r.done, data={"already_accepted_bytes": r.already})
        out = p.rescind_pages(
            self.workloads[0], rng.start, PAGE_4K, rng.pages_4k, ignore_unchanged=ignore_unchanged
        )
        err = p.take_error()
        if out.code == ResultCode.UNSUPPORTED_CALL and err is not None:
            raise NotSupportedError("rescind from L1", err.message)
        if out.code != ResultCode.SUCCESS:
            return DirectResult(
                out.done * PAGE_4K,
                intel_error(err)
                if err
                else ArchError(
                    vendor=PROTOCOL_VENDOR,
                    mnemonic="PVALIDATE",
                    code=out.code,
                    message="L1 could not rescind the pages",
                ),
            )
        return DirectResult(out.done * PAGE_4K)

    def convert_refusal(self, layer: str, private: bool) -> str | None:
        """Without L2_CTLS.ENABLE_SHARED_EPTP an L2 cannot use shared memory: its convert to
        shared is refused before anything is converted (metadata_vp.c)."""
        if private or layer == L1:
            return None
        return self.platform.shared_memory_refusal(layer)

    def rescind_before_share(self, layer: str) -> tuple[bool, str | None]:
        if self.platform.module.config.module == "2.0":
            return True, None
        return False, (
            "module 1.5 has no TDG.MEM.PAGE.RELEASE: L1 removes the L2 aliases "
            "while forwarding MapGPA; the host's TDH.MEM.PAGE.REMOVE un-accepts "
            "the pages"
        )

    def host_convert(self, layer: str, runs: list[PageRun], private: bool) -> ArchError | None:
        rng = span(runs)
        sbit = self.platform.module.shared_bit
        gpa = rng.start if private else rng.start | sbit
        st = (
            self.l1_map_gpa(gpa, rng.size)
            if layer == L1
            else self.map_gpa(layer, CALLER, gpa, rng.size)
        )
        if st == vmc.TdvmcallStatus.SUCCESS:
            return None
        name = vmc.TdvmcallStatus(st).name
        return ArchError(
            vendor="intel",
            mnemonic=f"TDG.VP.VMCALL_{name}",
            code=st,
            message=f"TDVMCALL<MapGPA> answered {name} in R10",
        )

    def l1_map_gpa(self, gpa: int, size: int) -> int:
        """L1's own TDVMCALL<MapGPA>, re-issued from R11 while the host answers RETRY."""
        p = self.platform
        sbit = p.module.shared_bit
        end = (gpa & ~sbit) + size
        cur = gpa
        out: dict[str, int] = {}
        for _ in range(1 + size // PAGE_4K):
            tally = Tally()
            out = p.map_gpa(cur, end - (cur & ~sbit), tally)
            tally.flush(self.trace)
            if out.get("r10") != vmc.TdvmcallStatus.RETRY:
                break
            cur = out.get("r11", cur)
        return int(out.get("r10", vmc.TdvmcallStatus.INVALID_OPERAND))

    def map_gpa(self, layer: str, vcpu: int, gpa: int, size: int) -> int:
        """TDVMCALL<MapGPA> with the Linux RETRY loop; returns the final TDVMCALL status."""
        sbit = self.platform.module.shared_bit
        start, end = gpa & ~sbit, (gpa & ~sbit) + size
        cur, stuck = gpa, 0
        while True:
            out = self.exits.l2_tdvmcall(
                layer, vcpu, vmc.map_gpa_registers(cur, end - (cur & ~sbit)), "MapGPA"
            )
            status = out.get("r10", vmc.TdvmcallStatus.INVALID_OPERAND)
            if status != vmc.TdvmcallStatus.RETRY:
                return int(status)
            nxt = out.get("r11", cur)
            if nxt == cur:
                stuck += 1
                if stuck > vmc.MAP_GPA_MAX_RETRIES_WITHOUT_PROGRESS:
                    return int(status)
            else:
                stuck = 0
            if not start <= (nxt & ~sbit) < end:
                return int(vmc.TdvmcallStatus.INVALID_OPERAND)
            cur = nxt

    def evidence(
        self, raw: bytes, cert_table: bytes, nonce: bytes | None, manifest: bytes | None
    ) -> Evidence:
        layer_map = {vm_name(i + 1): w for i, w in enumerate(self.workloads)}
        layer_map["L1"] = "l1"
        # the simulated PCS collateral (TCB info, QE identity, CRLs) issued now, and the
        # simulated root last, so a verifier that trusts that root can check everything
        extra: dict[str, object] = {}
        if self.roots is not None:
            extra = {
                "certificates": [self.roots.root_pem],
                "collateral": self.roots.collateral(datetime.now(UTC)),
            }
        return Evidence(
            vendor="tdx",
            format="tdx-quote",
            raw=raw,
            nonce=nonce,
            manifest=manifest,
            layer_map=layer_map,
            **extra,
        )

    # -- access ----------------------------------------------------------------------------
    def set_access(
        self, layer: str, target: str, rng: GpaRange, access: Access, *, direct: bool
    ) -> DirectResult:
        p = self.platform
        if layer == L1:
            out = p.set_access(target, rng.start, PAGE_4K, rng.pages_4k, access)
            err = p.take_error()
            if out.code != ResultCode.SUCCESS:
                return DirectResult(
                    out.done * PAGE_4K,
                    intel_error(err)
                    if err
                    else ArchError(
                        vendor="intel",
                        mnemonic="TDX_OPERAND_INVALID",
                        code=out.code,
                        message="TDG.MEM.PAGE.ATTR.WR failed",
                    ),
                )
            return DirectResult(out.done * PAGE_4K)
        return self.l2_attr_wr(layer, target, rng, access)

    def l2_attr_wr(self, layer: str, target: str, rng: GpaRange, access: Access) -> DirectResult:
        """The L2's own TDG.MEM.PAGE.ATTR.WR, one per 2M/4K page, each exiting to L1."""
        p = self.platform
        tvm = self.workloads.index(target) + 1
        word = attrs.access_to_attr(access)
        for s, ps, n in rng.chunks():
            level = LEVEL_2M if ps is PageSize.SIZE_2M else LEVEL_4K
            regs = {
                "rax": Leaf.MEM_PAGE_ATTR_WR,
                "rcx": s | level,
                "rdx": attrs.pack({tvm: attrs.VALID | word}),
                "r8": attrs.pack({tvm: attrs.RWX | attrs.FLAG_INVEPT}),
            }
            state = self.transport.l2_exit(layer, CALLER, regs, "TDG.MEM.PAGE.ATTR.WR")
            if state is None:
                raise NotSupportedError(f"set-access from {layer}", "its vCPU does not run")
            status = self.exits.emulate_attr_wr(layer, state, s, s + ps.bytes * n, tvm, word)
            if status == 0 and n > 1:  # the other n - 1 identical TDCALLs
                self.trace.record(layer, "TDCALL", "TDG.MEM.PAGE.ATTR.WR", "exit 77", n - 1)
                self.trace.switch(layer, "l1", self.transport.mechanism, n - 1)
            after = self.transport.l2_resume(layer, CALLER, state, n if status == 0 else 1)
            status = after["rax"] if after is not None else status
            if status:
                err = p.take_error()
                return DirectResult(
                    s - rng.start,
                    ArchError(
                        vendor="intel",
                        mnemonic=f"TDX_{status_name(status)}",
                        code=status,
                        message=err.message
                        if err
                        else f"TDG.MEM.PAGE.ATTR.WR of {s:#x} returned {status_name(status)}",
                    ),
                )
        return DirectResult(rng.size, data={"policy": L1_ATTR_POLICY})

    # -- vCPUs -----------------------------------------------------------------------------
    def prepare_context(
        self, layer: str, target: str, vcpu: int, context_gpa: int
    ) -> ArchError | None:
        """An L2 fills the new vCPU's L2_ENTER_GUEST_STATE buffer with its start state; a
        vCPU that already runs is refused (L1 starts each L2 VM's vCPU 0 at launch)."""
        if layer == L1:
            return None
        p = self.platform
        vm = p.vm_of(layer)
        if p.vcpu_exists(vm, vcpu):
            return ArchError(
                vendor=PROTOCOL_VENDOR,
                mnemonic="SVSM_CORE_CREATE_VCPU",
                code=ResultCode.INVALID_PARAMETER,
                message=f"vCPU {vcpu} of {layer} already runs (L1 starts each L2 "
                "VM's vCPU 0 at launch)",
            )
        if (
            p.module.private_accepted(context_gpa)
            and p.module.sept.alias(vm, context_gpa).state is SeptState.L2_MAPPED
        ):
            p.memory.write(context_gpa, EnterGuestState(rip=AP_START_RIP).encode())
        return None

    # -- attestation and measurement -------------------------------------------------------
    def hardware_attestation(
        self, layer: str, report_data: bytes
    ) -> HardwareAttestation | ArchError:
        if layer != L1:
            raise NotSupportedError(
                f"a hardware report for {layer}",
                "only L1 may call TDG.MR.REPORT; an L2's "
                "TDCALL exits to L1 — use source 'service' (L1's attestation service binds the "
                "nonce and manifest)",
            )
        ev = self.platform.hardware_report(report_data, L1)
        if isinstance(ev, int):
            err = self.platform.take_error()
            return (
                intel_error(err)
                if err
                else ArchError(
                    vendor="intel", mnemonic="TDG.MR.REPORT", code=ev, message="report failed"
                )
            )
        return HardwareAttestation(self.evidence(ev.raw, b"", None, None))

    def direct_extend(self, index: int, digest: bytes) -> dict[str, Any] | ArchError:
        status = self.platform.extend_rtmr(index, digest)
        if status:
            return intel_error(error_of(status, f"TDG.MR.RTMR.EXTEND of RTMR{index}"))
        return {"rtmr": index}

    def measurement_data(self, index: int) -> dict[str, Any]:
        return {"pcr": index, "rtmr": pcr_to_rtmr(index)}

"""L1's memory primitives: validate for an L2 = TDG.MEM.PAGE.ACCEPT + TDG.MEM.PAGE.ATTR.WR
granting that L2 VM R|W|Xs|Xu; rescind = ATTR.WR removing every L2's alias +
TDG.MEM.PAGE.RELEASE (module "2.0"); set access = ATTR.WR; L1's TDVMCALL<MapGPA>."""

from __future__ import annotations

from collections.abc import Callable

from cocopart.spi import Access, PageOpResult, ResultCode, Strategy
from cocopart_tdx import attributes as attrs
from cocopart_tdx import vmcall as vmc
from cocopart_tdx.l1_core import L1Core
from cocopart_tdx.l1_errors import L1Error, error_of
from cocopart_tdx.l1_tally import Tally, vm_name
from cocopart_tdx.l1_walker import AcceptOp, AttrWrOp, ReleaseOp, WalkResult
from cocopart_tdx.sept import (
    ACCEPTED,
    LEVEL_1G,
    LEVEL_2M,
    LEVEL_4K,
    LEVEL_BYTES,
    SeptState,
)
from cocopart_tdx.status import Operand, TdxStatus, with_details

#: ACCEPT levels tried in order, per strategy (tdx.md §4.1; cost-model.md §3).
ACCEPT_ORDER: dict[Strategy, tuple[int, ...]] = {
    Strategy.LINUX: (LEVEL_1G, LEVEL_2M, LEVEL_4K),
    Strategy.OPTIMAL: (LEVEL_2M, LEVEL_4K),
}
#: Protocol entries per PVALIDATE call the L2 sends, per strategy: Linux builds each call from
#: one 64-entry PSC descriptor; the calling area holds 510 (cost-model.md §3).
ENTRIES_PER_CALL: dict[Strategy, int] = {Strategy.LINUX: 64, Strategy.OPTIMAL: 510}
#: What validate grants the L2 (OpenHCL: R|W|Xs|Xu|VALID right after ACCEPT; tdx.md §3).
VALIDATE_GRANT = attrs.RWX
#: Access the L2 keeps to its calling areas and scratch pages (no execute).
PROTOCOL_PAGE_GRANT = attrs.R | attrs.W


class L1Memory(L1Core):
    """Accept + grant, validate, rescind, set access and MapGPA on TDX primitives."""

    # -- accept + grant ---------------------------------------------------------------------
    def accept_levels(self, page_bytes: int | None) -> tuple[int, ...]:
        """Levels L1 tries: the strategy's order, capped at the protocol entry's size."""
        order = ACCEPT_ORDER[self.strategy]
        if page_bytes is None:
            return order
        cap = next(lv for lv, size in LEVEL_BYTES.items() if size == page_bytes)
        return tuple(lv for lv in order if lv <= cap) or (LEVEL_4K,)

    def accept_range(
        self, start: int, end: int, levels: tuple[int, ...], *, then_promote: bool = True
    ) -> WalkResult:
        """ACCEPT ``[start, end)`` at ``levels`` (fallbacks, the host's AUGs and demotes on
        TD exits); then, unless the caller grants first, the host's promotion of blocks the
        accepts left uniform (:meth:`promote_done`)."""
        tally = Tally()
        r = self.walker.walk(AcceptOp(self.module), start, end, levels, tally)
        self._flush(tally)
        if then_promote:
            self.promote_done(start, start + r.done)
        return r

    def promote_done(self, start: int, end: int) -> None:
        """The TD's request over ``[start, end)`` completed: a 2M host merges the 2M blocks
        it left as 512 equal accepted 4K pages (host.HOST_PROMOTES_UNIFORM_BLOCKS)."""
        if start < end:
            tally = Tally()
            self.host.promote_blocks(start, end, tally)
            self._flush(tally)

    def write_attrs(
        self, start: int, end: int, words: dict[int, int], flags: dict[int, int], target: str
    ) -> WalkResult:
        """ATTR.WR over ``[start, end)`` at the leaf levels (one TDCALL per leaf)."""
        tally = Tally()
        op = AttrWrOp(self.module, attrs.pack(words), attrs.pack(flags), target)
        r = self.walker.walk(op, start, end, (LEVEL_2M, LEVEL_4K), tally)
        self._flush(tally)
        return r

    def grant(self, vm: int, start: int, end: int, attr: int) -> WalkResult:
        """Set VM ``vm``'s R/W/Xs/Xu on the pages (INVEPT when access shrinks)."""
        flags = (attrs.RWX | attrs.FLAG_INVEPT) if attr != attrs.RWX else attrs.RWX
        return self.write_attrs(start, end, {vm: attrs.VALID | attr}, {vm: flags}, vm_name(vm))

    def revoke_all(self, start: int, end: int, target: str = "all L2 VMs") -> WalkResult:
        """ATTR.WR removing every L2 VM's R/W/Xs/Xu (alias removed), INVEPT each VM."""
        words = {vm: attrs.VALID for vm in self.module.sept.l2}
        flags = {vm: attrs.RWX | attrs.FLAG_INVEPT for vm in self.module.sept.l2}
        total = WalkResult()
        for s, e in self._aliased_runs(start, end):
            r = self.write_attrs(s, e, words, flags, target)
            total.done += r.done
            if r.status:
                total.status, total.failed_gpa = r.status, r.failed_gpa
                return total
        return total

    def _before_busy(
        self,
        busy: int,
        gpa: int,
        page_bytes: int,
        what: str,
        head_op: Callable[[int], PageOpResult],
    ) -> PageOpResult:
        """A run reaching a live L2 state buffer: the entries before it are carried out,
        then the run stops at the entry holding it, so the count done is exact."""
        head = (busy - gpa) // page_bytes
        if head:
            r = head_op(head)
            if r.code != ResultCode.SUCCESS:
                return r
        return PageOpResult(head, self._refuse_state(busy, what))

    def _first_entry(
        self, gpa: int, page_bytes: int, count: int, pred: Callable[[SeptState], bool]
    ) -> int | None:
        """Index of the first entry whose every page's L1 state satisfies ``pred``."""
        end = gpa + page_bytes * count
        for s, e, v in self.module.sept.l1.runs(gpa, end):
            if not pred(v.state):
                continue
            first = -(-(s - gpa) // page_bytes)
            if gpa + (first + 1) * page_bytes <= e:
                return first
        return None

    def validate_pages(
        self, layer: str, gpa: int, page_bytes: int, count: int, *, ignore_unchanged: bool
    ) -> PageOpResult:
        """ACCEPT (strategy order, fallbacks, host AUGs on TD exits) then ATTR.WR granting
        ``layer``'s L2 VM R|W|Xs|Xu. ALREADY_ACCEPTED policy: an entry whose every page was
        accepted before is "no change" (PVALIDATE_FAIL_NO_CHANGE, entries before it done)
        unless ``ignore_unchanged``, when L1 zeroes those pages itself and grants them;
        already-accepted pages inside a partly accepted entry are simply kept. Afterwards a
        2M host may promote what the entries done left uniform."""
        r = self._validate_pages(layer, gpa, page_bytes, count, ignore_unchanged=ignore_unchanged)
        self.promote_done(gpa, gpa + r.done * page_bytes)
        return r

    def _validate_pages(
        self, layer: str, gpa: int, page_bytes: int, count: int, *, ignore_unchanged: bool
    ) -> PageOpResult:
        vm = self.vm_of(layer)
        end = gpa + page_bytes * count
        busy = self.live_state_in(gpa, end)
        if busy is not None:  # do the entries before it, then refuse (exact progress)
            return self._before_busy(
                busy,
                gpa,
                page_bytes,
                "validate",
                lambda n: self.validate_pages(
                    layer, gpa, page_bytes, n, ignore_unchanged=ignore_unchanged
                ),
            )
        fast = self._validate_memo(vm, gpa, page_bytes, count)
        if fast is not None:
            return fast
        stop = count
        unchanged = self._first_entry(gpa, page_bytes, count, lambda s: s in ACCEPTED)
        if unchanged is not None and not ignore_unchanged:
            stop = unchanged
        already: list[tuple[int, int]] = []
        if ignore_unchanged:
            already = [
                (max(s, gpa), min(e, end))
                for s, e, v in self.module.sept.l1.runs(gpa, end)
                if v.state in ACCEPTED
            ]
        key = self._uniform_key(vm, gpa, end, page_bytes) if unchanged is None else None
        self._capture = [] if key is not None else None
        if stop:
            stop_end = gpa + page_bytes * stop
            r = self.accept_range(
                gpa, stop_end, self.accept_levels(page_bytes), then_promote=False
            )  # the grant comes first
            done = r.done // page_bytes
            if done:
                g = self.grant(vm, gpa, gpa + done * page_bytes, VALIDATE_GRANT)
                if g.status:
                    self._capture = None
                    return PageOpResult(
                        g.done // page_bytes, self.fail(g.status, "TDG.MEM.PAGE.ATTR.WR")
                    )
            if r.status:
                self._capture = None
                what = f"TDG.MEM.PAGE.ACCEPT of {r.failed_gpa or 0:#x}"
                return PageOpResult(done, self.fail(r.status, what))
        items, self._capture = self._capture, None
        if key is not None and items is not None:
            self._remember_validate(key, gpa, end, count, items)
        for s, e in already:  # ALREADY_ACCEPTED with ignore_cf: L1 zeroes the pages itself
            self.memory.zero(s, e - s)
        if stop < count:
            self.last_error = error_of(
                with_details(TdxStatus.PAGE_ALREADY_ACCEPTED, 0),
                f"TDG.MEM.PAGE.ACCEPT of {gpa + stop * page_bytes:#x} (already accepted, "
                "reported as no change)",
            )
            return PageOpResult(stop, ResultCode.PVALIDATE_FAIL_NO_CHANGE)
        return PageOpResult(count, ResultCode.SUCCESS)

    # A whole PVALIDATE run over pages in one state behaves the same every time: remember what
    # one entry costs and ends as, and apply it to the next run in that state at once.
    def _uniform_key(
        self, vm: int, start: int, end: int, page_bytes: int
    ) -> tuple[object, ...] | None:
        mod = self.module
        if mod.busy or mod.l2_sept_missing or mod.host_interrupts or self.host.map_gpa_chunk:
            return None
        run_end, state, shared = self.walker.state_run(start)
        if run_end < end or start % page_bytes:
            return None
        return (vm, page_bytes, self.strategy, state, shared, mod.l2_running)

    def _validate_memo(self, vm: int, gpa: int, page_bytes: int, count: int) -> PageOpResult | None:
        key = self._uniform_key(vm, gpa, gpa + page_bytes * count, page_bytes)
        hit = self._vmemo.get(key) if key is not None else None
        if hit is None or key is None:
            return None
        items, final, aliases, shared = hit
        end = gpa + page_bytes * count
        sept = self.module.sept
        before = key[3]
        assert isinstance(before, tuple)
        if shared != key[4]:  # the host converted the pages implicitly
            self.host.shared.set(gpa, end, shared)
        if final != before[0]:
            sept.set_entries(gpa, end, final)
            if final.state in ACCEPTED:
                self.memory.zero(gpa, end - gpa)
        for (v, _amap), a, old in zip(sept.l2.items(), aliases, before[1]):
            if a != old:
                sept.set_alias(v, gpa, end, a)
        trace = self.trace
        for is_prim, k, c in items:
            if is_prim:
                trace.record(k[0], k[1], k[2], k[3], c * count)
            else:
                trace.switch(k[0], k[1], k[2], c * count)
        return PageOpResult(count, ResultCode.SUCCESS)

    def _remember_validate(
        self,
        key: tuple[object, ...],
        gpa: int,
        end: int,
        count: int,
        items: list[tuple[bool, tuple[str, str, str, str], int]],
    ) -> None:
        sept = self.module.sept
        final = sept.l1.uniform(gpa, end)
        aliases = tuple(amap.uniform(gpa, end) for amap in sept.l2.values())
        shared = self.host.shared.uniform(gpa, end)
        if (
            final is None
            or any(a is None for a in aliases)
            or shared is None
            or any(c % count for _p, _k, c in items)
            or LEVEL_BYTES[final.level] > (end - gpa) // count
        ):
            return
        per_entry = tuple((p, k, c // count) for p, k, c in items)
        self._vmemo[key] = (per_entry, final, tuple(a for a in aliases if a is not None), shared)

    def rescind_pages(
        self, layer: str, gpa: int, page_bytes: int, count: int, *, ignore_unchanged: bool
    ) -> PageOpResult:
        """ATTR.WR removing every L2 alias, then TDG.MEM.PAGE.RELEASE of each accepted leaf
        (module "2.0"). An entry with no accepted page is "no change" unless ignored."""
        if self.module.config.module == "1.5":
            self.last_error = L1Error(
                "TDX_OPERAND_INVALID",
                with_details(TdxStatus.OPERAND_INVALID, Operand.RAX),
                "TDX module 1.5 has no TDG.MEM.PAGE.RELEASE (leaf 30): L1 cannot un-accept a "
                "page; convert it to shared (MapGPA) and the host removes it",
            )
            return PageOpResult(0, ResultCode.UNSUPPORTED_CALL)
        busy = self.live_state_in(gpa, gpa + page_bytes * count)
        if busy is not None:
            return self._before_busy(
                busy,
                gpa,
                page_bytes,
                "rescind",
                lambda n: self.rescind_pages(
                    layer, gpa, page_bytes, n, ignore_unchanged=ignore_unchanged
                ),
            )
        stop = count
        gone = self._first_entry(gpa, page_bytes, count, lambda s: s not in ACCEPTED)
        if gone is not None and not ignore_unchanged:
            stop = gone
        end = gpa + stop * page_bytes
        if stop:
            r = self.revoke_all(gpa, end)
            if r.status:
                return PageOpResult(0, self.fail(r.status, "TDG.MEM.PAGE.ATTR.WR"))
            for s, e, v in list(self.module.sept.l1.runs(gpa, end)):
                if v.state not in ACCEPTED:
                    continue
                tally = Tally()
                rr = self.walker.walk(
                    ReleaseOp(self.module), s, e, (LEVEL_1G, LEVEL_2M, LEVEL_4K), tally
                )
                self._flush(tally)
                if rr.status:
                    failed = rr.failed_gpa if rr.failed_gpa is not None else s
                    return PageOpResult(
                        max(0, failed - gpa) // page_bytes,
                        self.fail(rr.status, "TDG.MEM.PAGE.RELEASE"),
                    )
        if stop < count:
            self.last_error = error_of(
                int(TdxStatus.EPT_ENTRY_STATE_INCORRECT),
                f"TDG.MEM.PAGE.RELEASE of {end:#x} (not accepted, reported as no change)",
            )
            return PageOpResult(stop, ResultCode.PVALIDATE_FAIL_NO_CHANGE)
        return PageOpResult(count, ResultCode.SUCCESS)

    def set_access(
        self, target: str, gpa: int, page_bytes: int, count: int, access: Access
    ) -> PageOpResult:
        if target not in self.workloads:
            self.last_error = L1Error(
                "TDX_OPERAND_INVALID",
                with_details(TdxStatus.OPERAND_INVALID, Operand.RDX),
                f"{target} is not an L2 VM of this TD",
            )
            return PageOpResult(0, ResultCode.INVALID_PARAMETER)
        vm = self.vm_of(target)
        end = gpa + page_bytes * count
        busy = self.live_state_in(gpa, end)
        if busy is not None:
            return self._before_busy(
                busy,
                gpa,
                page_bytes,
                "ATTR.WR",
                lambda n: self.set_access(target, gpa, page_bytes, n, access),
            )
        r = self.grant(vm, gpa, end, attrs.access_to_attr(access))
        self.promote_done(gpa, gpa + r.done)
        if r.status:
            return PageOpResult(r.done // page_bytes, self.fail(r.status, "TDG.MEM.PAGE.ATTR.WR"))
        return PageOpResult(count, ResultCode.SUCCESS)

    # -- MapGPA -----------------------------------------------------------------------------------
    def shared_memory_refusal(self, layer: str) -> str | None:
        """Why L2 VM ``layer`` cannot use shared memory, or None: L1 gave it the host's shared
        EPT only if it set L2_CTLS.ENABLE_SHARED_EPTP
        (:data:`cocopart_tdx.metadata.RULE_L2_SHARED_NEEDS_SHARED_EPTP`)."""
        vm = self.vm_of(layer)
        if self.module.l2_shared_eptp(0, vm):
            return None
        return (
            f"{layer} (L2 VM {vm}) cannot use shared memory: L1 left "
            f"L2_CTLS[{vm}].ENABLE_SHARED_EPTP clear (backend option enable_shared_eptp = "
            "false), so its shared EPTP points at the TDCS zero page and every access to a "
            "shared GPA would be an EPT-violation TD exit the host cannot resolve"
        )

    def forward_map_gpa(self, layer: str, gpa: int, size: int, tally: Tally) -> dict[str, int]:
        """L1 forwarding ``layer``'s MapGPA: a conversion to shared for an L2 VM without the
        shared EPT is refused (TDVMCALL INVALID_OPERAND, with the reason) instead of
        producing pages that L2 can never touch."""
        if gpa & self.module.shared_bit:
            why = self.shared_memory_refusal(layer)
            if why is not None:
                self.last_error = L1Error(
                    "TDG.VP.VMCALL_INVALID_OPERAND", vmc.TdvmcallStatus.INVALID_OPERAND, why
                )
                return {"r10": vmc.TdvmcallStatus.INVALID_OPERAND, "r11": 0}
        return self.map_gpa(gpa, size, tally)

    def map_gpa(self, gpa: int, size: int, tally: Tally) -> dict[str, int]:
        """L1's TDVMCALL<MapGPA>. Before a to-shared MapGPA L1 removes every L2 alias of the
        range (the host is about to take the pages out of the TD)."""
        sbit = self.module.shared_bit
        start = gpa & ~sbit
        if gpa & sbit and self.live_state_in(start, start + size) is not None:
            return {"r10": vmc.TdvmcallStatus.INVALID_OPERAND, "r11": 0}
        if gpa & sbit and size and start + size <= self.module.sept.size:
            sub = Tally()
            words = {vm: attrs.VALID for vm in self.module.sept.l2}
            flags = {vm: attrs.RWX | attrs.FLAG_INVEPT for vm in self.module.sept.l2}
            for s, e in self._aliased_runs(start, start + size):
                self.walker.walk(
                    AttrWrOp(self.module, attrs.pack(words), attrs.pack(flags), "all L2 VMs"),
                    s,
                    e,
                    (LEVEL_2M, LEVEL_4K),
                    sub,
                )
            tally.add(sub)
        return self.tdvmcall(vmc.map_gpa_registers(gpa, size), "MapGPA", tally)

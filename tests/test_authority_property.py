"""Authority as a property, on both backends (issue 11; docs/authority.md).

A hypothesis state machine drives random operations from every layer — l1, two or three
workload layers, the host (interrupts) — over random guests (backend, strategy, interrupt
mode, backend options, with and without a memory map) and checks every step against an
independent reference of authority written from the rules' meaning, not from the model:

* who owns each page (``owner``: None = l1's pool, a workload, or ``l1``), kept per page here
  and compared with ``memory_view()``;
* who controls whom (SNP: a lower VMPL number controls higher ones; TDX: only l1);
* every *effect* an operation has on a page (a layer gaining or losing access, a page
  becoming validated, rescinded, shared or private, its bytes changing) must be one the
  requester had authority for: its own or pool pages, or a layer it controls, or l1;
* shared/private consistency, rescinded pages unreachable, vCPU context pages never
  writable by a workload;
* refused operations change nothing; a partial or failed result's progress is the exact done
  prefix, ``changed`` lists exactly the other changes, and re-running from ``next_gpa``
  either completes or stops at the same place for the same reason;
* trace sums, JSON round trip, only CocopartError subclasses raised.

CI runs a small budget; ``COCOPART_AUTHORITY_EXAMPLES=N`` runs N sequences per backend
(docs/authority.md, "Verification").
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from cocopart import Partition
from cocopart.errors import CocopartError, ConfigError
from cocopart.model import PAGE_4K, Access, GpaRange
from cocopart.ops import (
    ConvertPages,
    CreateVcpu,
    DeleteVcpu,
    EndOfInterrupt,
    InjectInterrupt,
    Operation,
    OperationResult,
    RescindPages,
    SetAccess,
    Status,
    ValidatePages,
)

MEM = 8 << 20
PAGES = MEM // PAGE_4K
L1 = "l1"
EXAMPLES = int(os.environ.get("COCOPART_AUTHORITY_EXAMPLES", "30"))
STEPS = int(os.environ.get("COCOPART_AUTHORITY_STEPS", "14"))
ACCESSES = [Access.NONE, Access.READ, Access.RW, Access.RWX, Access.READ | Access.USER_EXEC]
STARTS = [0, 1, 2, 511, 512, 700, 1024, 1536, 2040]
SIZES = [1, 3, 64, 512, 513, 1024]

page_ranges = st.tuples(st.sampled_from(STARTS), st.sampled_from(SIZES)).map(
    lambda t: (t[0], min(t[1], PAGES - t[0]))
)


class PageState:
    """The neutral state of one page, read from ``memory_view`` (the model's public view)."""

    __slots__ = ("access", "owner", "private", "validated")

    def __init__(self, private: bool, validated: bool, access: dict[str, str], owner: str) -> None:
        self.private, self.validated, self.access, self.owner = private, validated, access, owner

    def acc(self, layer: str) -> Access:
        return Access.parse(self.access.get(layer, "none"))


def pages_of(p: Partition) -> list[PageState]:
    out: list[PageState] = []
    for run in p.memory_view(0, MEM):
        st_ = PageState(run.private, run.validated, dict(run.access), run.owner)
        out.extend(st_ for _ in range(run.start // PAGE_4K, run.end // PAGE_4K))
    return out


class Authority(RuleBasedStateMachine):
    """Random operations from every layer, checked against the reference after each one."""

    p: Partition
    BACKEND = "sev-snp"

    @initialize(
        layers=st.sampled_from([2, 3]),
        strategy=st.sampled_from(["linux", "optimal"]),
        mode=st.sampled_from(["direct", "restricted", "alternate", "secure-avic"]),
        option=st.integers(0, 3),
        mapped=st.booleans(),
    )
    def start(self, layers: int, strategy: str, mode: str, option: int, mapped: bool) -> None:
        self.start_guest(self.BACKEND, layers, strategy, mode, option, mapped)

    def start_guest(
        self, backend: str, layers: int, strategy: str, mode: str, option: int, mapped: bool
    ) -> None:
        options: dict[str, Any]
        if backend == "sev-snp":
            options = [
                {},
                {"host_page_size": "4K"},
                {"call_protocol": "msr"},
                {"host_page_size": "4K", "call_protocol": "msr"},
            ][option]
        else:
            options = [
                {},
                {"module": "2.0"},
                {"host_mapping": "2M"},
                {"module": "2.0", "host_mapping": "2M", "enable_tdvmcall": True},
            ][option]
        self.workloads = tuple(f"l2.{i + 1}" for i in range(layers))
        memory_map: dict[str, list[dict[str, int]]] = {}
        self.owner: list[str | None] = [None] * PAGES
        self.assigned = [False] * PAGES
        if mapped:  # the first two layers get 1 MiB each for good; the rest is the pool
            for i, w in enumerate(self.workloads[:2]):
                memory_map[w] = [{"start": i * (1 << 20), "size": 1 << 20}]
                for k in range(i * 256, (i + 1) * 256):
                    self.owner[k], self.assigned[k] = w, True
        self.backend = backend
        self.p = Partition(
            {
                "memory": MEM,
                "vcpus": 3,
                "workload_layers": layers,
                "strategy": strategy,
                "interrupt_mode": mode,
                "memory_map": memory_map,
                "backend_options": options,
            },
            backend,
        )
        # who controls whom: SNP VMPLs form a chain (default VMPLs 1, 2, 3); TDX L2s are peers
        self.controls: dict[str, set[str]] = {L1: set(self.workloads)}
        for i, w in enumerate(self.workloads):
            self.controls[w] = set(self.workloads[i + 1 :]) if backend == "sev-snp" else set()
        self.contents: dict[int, bytes] = {}
        self.view = pages_of(self.p)

    # -- the reference's authority -----------------------------------------------------------
    def may_change(self, layer: str, page: int) -> bool:
        return layer == L1 or self.owner[page] in (None, layer)

    def may_touch_access(self, requester: str, target: str, page: int) -> bool:
        if requester == L1 or target in self.controls[requester]:
            return True
        return self.owner[page] == requester

    # -- running one operation and checking every effect ------------------------------------
    def run(self, op: Operation) -> OperationResult:
        before_total = (self.p.trace.total_primitives, self.p.trace.total_switches)
        try:
            res = self.p.run(op)
        except ConfigError:
            raise
        except CocopartError as err:  # pragma: no cover - a failure of the property
            raise AssertionError(f"{op.describe()} raised {err!r}") from err
        # trace sums and JSON round trip
        assert res.primitives == self.p.trace.total_primitives - before_total[0]
        assert res.world_switches == self.p.trace.total_switches - before_total[1]
        assert OperationResult.model_validate_json(res.model_dump_json()) == res
        self.check_effects(op, res)
        return res

    def check_effects(self, op: Operation, res: OperationResult) -> None:
        before, after = self.view, pages_of(self.p)
        rng: GpaRange | None = getattr(op, "range", None)
        lo, hi = (rng.start // PAGE_4K, rng.end // PAGE_4K) if rng else (0, 0)
        refused = res.error is not None and res.error.vendor == "cocopart-authority"
        changed_pages = [i for i in range(PAGES) if self.differs(before[i], after[i])]
        if refused or (res.status is Status.NOT_SUPPORTED):
            assert not changed_pages, (op.describe(), res.reason, changed_pages[:4])
        if res.status is Status.ERROR and res.progress is None and not res.changed:
            assert not changed_pages, (op.describe(), "error without progress changed state")
        for i in changed_pages:
            assert lo <= i < hi, f"{op.describe()} changed page {i:#x} outside its range"
            self.check_page_effect(op, i, before[i], after[i])
        if rng is not None and res.status in (Status.PARTIAL, Status.ERROR):
            self.check_progress(op, res, rng, before, after, changed_pages)
        # the reference's ownership follows the effects, then must equal the model's
        for i in changed_pages:
            b, a = before[i], after[i]
            claims = isinstance(op, ValidatePages) or (
                isinstance(op, ConvertPages) and op.to == "private"
            )
            if (
                claims
                and a.validated
                and self.owner[i] is None
                and (
                    (op.layer == L1 and not b.validated)
                    or (op.layer != L1 and a.acc(op.layer) and not b.acc(op.layer))
                )
            ):
                # a pool page validated for a layer becomes that layer's (l1's: assigned);
                # one a failed validate accepted for nobody (TDX L1's 4K fallback inside a
                # refused 2M entry, listed in ``changed``) stays in the pool
                self.owner[i], self.assigned[i] = op.layer, op.layer == L1
            elif ((b.validated and not a.validated) or (b.private and not a.private)) and (
                not self.assigned[i] or self.owner[i] == L1
            ):
                self.owner[i], self.assigned[i] = None, False
        for i in range(PAGES):
            want = self.owner[i] or L1
            assert after[i].owner == want, (op.describe(), i, after[i].owner, want)
        for i in list(self.contents):
            if self.p.machine.memory.read(i * PAGE_4K, 8) != self.contents[i]:
                assert lo <= i < hi and self.may_change(op.layer, i), (
                    f"{op.describe()} changed the bytes of page {i:#x} (owner {self.owner[i]})"
                )
                del self.contents[i]
        self.view = after

    @staticmethod
    def differs(b: PageState, a: PageState) -> bool:
        return (b.private, b.validated, b.access) != (a.private, a.validated, a.access)

    def check_page_effect(self, op: Operation, i: int, b: PageState, a: PageState) -> None:
        who = op.layer
        if (b.private, b.validated) != (a.private, a.validated):
            assert self.may_change(who, i), (
                f"{op.describe()} changed the state of page {i:#x} owned by {self.owner[i]}"
            )
        for w in self.workloads:
            gained, lost = a.acc(w) & ~b.acc(w), b.acc(w) & ~a.acc(w)
            if not (gained or lost):
                continue
            if isinstance(op, SetAccess):
                assert w == op.target and self.may_touch_access(who, w, i), (
                    f"{op.describe()} changed {w}'s access on page {i:#x}"
                )
                if who != L1 and gained:
                    assert b.acc(who) & gained == gained, "granted more than it holds"
            elif gained:
                assert w == who or who == L1, f"{op.describe()} gave {w} access to page {i:#x}"
            else:
                assert self.may_change(who, i), (
                    f"{op.describe()} took {w}'s access on page {i:#x} away"
                )

    def check_progress(
        self,
        op: Operation,
        res: OperationResult,
        rng: GpaRange,
        before: list[PageState],
        after: list[PageState],
        changed_pages: list[int],
    ) -> None:
        prog = res.progress
        done = prog.done_bytes if prog else 0
        if prog is not None:
            assert prog.next_gpa == rng.start + done
        assert (res.status is Status.PARTIAL) == (done > 0)
        first, nxt = rng.start // PAGE_4K, (rng.start + done) // PAGE_4K
        for i in range(first, nxt):  # the prefix has the operation's effect
            self.check_done(op, after[i], i)
        listed = {i for c in res.changed for i in range(c.start // PAGE_4K, c.end // PAGE_4K)}
        outside = {i for i in changed_pages if i >= nxt}
        assert listed == outside, (op.describe(), sorted(listed)[:4], sorted(outside)[:4])

    def check_done(self, op: Operation, a: PageState, i: int) -> None:
        if isinstance(op, ValidatePages) or (isinstance(op, ConvertPages) and op.to == "private"):
            assert a.private and a.validated, (op.describe(), i)
        elif isinstance(op, RescindPages):
            assert not a.validated, (op.describe(), i)
        elif isinstance(op, ConvertPages):
            assert not a.private, (op.describe(), i)
        elif isinstance(op, SetAccess) and a.private and a.validated:
            # (on a page not validated the permission may be recorded but is not usable)
            assert a.acc(op.target) == op.access, (op.describe(), i)

    def resume(self, op: Operation, res: OperationResult) -> None:
        """Re-running a partial operation from ``next_gpa`` completes it or stops at the
        same page for the same reason."""
        rng = getattr(op, "range", None)
        if res.status is not Status.PARTIAL or rng is None or res.progress is None:
            return
        nxt = res.progress.next_gpa
        assert nxt is not None and rng.start < nxt <= rng.end
        if nxt == rng.end:
            return
        again = self.run(op.model_copy(update={"range": GpaRange.of(nxt, rng.end - nxt)}))
        if not again.ok:  # the cause sits at next_gpa: the same failure, nothing done
            assert again.error is not None and res.error is not None
            assert (again.error.vendor, again.error.code) == (res.error.vendor, res.error.code), (
                again
            )
            assert again.progress is None or again.progress.done_bytes == 0, again

    # -- rules -------------------------------------------------------------------------------
    def layer_of(self, data: st.DataObject, with_l1: bool = True) -> str:
        choices = list(self.workloads) + ([L1] if with_l1 else [])
        return data.draw(st.sampled_from(choices))

    @rule(data=st.data(), r=page_ranges)
    def validate(self, data: st.DataObject, r: tuple[int, int]) -> None:
        who = self.layer_of(data)
        op = ValidatePages(layer=who, range=GpaRange.of(r[0] * PAGE_4K, r[1] * PAGE_4K))
        if not self.refused(op, who, r):
            self.resume(op, self.run(op))

    @rule(data=st.data(), r=page_ranges)
    def rescind(self, data: st.DataObject, r: tuple[int, int]) -> None:
        who = self.layer_of(data)
        op = RescindPages(layer=who, range=GpaRange.of(r[0] * PAGE_4K, r[1] * PAGE_4K))
        if not self.refused(op, who, r):
            self.resume(op, self.run(op))

    @rule(data=st.data(), r=page_ranges, to=st.sampled_from(["shared", "private"]))
    def convert(self, data: st.DataObject, r: tuple[int, int], to: str) -> None:
        who = self.layer_of(data)
        op = ConvertPages(layer=who, range=GpaRange.of(r[0] * PAGE_4K, r[1] * PAGE_4K), to=to)  # type: ignore[arg-type]
        if not self.refused(op, who, r):
            self.resume(op, self.run(op))

    @rule(data=st.data(), r=page_ranges, access=st.sampled_from(ACCESSES))
    def set_access(self, data: st.DataObject, r: tuple[int, int], access: Access) -> None:
        who = self.layer_of(data)
        target = self.layer_of(data, with_l1=False)
        op = SetAccess(
            layer=who,
            target=target,
            access=access,
            range=GpaRange.of(r[0] * PAGE_4K, r[1] * PAGE_4K),
        )
        res = self.run(op)
        pages = range(r[0], r[0] + r[1])
        if who != L1 and not all(self.may_touch_access(who, target, i) for i in pages):
            assert not res.ok and res.status in (Status.ERROR, Status.NOT_SUPPORTED)
        self.resume(op, res)

    def refused(self, op: Operation, who: str, r: tuple[int, int]) -> bool:
        """A state change over pages another layer owns is refused before anything runs."""
        if all(self.may_change(who, i) for i in range(r[0], r[0] + r[1])):
            return False
        res = self.run(op)
        assert res.error is not None and res.error.vendor == "cocopart-authority", res
        assert res.error.mnemonic == "STATE_CHANGE_NEEDS_OWNERSHIP"
        assert res.primitives == res.world_switches == 0 and res.progress is None
        return True

    @rule(data=st.data(), vcpu=st.integers(0, 2), create=st.booleans())
    def vcpu(self, data: st.DataObject, vcpu: int, create: bool) -> None:
        target = self.layer_of(data, with_l1=False)
        who = data.draw(st.sampled_from([target, L1]))
        op = (
            CreateVcpu(layer=who, target=target, vcpu=vcpu)
            if create
            else DeleteVcpu(layer=who, target=target, vcpu=vcpu)
        )
        res = self.run(op)
        if not create and vcpu == 0:
            assert res.error is not None and res.error.mnemonic == "BSP_KEEPS_RUNNING"

    @rule(data=st.data(), vector=st.sampled_from([0x20, 0x31, 0xEC]))
    def interrupt(self, data: st.DataObject, vector: int) -> None:
        target = self.layer_of(data, with_l1=False)
        running = [v.vcpu for v in self.p.vcpus() if v.layer == target and v.state == "running"]
        vcpu = data.draw(st.sampled_from(running or [0]))
        self.run(InjectInterrupt(layer="host", target=target, vcpu=vcpu, vector=vector))
        self.run(EndOfInterrupt(layer=target, target=target, vcpu=vcpu))

    @rule(data=st.data(), page=st.integers(0, PAGES - 1))
    def write(self, data: st.DataObject, page: int) -> None:
        """A layer writes a page it may write itself (its bytes are then watched)."""
        who = self.layer_of(data, with_l1=False)
        if not self.view[page].private:
            # shared memory is the host's as much as the guest's; and on SNP a guest access
            # to a page the host holds, through a C=1 mapping, is an implicit page-state
            # change (issue 13 point 6) — not a probe
            return
        if self.p.machine.access(who, page * PAGE_4K, Access.WRITE).ok:
            blob = f"{who}:{page:05x}".encode().ljust(8, b".")[:8]
            self.p.machine.memory.write(page * PAGE_4K, blob)
            self.contents[page] = blob

    @rule()
    def out_of_ram_is_a_config_error(self) -> None:
        for op in (
            ValidatePages(layer="l2.1", range=GpaRange.of(MEM - PAGE_4K, 2 * PAGE_4K)),
            ConvertPages(layer=L1, range=GpaRange.of(MEM, PAGE_4K), to="shared"),
        ):
            with pytest.raises(ConfigError):
                self.p.run(op)

    # -- invariants --------------------------------------------------------------------------
    @invariant()
    def consistent_states(self) -> None:
        if not hasattr(self, "p"):
            return
        m = self.p.machine
        for i, s in enumerate(self.view):
            if (not s.private or not s.validated) and s.access:
                # a permission may be recorded (SNP RMPADJUST on an assigned page that is not
                # validated), but the page must not be reachable: #VC 0x404 / EPT violation
                for w in s.access:
                    assert not m.access(w, i * PAGE_4K, Access.READ).ok, (
                        f"page {i:#x} is shared or not validated but {w} reaches it"
                    )

    @invariant()
    def contexts_never_writable(self) -> None:
        if not hasattr(self, "p"):
            return
        m = self.p.machine
        for v in self.p.vcpus():
            assert v.context_gpa is not None
            for w in self.workloads:
                assert not m.access(w, v.context_gpa, Access.WRITE).ok, (w, v)


class AuthoritySnp(Authority):
    BACKEND = "sev-snp"


class AuthorityTdx(Authority):
    BACKEND = "tdx"


#: COCOPART_AUTHORITY_NOSHRINK=1 reports the first failing sequence as found (long runs)
PHASES = [
    ph for ph in Phase if not (os.environ.get("COCOPART_AUTHORITY_NOSHRINK") and ph is Phase.shrink)
]
SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    phases=PHASES,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
TestAuthoritySnp = AuthoritySnp.TestCase
TestAuthoritySnp.settings = SETTINGS
TestAuthorityTdx = AuthorityTdx.TestCase
TestAuthorityTdx.settings = SETTINGS

"""Isolation as a property (hypothesis state machine): for random sequences of validate,
rescind, convert, set-access (from L1 and from L2s), vCPU creation and deletion on a TD with two
L2 VMs,

* no L2 can touch a page beyond what an independent per-page reference says its attributes
  allow (the model's memory view and access checks equal the reference),
* no L2 ever grants itself access (its own ATTR.WR request is refused unless it lowers access),
* L2 vCPU state (each live vCPU's L2_ENTER_GUEST_STATE page) is never reachable by any L2 nor
  shared with the host.

The reference is a plain list per page, written from the operations' meaning — not from the
model's range maps.
"""

from __future__ import annotations

import pytest
from cocopart_tdx import host_faults as hf
from cocopart_tdx.sept import NO_ALIAS
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from cocopart.errors import ConfigError
from cocopart.model import Access
from cocopart.ops import (
    ConvertPages,
    CreateVcpu,
    DeleteVcpu,
    OperationResult,
    RescindPages,
    SetAccess,
    ValidatePages,
)
from cocopart.partition import Partition

from .tdx_helpers import MIB, PAGE_4K, guest, machine, rng

MEM = 8 * MIB
PAGES = MEM // PAGE_4K
LAYERS = ("l2.1", "l2.2")
NONE = Access.NONE
RWX = Access.RWX
ACCESSES = [
    Access.NONE,
    Access.READ,
    Access.RW,
    Access.READ | Access.SUPERVISOR_EXEC,
    Access.RWX,
    Access.WRITE,
]
BITS = [Access.READ, Access.WRITE, Access.USER_EXEC, Access.SUPERVISOR_EXEC]

ranges = st.tuples(
    st.sampled_from([0, 1, 2, 511, 512, 1024, 1536, 2000]),
    st.sampled_from([1, 2, 7, 512, 513, 1024, 2048]),
).map(lambda t: (t[0], min(t[1], PAGES - t[0])))


class TdIsolation(RuleBasedStateMachine):
    """Random operations against a 8 MiB TD with two L2 VMs, checked against a reference."""

    p: Partition

    @initialize(mapping=st.sampled_from(["4K", "2M"]), module=st.sampled_from(["1.5", "2.0"]))
    def start(self, mapping: str, module: str) -> None:
        self.p = guest(MEM, vcpus=3, layers=2, host_mapping=mapping, module=module)
        self.module = module
        self.accepted = [False] * PAGES
        self.shared = [False] * PAGES
        self.acc = {layer: [NONE] * PAGES for layer in LAYERS}
        #: page owner (docs/authority.md): None = l1's pool, else the workload that claimed it
        self.owner: list[str | None] = [None] * PAGES

    def may_change(self, layer: str, first: int, n: int) -> bool:
        """RULE STATE_CHANGE_NEEDS_OWNERSHIP: own or pool pages only."""
        return all(self.owner[i] in (None, layer) for i in range(first, first + n))

    def refused(self, res: OperationResult) -> None:
        assert res.error is not None and res.error.vendor == "cocopart-authority", res
        assert res.primitives == res.world_switches == 0 and res.progress is None

    # -- helpers ---------------------------------------------------------------------------
    def done_pages(self, r: OperationResult, first: int, count: int) -> int:
        if r.ok:
            return count
        return (r.progress.done_bytes // PAGE_4K) if r.progress else 0

    def settle_failed_entry(self, first: int, done: int, end: int) -> None:
        """A protocol entry that failed part-way may have had some of its pages accepted by
        L1 (a 2M entry falls back to 4K accepts) without any grant: take "accepted" for the
        rest of the range from the model; access stays what the reference says."""
        lo, hi = (first + done) * PAGE_4K, end * PAGE_4K
        if lo < hi:
            for run in self.p.memory_view(lo, hi):
                for i in range(run.start // PAGE_4K, run.end // PAGE_4K):
                    self.accepted[i] = run.validated

    # -- rules -------------------------------------------------------------------------------
    @rule(layer=st.sampled_from(LAYERS), r=ranges)
    def validate(self, layer: str, r: tuple[int, int]) -> None:
        first, n = r
        res = self.p.run(ValidatePages(layer=layer, range=rng(first * PAGE_4K, n * PAGE_4K)))
        if not self.may_change(layer, first, n):
            return self.refused(res)
        done = self.done_pages(res, first, n)
        for i in range(first, first + done):
            # a shared page is converted implicitly by the QEMU/KVM host (issue 14 point 3)
            self.shared[i] = False
            self.accepted[i] = True
            self.acc[layer][i] = RWX
            self.owner[i] = layer
        if not res.ok:
            self.settle_failed_entry(first, done, first + n)

    @rule(r=ranges, grantee=st.sampled_from(LAYERS), access=st.sampled_from(ACCESSES))
    def set_access_by_l1(self, r: tuple[int, int], grantee: str, access: Access) -> None:
        target = grantee
        first, n = r
        res = self.p.run(
            SetAccess(
                layer="l1", range=rng(first * PAGE_4K, n * PAGE_4K), target=target, access=access
            )
        )
        if access == Access.WRITE:
            assert not res.ok  # W requires R
        for i in range(first, first + self.done_pages(res, first, n)):
            self.acc[target][i] = access

    @rule(
        layer=st.sampled_from(LAYERS),
        grantee=st.sampled_from(LAYERS),
        r=ranges,
        access=st.sampled_from(ACCESSES),
    )
    def set_access_by_l2(
        self, layer: str, grantee: str, r: tuple[int, int], access: Access
    ) -> None:
        target = grantee
        first, n = r
        before = [self.view(target, i) for i in range(first, first + n)]
        res = self.p.run(
            SetAccess(
                layer=layer, range=rng(first * PAGE_4K, n * PAGE_4K), target=target, access=access
            )
        )
        if any(self.owner[i] != layer for i in range(first, first + n)):
            return self.refused(res)  # RULE PEER_ACCESS_NEEDS_OWNERSHIP
        done = self.done_pages(res, first, n)
        for k, i in enumerate(range(first, first + done)):
            held = self.view(layer, i) if layer != target else before[k]
            assert access & ~held == NONE, "an L2 granted access it does not hold"
            self.acc[target][i] = access
        if layer == target:
            for k, i in enumerate(range(first, first + n)):
                assert self.view(target, i) & ~before[k] == NONE, "an L2 granted itself access"

    @rule(layer=st.sampled_from(LAYERS), r=ranges, to=st.sampled_from(["shared", "private"]))
    def convert(self, layer: str, r: tuple[int, int], to: str) -> None:
        first, n = r
        res = self.p.run(ConvertPages(layer=layer, range=rng(first * PAGE_4K, n * PAGE_4K), to=to))  # type: ignore[arg-type]
        if not self.may_change(layer, first, n):
            return self.refused(res)
        if to == "shared":
            assert res.ok, res
            for i in range(first, first + n):
                self.shared[i], self.accepted[i] = True, False
                self.owner[i] = None  # back to the pool
                for a in self.acc.values():
                    a[i] = NONE
        elif res.ok:
            for i in range(first, first + n):
                self.shared[i], self.accepted[i] = False, True
                self.acc[layer][i] = RWX
                self.owner[i] = layer
        else:  # MapGPA done, the accept stopped at a page already accepted
            done = self.done_pages(res, first, n)
            for i in range(first, first + n):
                self.shared[i] = False
            for i in range(first, first + done):
                self.accepted[i] = True
                self.acc[layer][i] = RWX
                self.owner[i] = layer
            self.settle_failed_entry(first, done, first + n)

    @rule(layer=st.sampled_from(LAYERS), r=ranges)
    def rescind(self, layer: str, r: tuple[int, int]) -> None:
        first, n = r
        res = self.p.run(RescindPages(layer=layer, range=rng(first * PAGE_4K, n * PAGE_4K)))
        if not self.may_change(layer, first, n):
            return self.refused(res)
        if self.module == "1.5":
            assert res.status.value == "not-supported"
            return
        for i in range(first, first + self.done_pages(res, first, n)):
            self.accepted[i] = False
            self.owner[i] = None
            for a in self.acc.values():
                a[i] = NONE

    @rule(layer=st.sampled_from(LAYERS), vcpu=st.integers(1, 2), create=st.booleans())
    def vcpu(self, layer: str, vcpu: int, create: bool) -> None:
        op = (
            CreateVcpu(layer=layer, target=layer, vcpu=vcpu)
            if create
            else DeleteVcpu(layer=layer, target=layer, vcpu=vcpu)
        )
        self.p.run(op)

    @rule(layer=st.sampled_from(LAYERS + ("l1",)), grantee=st.sampled_from(LAYERS))
    def try_to_reach_vcpu_state(self, layer: str, grantee: str) -> None:
        target = grantee
        for v in self.p.vcpus():
            assert v.context_gpa is not None
            page = rng(v.context_gpa, PAGE_4K)  # above guest RAM: RULE_RANGE_INSIDE_RAM
            for op in (
                SetAccess(layer=layer, range=page, target=target, access="rw"),
                ValidatePages(layer=layer, range=page),
                ConvertPages(layer=layer, range=page, to="shared"),
            ):
                with pytest.raises(ConfigError):
                    self.p.run(op)

    @rule(layer=st.sampled_from(LAYERS), page=st.integers(0, PAGES - 1), bit=st.sampled_from(BITS))
    def touch(self, layer: str, page: int, bit: Access) -> None:
        out = machine(self.p).access(layer, page * PAGE_4K, bit)
        if self.shared[page]:  # the host's shared EPT: L2_CTLS.ENABLE_SHARED_EPTP (issue 14)
            assert out.ok
            return
        assert out.ok == bool(self.view(layer, page) & bit)

    # -- the reference ----------------------------------------------------------------------
    def view(self, layer: str, page: int) -> Access:
        if self.shared[page] or not self.accepted[page]:
            return NONE
        return self.acc[layer][page]

    @invariant()
    def memory_view_equals_reference(self) -> None:
        for run in self.p.memory_view():
            for i in range(run.start // PAGE_4K, run.end // PAGE_4K):
                assert run.private == (not self.shared[i])
                assert run.validated == self.accepted[i]
                for layer in LAYERS:
                    want = self.view(layer, i)
                    got = run.access.get(layer)
                    assert (got or NONE.short()) == want.short(), (i, layer, got, want)

    @invariant()
    def l2_state_is_never_shared(self) -> None:
        m = machine(self.p)
        s = m.module.sept
        for v in self.p.vcpus():
            gpa = v.context_gpa
            assert gpa is not None and not m.host.shared.get(gpa)
            assert s.entry(gpa).state.name == "MAPPED"
            for vm in s.l2:
                assert s.alias(vm, gpa) == NO_ALIAS
            for layer in LAYERS:
                assert not m.access(layer, gpa, Access.READ).ok
            assert hf.host_read(m, gpa, 16).data == bytes(16)  # zeros, never plaintext


TestTdIsolation = TdIsolation.TestCase
TestTdIsolation.settings = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

"""Isolation property (hypothesis state machine): random operations from random layers — the
neutral API, plus workloads executing PVALIDATE/RMPADJUST themselves and a host reclaiming
pages — never let a layer touch a page outside its permissions, never let a layer gain a
permission nobody legitimately granted it, never let VMPL>0 validate a page, and never leave
a VMSA page shared or usable by a lower VMPL.

The test keeps its own upper bound of what each workload layer may hold on each page
(``bound``): validating a range grants the validator everything; setting access grants the
target at most what the requester could hold; nothing else grants anything. The machine's
permissions must always stay inside that bound.
"""

from __future__ import annotations

from typing import Any

from cocopart_sev_snp import instructions as ins
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from snp_helpers import MIB, guest, machine

from cocopart.model import PAGE_2M, PAGE_4K, Access, GpaRange
from cocopart.ops import (
    CreateVcpu,
    DeleteVcpu,
    RescindPages,
    SetAccess,
    ValidatePages,
)
from cocopart.ranges import RangeMap

MEMORY = 16 * MIB
PAGES = MEMORY // PAGE_4K
RWX = int(Access.RWX)
Bound = tuple[int, int, int]  # per workload layer index: the most it may hold

ranges = st.one_of(
    st.tuples(st.integers(0, 7), st.integers(1, 3)).map(
        lambda t: (t[0] * PAGE_2M, min(t[1], 8 - t[0]) * PAGE_2M)
    ),
    st.tuples(st.integers(0, PAGES - 1), st.integers(1, 700)).map(
        lambda t: (t[0] * PAGE_4K, min(t[1], PAGES - t[0]) * PAGE_4K)
    ),
)
accesses = st.sampled_from([0, 1, 3, 5, 9, 15])


def _merge(
    a: list[tuple[int, int, Any]], b: list[tuple[int, int, Any]]
) -> list[tuple[int, int, Any, Any]]:
    """Overlay two complete run lists over the same space."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s = max(a[i][0], b[j][0])
        e = min(a[i][1], b[j][1])
        out.append((s, e, a[i][2], b[j][2]))
        if a[i][1] == e:
            i += 1
        if b[j][1] == e:
            j += 1
    return out


class SnpIsolation(RuleBasedStateMachine):
    @initialize(layers=st.integers(1, 3), host_4k=st.booleans(), owner=st.integers(0, 3))
    def start(self, layers: int, host_4k: bool, owner: int) -> None:
        self.p = guest(
            MEMORY,
            vcpus=3,
            workload_layers=layers,
            backend_options={"host_page_size": "4K" if host_4k else "2M"},
        )
        self.m = machine(self.p)
        self.layers = list(self.m.workloads)
        total = self.m.layout.total
        self.bound: RangeMap[Bound] = RangeMap(total, (0, 0, 0))
        for i, _layer in enumerate(self.layers):  # the SVSM set up each layer's own pages
            s, e = self.m.layout.layer_region(i)
            self._grant(s, e, i, RWX)
        if owner < layers:  # most runs start from a guest whose RAM one layer validated
            first = self.layers[owner]
            assert self.p.run(ValidatePages(layer=first, range=GpaRange.of(0, MEMORY))).ok
            self._grant(0, MEMORY, owner, RWX)

    # -- the bound ---------------------------------------------------------------------------
    def _grant(
        self, s: int, e: int, idx: int, mask: int | None = None, limit_from: int | None = None
    ) -> None:
        """Raise ``bound[idx]`` by ``mask``, limited by what layer ``limit_from`` may hold."""

        def up(b: Bound) -> Bound:
            add = mask if mask is not None else 0
            if limit_from is not None:
                add &= b[limit_from]
            v = list(b)
            v[idx] |= add
            return (v[0], v[1], v[2])

        self.bound.update(s, e, up)

    def _layer_choice(self, data: st.DataObject, with_l1: bool = True) -> str:
        return str(data.draw(st.sampled_from((["l1"] if with_l1 else []) + self.layers)))

    # -- rules: the neutral API --------------------------------------------------------------
    @rule(data=st.data(), r=ranges)
    def validate(self, data: st.DataObject, r: tuple[int, int]) -> None:
        layer = self._layer_choice(data)
        self.p.run(ValidatePages(layer=layer, range=GpaRange.of(*r)))
        if layer != "l1":
            self._grant(r[0], r[0] + r[1], self.layers.index(layer), RWX)

    @rule(data=st.data(), r=ranges)
    def rescind(self, data: st.DataObject, r: tuple[int, int]) -> None:
        self.p.run(RescindPages(layer=self._layer_choice(data), range=GpaRange.of(*r)))

    @rule(data=st.data(), r=ranges, to=st.sampled_from(["shared", "private"]))
    def convert(self, data: st.DataObject, r: tuple[int, int], to: str) -> None:
        layer = self._layer_choice(data)
        self.p.run(
            {"op": "convert", "layer": layer, "range": {"start": r[0], "size": r[1]}, "to": to}
        )
        if to == "private" and layer != "l1":
            self._grant(r[0], r[0] + r[1], self.layers.index(layer), RWX)

    @rule(data=st.data(), r=ranges, access=accesses)
    def set_access(self, data: st.DataObject, r: tuple[int, int], access: int) -> None:
        layer = self._layer_choice(data)
        target = self._layer_choice(data, with_l1=False)
        self.p.run(SetAccess(layer=layer, range=GpaRange.of(*r), target=target, access=access))
        limit = None if layer == "l1" else self.layers.index(layer)
        self._grant(r[0], r[0] + r[1], self.layers.index(target), access, limit)

    @rule(data=st.data(), vcpu=st.integers(1, 2), delete=st.booleans())
    def vcpu(self, data: st.DataObject, vcpu: int, delete: bool) -> None:
        layer = self._layer_choice(data)
        target = layer if layer != "l1" else self._layer_choice(data, with_l1=False)
        op = DeleteVcpu if delete else CreateVcpu
        self.p.run(op(layer=layer, target=target, vcpu=vcpu))

    # -- rules: below the API ----------------------------------------------------------------
    @rule(data=st.data(), r=ranges, validate=st.booleans())
    def workload_executes_pvalidate(
        self, data: st.DataObject, r: tuple[int, int], validate: bool
    ) -> None:
        layer = self._layer_choice(data, with_l1=False)
        before = self.m.rmp.map.items()
        res = ins.pvalidate(
            self.m.rmp,
            asid=self.m.asid,
            vmpl=self.m.vmpls[layer],
            gpa=r[0],
            page_2m=False,
            count=r[1] // PAGE_4K,
            validate=validate,
        )
        assert res.fault == "#GP(0)" and res.done == 0
        assert self.m.rmp.map.items() == before

    @rule(data=st.data(), r=ranges, vmpl=st.integers(1, 3), perms=accesses, vmsa=st.booleans())
    def workload_executes_rmpadjust(
        self, data: st.DataObject, r: tuple[int, int], vmpl: int, perms: int, vmsa: bool
    ) -> None:
        target = vmpl
        layer = self._layer_choice(data, with_l1=False)
        own = self.m.vmpls[layer]
        big = r[0] % PAGE_2M == 0 and r[1] % PAGE_2M == 0
        size = PAGE_2M if big else PAGE_4K
        res = ins.rmpadjust(
            self.m.rmp,
            asid=self.m.asid,
            vmpl=own,
            gpa=r[0],
            page_2m=big,
            count=r[1] // size,
            target_vmpl=target,
            perms=perms,
            vmsa=vmsa,
        )
        if target <= own:
            assert res.rc == ins.RmpRc.FAIL_PERMISSION and res.done == 0
        owner = next((w for w, v in self.m.vmpls.items() if v == target), None)
        if owner is not None:
            self._grant(
                r[0], r[0] + r[1], self.layers.index(owner), perms, self.layers.index(layer)
            )

    @rule(start=st.integers(0, 1 << 30), n=st.integers(1, 600))
    def host_reclaims_pages(self, start: int, n: int) -> None:
        total = self.m.layout.total // PAGE_4K
        first = start % total
        self.m.host.make_shared(first * PAGE_4K, False, min(n, total - first))

    # -- invariants --------------------------------------------------------------------------
    @invariant()
    def permissions_stay_inside_what_was_legitimately_granted(self) -> None:
        rmp = list(self.m.rmp.runs(0, self.m.layout.total))
        bound = list(self.bound.runs(0, self.m.layout.total))
        for s, e, entry, b in _merge(rmp, bound):
            for i, layer in enumerate(self.layers):
                held = entry.perm(self.m.vmpls[layer])
                assert held & ~b[i] == 0, (layer, hex(s), hex(e), entry, b)

    @invariant()
    def only_the_svsm_ever_executes_pvalidate(self) -> None:
        t = self.p.trace
        assert t.count("PVALIDATE") == t.count("PVALIDATE", issuer="l1")

    @invariant()
    def vmsa_pages_are_private_validated_and_closed_to_lower_vmpls(self) -> None:
        for s, _e, entry in self.m.rmp.runs(0, self.m.layout.total):
            if entry.vmsa:
                assert entry.owned_by(self.m.asid) and entry.validated, hex(s)
                assert entry.perms == (0, 0, 0), hex(s)
        for ctx in self.m.host.contexts.values():
            assert self.m.rmp_entry(ctx.vmsa_gpa).vmsa

    @invariant()
    def access_matches_the_neutral_memory_view(self) -> None:
        view = self.p.memory_view(0, self.m.layout.total)
        for run in view[:: max(1, len(view) // 8)]:
            for layer in self.layers:
                for bit, letter in (
                    (Access.READ, "r"),
                    (Access.WRITE, "w"),
                    (Access.SUPERVISOR_EXEC, "s"),
                ):
                    # shared memory through a C=0 mapping, private through C=1 (an access
                    # with the other C-bit faults: RULE_C_BIT_SELECTS_THE_CHECK)
                    out = self.m.access(layer, run.start, bit, c_bit=run.private)
                    expect = not run.private or (
                        run.validated and letter in run.access.get(layer, "")
                    )
                    assert out.ok == expect, (layer, run, bit, out)


SnpIsolation.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSnpIsolation = SnpIsolation.TestCase

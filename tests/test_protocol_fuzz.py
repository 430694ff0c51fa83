"""Protocol fuzz of the privileged layer (issue 11): random buffers and registers into the
dispatcher through the real L2 -> L1 path, on both backends.

The generator and the checks live in ``bench/fuzz_protocol.py`` (the long run: ``python
bench/fuzz_protocol.py --calls 100000``); here hypothesis drives every random choice of the
generator (``st.randoms``) and the setup (2-3 workload layers, interrupt mode, backend
options) with a bounded budget: ``PROTOCOL_FUZZ_EXAMPLES`` partitions (default 10) of
``PROTOCOL_FUZZ_CALLS`` calls (default 50) per backend. After every call: no exception or
hang, a defined result code, call_pending clear, no byte or state change of a page the caller
does not own; after the run every layer still validates its own pages and attests.

The tests at the end reproduce library bugs the fuzz found, now fixed.
"""

from __future__ import annotations

import importlib.util
import os
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocopart import Attest, GpaRange, Partition, RescindPages, ValidatePages
from cocopart.model import PAGE_2M, PAGE_4K, Access
from cocopart.ops import Status
from cocopart.protocol import pvalidate as pv
from cocopart.protocol.call import Registers
from cocopart.protocol.ids import CoreCall, ProtocolId, ResultCode
from cocopart.service.dispatcher import CallContext

BENCH = Path(__file__).resolve().parents[1] / "bench" / "fuzz_protocol.py"


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_protocol", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


fp = _load_bench()

EXAMPLES = int(os.environ.get("PROTOCOL_FUZZ_EXAMPLES", "10"))
CALLS = int(os.environ.get("PROTOCOL_FUZZ_CALLS", "50"))
both = pytest.mark.parametrize("backend", fp.BACKENDS)


@both
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(rng=st.randoms(use_true_random=False))
def test_protocol_fuzz_no_exception_hang_out_of_set_code_or_cross_layer_effect(
    backend: str, rng: random.Random
) -> None:
    """Every call keeps the invariants of bench/fuzz_protocol.py (check_call) and every layer
    can still validate and attest afterwards (check_not_stuck)."""
    layers, mode, options = fp.random_setup(rng, backend)
    t = fp.Target(backend, layers, mode, options)
    rep = fp.fuzz(t, rng, CALLS, timeout=10)
    rep.violations += fp.check_not_stuck(t)
    assert rep.calls == CALLS
    assert not rep.violations, f"{t.setup}\n" + "\n".join(rep.violations[:3])


@both
def test_protocol_fuzz_reaches_the_handlers(backend: str) -> None:
    """The generator is not vacuous: with a fixed seed, 400 calls on a 3-layer guest with
    APIC emulation succeed at least once in each protocol's main calls and fail in the
    protocol's own ways too."""
    t = fp.Target(backend, 3, "alternate")
    rep = fp.fuzz(t, random.Random(f"reach:{backend}"), 400)
    assert not rep.violations, "\n".join(rep.violations[:3])
    ok = {name for (name, result), _n in rep.by_call.items() if result == "SUCCESS"}
    assert {
        "CORE.PVALIDATE",
        "CORE.REMAP_CA",
        "CORE.QUERY_PROTOCOL",
        "ATTEST.ATTEST_SERVICES",
        "ATTEST.ATTEST_SINGLE_SERVICE",
        "VTPM.CMD",
        "APIC.QUERY_FEATURES",
    } <= ok
    assert {
        "UNSUPPORTED_PROTOCOL",
        "UNSUPPORTED_CALL",
        "INVALID_ADDRESS",
        "INVALID_PARAMETER",
    } <= set(rep.codes)


# -- the checks catch what they are for ------------------------------------------------------
@both
def test_checks_catch_a_confused_deputy_an_out_of_set_code_and_a_state_change(backend: str) -> None:
    """A planted protocol 0x77 whose call 0 misbehaves on l2.1's behalf over l2.2's page:
    each misbehaviour is a violation for :func:`check_call`."""
    t = fp.Target(backend, 2, "restricted")
    victim = t.ram_pages["l2.2"][0]
    c = fp.Call("l2.1", 0, 0x77, 0, victim, 0, 0)

    def overwrite(ctx: CallContext) -> int:
        ctx.memory.write(ctx.regs.rcx, b"pwned")
        return ResultCode.SUCCESS

    def odd_code(_ctx: CallContext) -> int:
        return 0x1234

    def grant_caller(ctx: CallContext) -> int:
        ctx.platform.set_access(ctx.layer, ctx.regs.rcx, PAGE_4K, 1, Access.RW)
        return ResultCode.SUCCESS

    for handler, expect in (
        (overwrite, "changed the bytes of the page"),
        (odd_code, "not a defined or protocol-specific code"),
        (grant_caller, "changed the state of pages it does not own"),
    ):
        t.service.protocols[0x77] = {0: handler}
        before = fp.snapshot(t, c)
        found = fp.check_call(t, c, before, fp.execute(t, c))
        assert any(expect in v for v in found), (handler.__name__, found)


# -- bugs the fuzz found (fixed; kept as regression tests) ---------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sev-snp", "tdx"])
def test_a_vcpu_created_through_the_protocol_can_call(backend: str) -> None:
    """CREATE_VCPU of l2.1's vCPU 1 with a context page of its own RAM (on SNP a copy of its
    VMSA, which passes the SVSM's checks) succeeds and the vCPU is running; then a call from
    it is serviced like a call from vCPU 0 (sev-snp.md §2 CREATE_VCPU; tdx.md §6)."""
    t = fp.Target(backend, 2, "restricted")
    ctx = PAGE_2M + 5 * PAGE_4K  # validated 4K page of l2.1's own RAM
    t.memory.write(ctx, t.memory.read(t.layout.context(0, 0), PAGE_4K))
    out = t.call(
        "l2.1", 0, Registers.call(ProtocolId.CORE, CoreCall.CREATE_VCPU, ctx, t.layout.caa(0, 1), 1)
    )
    assert out.code == ResultCode.SUCCESS
    assert ("l2.1", 1, "running") in {(v.layer, v.vcpu, v.state) for v in t.p.vcpus()}
    query = t.call("l2.1", 1, Registers.call(ProtocolId.CORE, CoreCall.QUERY_PROTOCOL, 1))
    assert query.code == ResultCode.SUCCESS, query.notes
    assert query.regs.rcx == (1 << 32) | 1


def test_snp_rescind_of_a_2m_entry_over_4k_pages_answers_sizemismatch() -> None:
    """With 4 KiB host pages, ValidatePages of 2 MiB leaves 4K RMP entries. A PVALIDATE
    rescind entry of 2M over them is FAIL_SIZEMISMATCH (RMPADJUST and PVALIDATE both
    answer it, sev-snp.md §4.3), which the client redoes as 4K entries (sev-snp.md §2.1),
    so RescindPages of the range it validated succeeds."""
    p = Partition(
        {
            "memory": "64MiB",
            "vcpus": 1,
            "workload_layers": 1,
            "backend_options": {"host_page_size": "4K"},
        },
        backend="sev-snp",
    )
    base = 8 << 20
    assert p.run(ValidatePages(layer="l2.1", range=GpaRange.of(base, PAGE_2M))).ok
    caa = p.machine.service.state.caa("l2.1", 0)
    p.machine.memory.write(caa + 8, pv.encode([pv.entry(base, True, validate=False)]))
    out = p.machine.transport.call(
        "l2.1", 0, Registers.call(ProtocolId.CORE, CoreCall.PVALIDATE, caa + 8)
    )
    assert out.code == ResultCode.PVALIDATE_FAIL_SIZEMISMATCH
    r = p.run(RescindPages(layer="l2.1", range=GpaRange.of(base, PAGE_2M)))
    assert r.ok, r.reason


def test_tdx_a_failed_operation_reports_its_own_error_not_another_layers() -> None:
    """l2.1 makes a raw PVALIDATE rescind (module 1.5: UNSUPPORTED_CALL, no RELEASE leaf).
    l2.2 then moves its calling area onto its own report buffer, so its Attest fails for its
    own reason; that failure must not carry l2.1's error."""
    p = Partition(fp.fuzz_config(2, "restricted", {"module": "1.5"}), backend="tdx")
    m = p.machine
    caa = m.service.state.caa("l2.1", 0)
    m.memory.write(caa + 8, pv.encode([pv.entry(0, False, validate=False)]))
    out = m.transport.call("l2.1", 0, Registers.call(ProtocolId.CORE, CoreCall.PVALIDATE, caa + 8))
    assert out.code == ResultCode.UNSUPPORTED_CALL
    out = m.transport.call(
        "l2.2", 0, Registers.call(ProtocolId.CORE, CoreCall.REMAP_CA, m.layout.scratch(1, 0))
    )
    assert out.code == ResultCode.SUCCESS
    r = p.run(Attest(layer="l2.2", report_data=None))
    assert r.status is Status.ERROR
    assert "RELEASE" not in (r.reason or ""), r.reason

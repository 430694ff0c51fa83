"""The sev-snp backend through the plug-in contract: options, layers and VMPLs, the layer
graph (routes and TCBs), capabilities, costs, and every operation type."""

from __future__ import annotations

from typing import Any

import pytest
from cocopart_sev_snp.backend import DEFAULT_WORKLOAD_VMPLS, SevSnpBackend, parse_options
from snp_helpers import MIB, guest, machine, rng, validated

from cocopart.errors import ConfigError, NotSupportedError
from cocopart.model import PartitionConfig
from cocopart.ops import (
    OPERATION_TYPES,
    Attest,
    ConfigureInterrupts,
    ConvertPages,
    ExtendMeasurement,
    InjectInterrupt,
    Status,
    ValidatePages,
)
from cocopart.registry import load_backend
from cocopart.vtpm_commands import parse_pcr_read, pcr_read


def test_the_entry_point_loads_the_backend() -> None:
    b = load_backend("sev-snp")
    assert isinstance(b, SevSnpBackend)
    assert (b.name, b.vendor, b.distribution) == ("sev-snp", "amd", "cocopart-sev-snp")


@pytest.mark.parametrize("n, vmpls", sorted(DEFAULT_WORKLOAD_VMPLS.items()))
def test_default_workload_vmpls(n: int, vmpls: tuple[int, ...]) -> None:
    p = guest(workload_layers=n)
    names = {layer.name: (layer.vendor_name, layer.level) for layer in p.layers}
    for i, v in enumerate(vmpls):
        assert names[f"l2.{i + 1}"] == (f"VMPL{v}", v)
    assert names["l1"] == ("VMPL0", 0) and "vtpm" in names
    assert DEFAULT_WORKLOAD_VMPLS == {1: (2,), 2: (1, 2), 3: (1, 2, 3)}


def test_workload_vmpls_option_overrides_and_is_validated() -> None:
    p = guest(workload_layers=2, backend_options={"workload_vmpls": [3, 1]})
    assert machine(p).vmpls == {"l2.1": 3, "l2.2": 1}
    for bad in ([1], [2, 2], [0, 1], [1, 4], "12", [True, 2]):
        with pytest.raises(ConfigError) as err:
            guest(workload_layers=2, backend_options={"workload_vmpls": bad})
        assert err.value.field == "backend_options.workload_vmpls"


def test_unknown_and_bad_backend_options_name_the_field() -> None:
    with pytest.raises(ConfigError, match="known: workload_vmpls, host_page_size"):
        guest(backend_options={"colour": 1})
    for name, value in (
        ("host_page_size", "1G"),
        ("call_protocol", "hypercall"),
        ("product", "Naples"),
    ):
        with pytest.raises(ConfigError) as err:
            guest(backend_options={name: value})
        assert err.value.field == f"backend_options.{name}"
    o = parse_options(
        PartitionConfig(
            backend_options={"host_page_size": "4K", "call_protocol": "msr", "product": "Turin"}
        )
    )
    assert (o.host_page_size_2m, o.call_protocol, o.product) == (False, "msr", "Turin")


def test_graph_routes_validation_through_the_svsm_and_attestation_to_the_amd_sp() -> None:
    p = guest(workload_layers=2)
    g = p.graph
    v = g.route("validate", "l2.2")
    assert v.path == ["l2.2", "l1"] and v.edges[0].mechanism == "VMGEXIT(SNP_RUN_VMPL)"
    a = g.route("attest-hardware", "l2.2")
    assert a.path == ["l2.2", "host", "firmware"]
    assert [e.mechanism for e in a.edges] == ["GHCB", "SNP_GUEST_REQUEST"]
    assert g.route("set-access:l2.2", "l2.1").direct
    # no SVSM call sets access: the SVSM's set-access is its own, never a route's provider
    with pytest.raises(NotSupportedError):
        g.route("set-access:l2.1", "l2.2")
    assert g.route("convert", "l2.1").provider == "host"


def test_tcb_never_contains_the_host() -> None:
    g = guest(workload_layers=3).graph
    for layer in ("l2.1", "l2.2", "l2.3"):
        assert g.tcb(layer) == ["firmware", "l1", "vtpm"]
    assert g.tcb("l1") == ["firmware"]


def test_capabilities_answer_every_operation_with_reasons_when_unsupported() -> None:
    caps = guest().capabilities()
    for op in OPERATION_TYPES:
        cap = op.model_fields["op"].default
        key = {"attest": "attest-hardware"}.get(cap, cap)
        assert key in caps
    for name, ans in caps.items():
        assert not ans.supported or ans.mechanism, name
        if not ans.supported:
            assert ans.reason, name
    assert not guest(services=[]).capabilities()["extend-measurement"].supported


def test_every_cost_row_has_a_source_and_covers_every_traced_mnemonic() -> None:
    p = validated(16 * MIB)
    p.run(Attest(source="hardware", report_data=None))
    p.run(ConvertPages(range=rng(0, 2 * MIB), to="shared"))
    assert all(c.source for c in p.costs.primitives.values())
    assert all(c.source for c in p.costs.switches.values())
    assert p.costs.unknown(p.trace) == set()


def test_direct_primitives_per_layer() -> None:
    b, cfg = SevSnpBackend(), PartitionConfig(workload_layers=2)
    assert any("PVALIDATE" in x for x in b.direct_primitives(cfg, "l1"))
    assert any("RMPADJUST (VMPL2" in x for x in b.direct_primitives(cfg, "l2.1"))
    assert not any("RMPADJUST" in x for x in b.direct_primitives(cfg, "l2.2"))
    assert "RMPUPDATE" in b.direct_primitives(cfg, "host")


def test_extend_measurement_is_a_vtpm_pcr_extend_and_no_hardware_register() -> None:
    p = guest()
    digest = bytes(range(48))
    r = p.run(ExtendMeasurement(index=10, digest=digest))
    assert r.ok and p.trace.count("HANDLE", target="VTPM.CMD") == 1
    m = machine(p)
    code, rsp = m.client.vtpm_command("l2.1", 0, pcr_read(10))
    assert code == 0
    import hashlib

    assert parse_pcr_read(rsp) == [hashlib.sha384(bytes(48) + digest).digest()]
    assert p.run(ExtendMeasurement(layer="l1", index=10, digest=digest)).ok
    r = guest(services=[]).run(ExtendMeasurement(index=1, digest=digest))
    assert r.status is Status.NOT_SUPPORTED


def test_interrupt_operations_answer_through_the_modes() -> None:
    p = guest()  # restricted
    assert p.run(InjectInterrupt(layer="host", vcpu=0, vector=32)).ok
    r = p.run(ConfigureInterrupts(mode="alternate"))  # never re-entered (seed 001)
    assert r.status is Status.ERROR and "re-entered" in (r.reason or "")


def test_host_and_firmware_do_not_request_guest_operations() -> None:
    p = guest()
    for layer in ("host", "firmware", "vtpm"):
        r = p.run(ValidatePages(layer=layer, range=rng(0, 2 * MIB)))
        assert r.status is Status.NOT_SUPPORTED


def test_a_range_beyond_guest_ram_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        guest(16 * MIB).run(ValidatePages(range=rng(14 * MIB, 4 * MIB)))


def test_every_operation_type_is_handled_without_raising() -> None:
    p = validated(16 * MIB, vcpus=2)
    ops: list[dict[str, Any]] = [
        {"op": "validate", "range": {"start": 0, "size": 4096}},
        {"op": "rescind", "range": {"start": 0, "size": 4096}},
        {"op": "convert", "range": {"start": 0, "size": 4096}, "to": "shared"},
        {"op": "convert", "range": {"start": 0, "size": 4096}, "to": "private"},
        {"op": "set-access", "range": {"start": 0, "size": 4096}, "target": "l2.1", "access": "r"},
        {"op": "create-vcpu", "vcpu": 1},
        {"op": "delete-vcpu", "vcpu": 1},
        {"op": "attest", "source": "hardware", "report_data": None},
        {"op": "attest", "report_data": "00"},
        {"op": "inject-interrupt", "vcpu": 0, "vector": 40},
        {"op": "eoi", "vcpu": 0},
        {"op": "configure-interrupts", "mode": "restricted"},
        {"op": "extend-measurement", "register": 0, "digest": "00" * 48},
    ]
    assert len({o["op"] for o in ops}) == len(OPERATION_TYPES)
    for op in ops:
        r = p.run(op)
        assert r.status in (Status.OK, Status.ERROR, Status.NOT_SUPPORTED, Status.PARTIAL)
        if r.status in (Status.ERROR, Status.PARTIAL):
            assert r.error is not None and r.error.vendor == "amd" and r.error.message

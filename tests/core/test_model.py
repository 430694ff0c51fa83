"""Validation of the typed model: good and bad input for every model."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cocopart.errors import ConfigError, InputError
from cocopart.model import (
    GIB,
    MIB,
    PAGE_2M,
    PAGE_4K,
    TIB,
    Access,
    GpaRange,
    InterruptMode,
    Layer,
    LayerRole,
    PageSize,
    PartitionConfig,
    Strategy,
    format_size,
    parse_size,
    workload_layers,
)
from cocopart.ops import (
    Attest,
    ConfigureInterrupts,
    ConvertPages,
    CreateVcpu,
    DeleteVcpu,
    ExtendMeasurement,
    InjectInterrupt,
    RescindPages,
    SetAccess,
    ValidatePages,
    parse_operation,
)
from cocopart.partition import config_from


@pytest.mark.parametrize(
    "text,value",
    [
        ("4096", 4096),
        (4096, 4096),
        ("2M", 2 * MIB),
        ("2MiB", 2 * MIB),
        ("64GiB", 64 * GIB),
        ("1 TiB", TIB),
        ("4k", 4096),
        ("1G", GIB),
    ],
)
def test_parse_size_accepts_units(text: object, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("bad", ["", "12 parsecs", "-1G", True, 1.5, None])
def test_parse_size_rejects_garbage(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


def test_format_size_picks_largest_unit() -> None:
    assert format_size(64 * GIB) == "64 GiB"
    assert format_size(3 * PAGE_4K) == "12 KiB"
    assert format_size(5) == "5 B"


def test_gpa_range_valid_and_helpers() -> None:
    r = GpaRange(start="1GiB", size="4MiB")
    assert (r.start, r.end, r.pages_4k) == (GIB, GIB + 4 * MIB, 1024)
    assert r.overlaps(GpaRange.of(GIB + 2 * MIB, PAGE_4K))
    assert not r.overlaps(GpaRange.of(0, GIB))
    r.check_inside(2 * GIB)
    with pytest.raises(ValueError, match="beyond guest memory"):
        r.check_inside(GIB)


@pytest.mark.parametrize(
    "start,size,msg",
    [
        (1, PAGE_4K, "not 4 KiB aligned"),
        (0, 100, "multiple of 4 KiB"),
        (0, 0, "greater than 0"),
        (-PAGE_4K, PAGE_4K, "greater than or equal"),
    ],
)
def test_gpa_range_rejects(start: int, size: int, msg: str) -> None:
    with pytest.raises(InputError, match=msg):
        GpaRange(start=start, size=size)


def test_gpa_range_chunks_use_largest_aligned_pages() -> None:
    r = GpaRange.of(PAGE_2M - PAGE_4K, 2 * PAGE_2M + 2 * PAGE_4K)
    assert list(r.chunks()) == [
        (PAGE_2M - PAGE_4K, PageSize.SIZE_4K, 1),
        (PAGE_2M, PageSize.SIZE_2M, 2),
        (3 * PAGE_2M, PageSize.SIZE_4K, 1),
    ]
    assert list(GpaRange.of(0, 2 * GIB).chunks(PageSize.SIZE_1G)) == [(0, PageSize.SIZE_1G, 2)]
    assert list(GpaRange.of(0, PAGE_2M).chunks(PageSize.SIZE_4K)) == [(0, PageSize.SIZE_4K, 512)]
    # chunks cover the range exactly, whatever it is
    r = GpaRange.of(3 * PAGE_4K, GIB + 5 * PAGE_4K)
    assert sum(ps.bytes * n for _, ps, n in r.chunks(PageSize.SIZE_1G)) == r.size


def test_page_size_bytes_and_lookup() -> None:
    assert PageSize.SIZE_2M.bytes == PAGE_2M and PageSize.SIZE_2M.pages_4k == 512
    assert PageSize.from_bytes(GIB) is PageSize.SIZE_1G
    with pytest.raises(ValueError):
        PageSize.from_bytes(8192)


@pytest.mark.parametrize(
    "text,acc",
    [
        ("rw", Access.RW),
        ("r-x", Access.READ | Access.USER_EXEC | Access.SUPERVISOR_EXEC),
        ("none", Access.NONE),
        ("read,write", Access.RW),
        ("rwus", Access.RWX),
        (3, Access.RW),
        ("s", Access.SUPERVISOR_EXEC),
    ],
)
def test_access_parse(text: object, acc: Access) -> None:
    assert Access.parse(text) == acc


@pytest.mark.parametrize("bad", ["rwz", "fly", 16, 1.0])
def test_access_parse_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        Access.parse(bad)


def test_access_short_form() -> None:
    assert Access.RWX.short() == "rwus" and Access.READ.short() == "r---"


def test_layer_names_are_checked() -> None:
    Layer(name="l2.3", role=LayerRole.WORKLOAD, vendor_name="VMPL3", level=3)
    with pytest.raises(ValidationError):
        Layer(name="l2.4", role=LayerRole.WORKLOAD, vendor_name="?")
    with pytest.raises(ValidationError):
        Layer(name="L1", role=LayerRole.PRIVILEGED, vendor_name="?")
    assert workload_layers(2) == ("l2.1", "l2.2")
    with pytest.raises(ValueError):
        workload_layers(4)


def test_partition_config_defaults_and_bounds() -> None:
    c = PartitionConfig(memory="64GiB", vcpus=16, workload_layers=2)
    assert c.memory == 64 * GIB and c.workloads == ("l2.1", "l2.2")
    assert c.strategy is Strategy.OPTIMAL and c.interrupt_mode is InterruptMode.RESTRICTED
    PartitionConfig(memory="1MiB" if False else "2MiB")
    PartitionConfig(memory="4TiB", vcpus=512, workload_layers=3)


@pytest.mark.parametrize(
    "field,value",
    [
        ("memory", "512KiB"),
        ("memory", "65TiB"),
        ("memory", 3 * MIB + 100),
        ("vcpus", 0),
        ("vcpus", 513),
        ("workload_layers", 0),
        ("workload_layers", 4),
        ("strategy", "fast"),
        ("interrupt_mode", "magic"),
        ("services", ["Bad Name"]),
        ("unknown_field", 1),
    ],
)
def test_partition_config_errors_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as err:
        config_from({field: value}, source="guest.toml")
    assert err.value.field is not None and err.value.field.startswith(field)
    assert "guest.toml" in str(err.value)


def test_operations_validate() -> None:
    r = GpaRange.of(0, PAGE_2M)
    ops = [
        ValidatePages(range=r),
        RescindPages(range=r),
        ConvertPages(range=r, to="shared"),
        SetAccess(range=r, target="l2.2", access="rw", layer="l2.1"),
        CreateVcpu(vcpu=3),
        DeleteVcpu(vcpu=3),
        Attest(report_data=b"x" * 64),
        InjectInterrupt(vcpu=0, vector=0x30),
        ConfigureInterrupts(mode="alternate"),
        ExtendMeasurement(register=2, digest=b"\1" * 48),
    ]
    for op in ops:
        again = parse_operation(op.model_dump(mode="json", by_alias=True))
        assert again == op
        assert op.describe().startswith(op.op)
    assert Attest(report_data="aa").report_data == b"\xaa" + b"\0" * 63
    assert SetAccess(range=r, target="l2.2", access="rw").route_capability == "set-access:l2.2"


@pytest.mark.parametrize(
    "data",
    [
        {"op": "validate", "range": {"start": 1, "size": 4096}},
        {"op": "convert", "range": {"start": 0, "size": 4096}, "to": "public"},
        {"op": "inject-interrupt", "vcpu": 0, "vector": 14},
        {"op": "inject-interrupt", "vcpu": 0, "vector": 256},
        {"op": "create-vcpu", "vcpu": 512},
        {"op": "attest", "report_data": "00" * 65},
        {"op": "extend-measurement", "register": 0, "digest": "00" * 32},
        {"op": "set-access", "range": {"start": 0, "size": 4096}, "target": "l2.1", "access": "q"},
        {"op": "teleport"},
        {"op": "validate", "range": {"start": 0, "size": 4096}, "layer": "L2.1"},
    ],
)
def test_operations_reject_bad_input(data: dict[str, object]) -> None:
    with pytest.raises(InputError):
        parse_operation(data)

"""`cocopart layers`."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import EXAMPLES, assert_schema, invoke
from typer.testing import CliRunner


def test_layers_text(runner: CliRunner, fakes: list[str], small: Path) -> None:
    res = invoke(runner, "layers", small)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "Routes" in out and "FAKE.SWITCH" in out and "TCB" in out
    assert "not supported" in out  # e.g. inject-interrupt has no holder on the fake


def test_layers_json_routes_and_tcb(runner: CliRunner, fakes: list[str], small: Path) -> None:
    res = invoke(runner, "layers", small, "--format", "json")
    assert res.exit_code == 0, res.output
    data = assert_schema(runner, "layers", res.stdout)
    routes = {(r["from_layer"], r["capability"]): r for r in data["routes"]}
    assert routes[("l2.1", "validate")]["path"] == ["l2.1", "l1"]
    assert routes[("l2.1", "set-access:l2.2")]["path"] == ["l2.1"]  # fake: direct
    assert data["tcb"]["l2.1"] == ["firmware", "l1"]


def test_layers_dot_and_png(
    runner: CliRunner, fakes: list[str], small: Path, tmp_path: Path
) -> None:
    res = invoke(runner, "layers", small, "-f", "dot")
    assert res.exit_code == 0 and res.stdout.startswith('digraph "fake layers"')
    png = tmp_path / "g.png"
    res = invoke(runner, "layers", small, "-f", "png", "--out", png)
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_layers_unknown_backend(runner: CliRunner, fakes: list[str], small: Path) -> None:
    res = invoke(runner, "layers", small, "--backend", "sev-snpp")
    assert res.exit_code == 2 and "installed:" in res.output


def test_layers_real(runner: CliRunner, real_backends: list[str]) -> None:
    for name in real_backends:
        res = invoke(runner, "layers", EXAMPLES / "guest.toml", "-b", name, "--json")
        assert res.exit_code == 0, res.output
        data = assert_schema(runner, "layers", res.stdout)
        assert any(r["supported"] for r in data["routes"])


# -- memory control and ownership (docs/authority.md) ------------------------------------------
#: A [guest] memory_map replaces the one derived from [[layers]]: RAM it leaves out is l1's pool.
POOLED = """\
name = "pooled"

[guest]
memory = "64MiB"
vcpus = 2
workload_layers = 2

[guest.memory_map]
"l2.1" = [{ start = 0, size = "16MiB" }]
"""


def _control(data: dict[str, object]) -> dict[str, dict[str, list[str]]]:
    rows = data["memory_control"]
    assert isinstance(rows, list)
    return {r["layer"]: r for r in rows}


def test_layers_memory_control_json_fake(runner: CliRunner, fakes: list[str], small: Path) -> None:
    res = invoke(runner, "layers", small, "--json")
    assert res.exit_code == 0, res.output
    data = assert_schema(runner, "layers", res.stdout)
    ctl = _control(data)
    assert ctl["l1"]["controls"] == ["l2.1", "l2.2"]
    assert ctl["l2.1"]["controls"] == ["l2.2"] and ctl["l2.2"]["controlled_by"] == ["l1", "l2.1"]
    # the scenario's [[layers]] memory is the memory map
    ram = [r for r in data["ownership"] if r["kind"] in ("memory-map", "pool")]
    assert [(r["start"], r["end"], r["owner"], r["kind"]) for r in ram] == [
        (0, 32 << 20, "l2.1", "memory-map"),
        (32 << 20, 64 << 20, "l2.2", "memory-map"),
    ]
    assert {r["owner"] for r in data["ownership"] if r["kind"] == "protocol-pages"} == {
        "l2.1",
        "l2.2",
    }


def test_layers_memory_control_snp_chain(
    runner: CliRunner, both_backends: list[str], small: Path
) -> None:
    """Default VMPLs [1, 2]: l2.1 (VMPL1) may restrict l2.2 (VMPL2), never the reverse."""
    res = invoke(runner, "layers", small, "-b", "sev-snp", "--json")
    assert res.exit_code == 0, res.output
    data = assert_schema(runner, "layers", res.stdout)
    assert [lay["vendor_name"] for lay in data["layers"] if lay["name"].startswith("l2.")] == [
        "VMPL1",
        "VMPL2",
    ]
    ctl = _control(data)
    assert ctl["l1"]["controls"] == ["l2.1", "l2.2"] and ctl["l1"]["controlled_by"] == []
    assert ctl["l2.1"]["controls"] == ["l2.2"] and ctl["l2.1"]["controlled_by"] == ["l1"]
    assert ctl["l2.2"]["controls"] == [] and ctl["l2.2"]["controlled_by"] == ["l1", "l2.1"]
    assert all(not c["peers"] for c in ctl.values())
    assert ctl["l2.1"]["mechanisms"] == ["RMPADJUST"]


def test_layers_memory_control_tdx_peers(
    runner: CliRunner, both_backends: list[str], small: Path
) -> None:
    """TDX: only l1 controls the L2 VMs; the L2s are peers."""
    res = invoke(runner, "layers", small, "-b", "tdx", "--json")
    assert res.exit_code == 0, res.output
    data = assert_schema(runner, "layers", res.stdout)
    ctl = _control(data)
    assert ctl["l1"]["controls"] == ["l2.1", "l2.2"]
    assert ctl["l1"]["mechanisms"] == ["TDG.MEM.PAGE.ATTR.WR"]
    for me, peer in (("l2.1", "l2.2"), ("l2.2", "l2.1")):
        assert ctl[me]["controls"] == [] and ctl[me]["controlled_by"] == ["l1"]
        assert ctl[me]["peers"] == [peer]


def _table_rows(output: str, title: str, upto: str) -> dict[str, list[str]]:
    """The body rows of the text table between ``title`` and ``upto``, keyed by first cell."""
    table = output[output.index(title) : output.index(upto)]
    rows = {}
    for line in table.splitlines():
        if line.startswith("│"):
            cells = [c.strip() for c in line.split("│")[1:-1]]
            rows[cells[0]] = cells
    return rows


def test_layers_memory_control_text(
    runner: CliRunner, both_backends: list[str], small: Path
) -> None:
    from cocopart_cli.main import app

    def rows(backend: str) -> dict[str, list[str]]:
        res = runner.invoke(app, ["layers", str(small), "-b", backend], env={"COLUMNS": "200"})
        assert res.exit_code == 0, res.output
        assert "Memory control" in res.stdout and "Page ownership" in res.stdout
        return _table_rows(res.stdout, "Memory control", "Page ownership")

    # columns: layer, may restrict, restricted by, peers (own pages only), mechanism
    snp = rows("sev-snp")
    assert snp["l1"][1:3] == ["l2.1, l2.2", "nobody"]
    assert snp["l2.1"] == ["l2.1", "l2.2", "l1", "", "RMPADJUST"]
    assert snp["l2.2"] == ["l2.2", "nobody", "l1, l2.1", "", ""]
    tdx = rows("tdx")
    assert tdx["l1"] == ["l1", "l2.1, l2.2", "nobody", "", "TDG.MEM.PAGE.ATTR.WR"]
    assert tdx["l2.1"] == ["l2.1", "nobody", "l1", "l2.2", ""]
    assert tdx["l2.2"] == ["l2.2", "nobody", "l1", "l2.1", ""]


def test_layers_ownership_text(runner: CliRunner, fakes: list[str], small: Path) -> None:
    from cocopart_cli.main import app

    res = runner.invoke(app, ["layers", str(small)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    out = res.stdout
    rows = _table_rows(out + "\n<end>", "Page ownership", "<end>")
    assert rows["[0x0, 0x2000000)"][1:] == ["32 MiB", "l2.1", "memory-map"]
    assert rows["[0x2000000, 0x4000000)"][1:] == ["32 MiB", "l2.2", "memory-map"]


def test_layers_ownership_outside_the_memory_map_is_pool(
    runner: CliRunner, real_backends: list[str], tmp_path: Path
) -> None:
    guest = tmp_path / "pooled.toml"
    guest.write_text(POOLED)
    for name in real_backends:
        res = invoke(runner, "layers", guest, "-b", name, "--json")
        assert res.exit_code == 0, res.output
        data = assert_schema(runner, "layers", res.stdout)
        ram = [r for r in data["ownership"] if r["start"] < 64 << 20]
        assert [(r["start"], r["end"], r["owner"], r["assigned"], r["kind"]) for r in ram] == [
            (0, 16 << 20, "l2.1", True, "memory-map"),
            (16 << 20, 64 << 20, "l1", False, "pool"),
        ]

"""Trace aggregation, marks, and the cost model with TOML overrides."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cocopart.errors import ConfigError
from cocopart.trace import Cost, CostTable, Trace, load_cost_overrides


def test_counts_aggregate_with_multiplicity() -> None:
    t = Trace()
    t.record("l1", "PVALIDATE.4K", "", "ok", 1 << 28)
    t.record("l1", "PVALIDATE.2M", count=3)
    t.record("l1", "PVALIDATE.2M", result="FAIL_SIZEMISMATCH")
    t.switch("l2.1", "l1", "VMGEXIT", 2)
    t.record("l1", "X", count=0)  # nothing
    assert t.total_primitives == (1 << 28) + 4 and t.total_switches == 2
    assert t.count("PVALIDATE") == (1 << 28) + 4 and t.count("PVALIDATE.2M") == 4
    assert t.count("PVALIDATE", result="FAIL_SIZEMISMATCH") == 1
    assert len(t.primitives) == 3 and len(t.events()) == 4


def test_log_is_run_length_encoded() -> None:
    t = Trace()
    for _ in range(1000):
        t.record("l1", "A")
    t.record("l1", "B")
    t.record("l1", "A")
    ev = t.events()
    assert [(e.mnemonic, e.count) for e in ev] == [("A", 1000), ("B", 1), ("A", 1)]


def test_since_mark_reports_only_new_work() -> None:
    t = Trace()
    t.record("l1", "A", count=5)
    m = t.mark()
    t.record("l1", "A", count=2)  # merges into the same log entry
    t.switch("l2.1", "l1", "SW")
    d = t.since(m)
    assert d.total_primitives == 2 and d.total_switches == 1
    assert [(e.mnemonic, e.count) for e in d.events] == [("A", 2), ("SW", 1)]
    m2 = t.mark()
    assert t.since(m2).events == [] and t.since(m2).total_primitives == 0


def test_cost_estimate_and_fallback_to_base_mnemonic() -> None:
    table = CostTable(
        primitives={
            "PVALIDATE": Cost(ns=100, source="s"),
            "PVALIDATE.2M": Cost(ns=1000, source="s"),
        },
        switches={"VMGEXIT": Cost(ns=3000, source="s")},
    )
    t = Trace()
    t.record("l1", "PVALIDATE.4K", count=10)
    t.record("l1", "PVALIDATE.2M", count=2)
    t.record("l1", "MYSTERY")
    t.switch("a", "b", "VMGEXIT")
    assert table.estimate(t) == 10 * 100 + 2 * 1000 + 3000
    assert table.unknown(t) == {"MYSTERY"}


def test_cost_overrides_from_toml(tmp_path: Path) -> None:
    f = tmp_path / "costs.toml"
    f.write_text(
        '[primitives]\nPVALIDATE = 5\n"RMPADJUST" = { ns = 7, source = "lab" }\n'
        "[switches]\nVMGEXIT = 1.5\n"
    )
    base = CostTable(primitives={"PVALIDATE": Cost(ns=100, source="paper")})
    t = load_cost_overrides(base, f)
    assert t.primitives["PVALIDATE"].ns == 5 and t.primitives["PVALIDATE"].source == str(f)
    assert t.primitives["RMPADJUST"].source == "lab" and t.switch_ns("VMGEXIT") == 1.5
    assert base.primitives["PVALIDATE"].ns == 100


@pytest.mark.parametrize(
    "text,field",
    [
        ("[primitives]\nX = 'fast'\n", "primitives.X"),
        ("[primitives]\nX = { ns = -1 }\n", "primitives.X"),
        ("[colours]\nX = 1\n", None),
        ("[primitives\n", None),
    ],
)
def test_bad_cost_files_name_the_problem(tmp_path: Path, text: str, field: str | None) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_cost_overrides(CostTable(), f)
    assert err.value.source == str(f) and err.value.field == field
    with pytest.raises(ConfigError, match="cannot read"):
        load_cost_overrides(CostTable(), tmp_path / "missing.toml")


def test_trace_is_thread_safe() -> None:
    t = Trace()

    def work() -> None:
        for _ in range(2000):
            t.record("l1", "A")
            t.switch("a", "b", "S")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.total_primitives == 8000 and t.total_switches == 8000
    assert sum(e.count for e in t.events()) == 16000

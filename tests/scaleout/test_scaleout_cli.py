"""`cocopart sweep` and `cocopart verify-batch` in this process (--serial): outputs, exit
codes, and bad input reported before anything runs."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
from scaleout_helpers import BASE, invoke, write_sweep
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))

from schemacheck import errors as schema_errors

NOW = datetime.now(UTC).isoformat()


def _schema_ok(runner: CliRunner, name: str, stdout: str) -> dict[str, object]:
    res = invoke(runner, "schema", name)
    assert res.exit_code == 0, res.output
    data = json.loads(stdout)
    assert not schema_errors(data, json.loads(res.stdout))
    return data  # type: ignore[no-any-return]


def test_sweep_writes_tables_and_plot(runner: CliRunner, sweep_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = invoke(runner, "sweep", sweep_file, "--serial", "--out", out)
    assert res.exit_code == 0, res.output
    assert "sweep small: 16 points" in res.output and "ran serially" in res.output
    assert "not-supported: 4 point(s) on tdx, e.g. point 3 (" in res.output
    assert "TDG.MR.REPORT" in res.output
    table = pq.read_table(out / "sweep.parquet")
    assert table.num_rows == 64
    assert table.column_names[:4] == ["point", "guest.memory", "guest.vcpus", "steps.2.source"]
    assert str(table.schema.field("guest.memory").type) == "int64"
    assert str(table.schema.field("modelled_ns").type) == "double"
    rows = table.to_pylist()
    unsupported = {r["point"] for r in rows if r["status"] == "not-supported"}
    assert unsupported == {3, 7, 11, 15}  # tdx x hardware source
    assert all(r["reason"] for r in rows if r["status"] == "not-supported")
    assert (
        (out / "sweep.csv")
        .read_text()
        .splitlines()[0]
        .startswith('"point","guest.memory","guest.vcpus","steps.2.source","backend"')
    )
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_json_summary(runner: CliRunner, sweep_file: Path, tmp_path: Path) -> None:
    res = invoke(
        runner, "sweep", sweep_file, "--serial", "--out", tmp_path / "o", "--no-plot", "--json"
    )
    assert res.exit_code == 0, res.output
    report = _schema_ok(runner, "sweep", res.stdout)
    assert report["points"] == 16 and report["rows"] == 64 and report["plot"] is None
    assert report["status_counts"] == {"ok": 60, "not-supported": 4}
    by_backend = {b["backend"]: b for b in report["per_backend"]}  # type: ignore[attr-defined]
    assert by_backend["tdx"]["not_supported"] == 4 and by_backend["sev-snp"]["ok"] == 8


def test_sweep_with_a_bad_axis_exits_2_naming_file_line_and_field(
    runner: CliRunner, tmp_path: Path, both_backends: list[str]
) -> None:
    path = write_sweep(
        tmp_path,
        'scenario = "base.toml"\n[axes]\n"guest.interrupt_mode" = ["restricted", "sideways"]\n',
    )
    res = invoke(runner, "sweep", path, "--workers", "2", "--json")
    assert res.exit_code == 2
    error = _schema_ok(runner, "error", res.stdout)["error"]
    assert error == {
        **error,
        "file": str(path),
        "line": 3,  # type: ignore[dict-item]
        "field": "axes.guest.interrupt_mode",
        "exit_code": 2,
    }
    assert "'sideways'" in error["message"]  # type: ignore[index]
    assert not (tmp_path / "sweep-sweep").exists()  # nothing ran, nothing written
    assert "Traceback" not in res.output


def test_sweep_exits_1_when_a_step_fails(
    runner: CliRunner, tmp_path: Path, both_backends: list[str]
) -> None:
    """l2.2 may not change the access of l2.1's pages (docs/authority.md): status error."""
    base = BASE + (
        '\n[[steps]]\nname = "l2.2 grabs l2.1"\nop = "set-access"\nlayer = "l2.2"\n'
        'range = { start = 0, size = "2MiB" }\ntarget = "l2.2"\naccess = "rw"\n'
    )
    path = write_sweep(tmp_path, 'scenario = "base.toml"\n[axes]\nbackend = ["sev-snp"]\n', base)
    res = invoke(runner, "sweep", path, "--serial", "--out", tmp_path / "o")
    assert res.exit_code == 1, res.output
    assert "error: 1 point(s) on sev-snp, e.g. point 0" in res.output


def test_sweep_option_mistakes_exit_2(runner: CliRunner, sweep_file: Path) -> None:
    for args, words in (
        (["--serial", "--workers", "2"], "--workers with --serial"),
        (["--serial", "--scheduler", "tcp://h:8786"], "--scheduler with"),
        (["--serial", "--chunk-size", "0"], "--chunk-size: must be at least 1"),
        (["--serial", "--x", "guest.cpus"], "--x guest.cpus: not an axis"),
        (
            ["--serial", "--by", "guest.memory", "--x", "guest.memory"],
            "--by guest.memory: not an axis of this sweep other than the x",
        ),
    ):
        res = invoke(runner, "sweep", sweep_file, *args)
        assert res.exit_code == 2, (args, res.output)
        assert words in res.output, res.output
    res = invoke(runner, "sweep", sweep_file.parent / "absent.toml")
    assert res.exit_code == 2 and "no such file" in res.output


def test_verify_batch_counts_and_exit_codes(
    runner: CliRunner, archive: dict[str, Path], tmp_path: Path
) -> None:
    root = archive["archive"]
    roots = ["--trust-root", archive["sev-snp"], "--trust-root", archive["tdx"]]
    allow = tmp_path / "allow.toml"
    allow.write_text('allowed_layers = ["l1", "l2.1"]\n')
    good = [root / "snp", root / "tdx"]
    res = invoke(
        runner,
        "verify-batch",
        *good,
        "--policy",
        allow,
        *roots,
        "--serial",
        "--now",
        NOW,
        "--out",
        tmp_path / "a",
        "--json",
    )
    assert res.exit_code == 0, res.output
    report = _schema_ok(runner, "verify-batch", res.stdout)
    files = len(list((root / "snp").iterdir())) + len(list((root / "tdx").iterdir()))
    assert report["summary"]["by_verdict"]["accepted"] == files  # type: ignore[index]
    # a policy that accepts only l2.2's evidence: authentic but rejected -> 4
    only = tmp_path / "only.toml"
    only.write_text('allowed_layers = ["l2.2"]\n')
    res = invoke(
        runner,
        "verify-batch",
        root / "tdx",
        "--policy",
        only,
        *roots,
        "--serial",
        "--now",
        NOW,
        "--out",
        tmp_path / "b",
    )
    assert res.exit_code == 4, res.output
    assert "policy.origin_layer" in res.output
    # a corrupt file is an error row, never a crashed batch -> 1
    res = invoke(
        runner,
        "verify-batch",
        root,
        "--policy",
        allow,
        *roots,
        "--serial",
        "--now",
        NOW,
        "--out",
        tmp_path / "c",
    )
    assert res.exit_code == 1, res.output
    rows = [json.loads(line) for line in (tmp_path / "c" / "verify.jsonl").read_text().splitlines()]
    errors = {Path(r["file"]).name: r["detail"] for r in rows if r["verdict"] == "error"}
    assert set(errors) == {"corrupt.json", "garbage.bin"}
    assert "does not parse" in errors["corrupt.json"]
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["by_verdict"]["error"] == 2 and summary["files"] == len(rows)


def test_verify_batch_usage_errors_exit_2(
    runner: CliRunner, archive: dict[str, Path], tmp_path: Path
) -> None:
    res = invoke(runner, "verify-batch", "--serial")
    assert res.exit_code == 2 and "PATHS... or --manifest" in res.output
    res = invoke(runner, "verify-batch", tmp_path / "nothing-here", "--serial")
    assert res.exit_code == 2 and "no such file or directory" in res.output
    bad = tmp_path / "bad.toml"
    bad.write_text('allowed_layers = ["l1"]\nallow_debugg = true\n')
    res = invoke(runner, "verify-batch", archive["archive"], "--policy", bad, "--serial")
    assert res.exit_code == 2 and "bad.toml:2" in res.output
    res = invoke(runner, "verify-batch", archive["archive"], "--pattern", "*.none", "--serial")
    assert res.exit_code == 2 and "no evidence file found" in res.output

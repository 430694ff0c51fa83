"""The CLI keeps the promises of docs/errors.md (issue 17): every user-input error exits 2 and
names the file (and, in a TOML file, the line and field) — also in the ``--json``
ErrorReport; exit 3 only for a bug, whose traceback ``--debug`` (or COCOPART_DEBUG=1) prints;
Ctrl-C exits 130 without a traceback; a closed pipe is not an internal error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import EXAMPLES, assert_schema, invoke
from cocopart_cli import common
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
GUEST = (EXAMPLES / "guest.toml").read_text()


def _file(tmp: Path, name: str, content: str | bytes) -> Path:
    p = tmp / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    return p


def _bad_evidence_json(tmp: Path) -> Path:
    return _file(tmp, "ev.json", json.dumps({"vendor": "tdx", "format": "tdx-quote", "raw": 5}))


def _evidence_json(tmp: Path) -> Path:
    """Well-formed Evidence JSON (whether it verifies does not matter here)."""
    from cocopart.attest.evidence import Evidence

    ev = Evidence(vendor="tdx", format="tdx-quote", raw=b"\x04\x00" + bytes(630))
    return _file(tmp, "ev.json", ev.model_dump_json())


#: (what, argv builder, the ErrorReport fields that must be set: file / line / field)
CASES: list[tuple[str, Callable[[Path], list[object]], dict[str, object]]] = [
    (
        "TOML syntax error in a guest file",
        lambda t: ["scenario", "check", _file(t, "g.toml", "[guest\nmemory = 1\n")],
        {"file": "g.toml", "line": 1},
    ),
    (
        "bad field in a guest file",
        lambda t: ["scenario", "check", _file(t, "g.toml", GUEST.replace('"16GiB"', '"16XiB"'))],
        {"file": "g.toml", "line": 9, "field": "guest.memory"},
    ),
    (
        "guest file that is not text",
        lambda t: ["scenario", "check", _file(t, "g.toml", bytes(range(256)))],
        {"file": "g.toml"},
    ),
    ("missing guest file", lambda t: ["setup", t / "nope.toml"], {"file": "nope.toml"}),
    ("guest file that is a directory", lambda t: ["layers", t / "guests"], {"file": "guests"}),
    (
        "unknown policy field",
        lambda t: [
            "verify",
            _evidence_json(t),
            "--policy",
            _file(t, "p.toml", 'allowed_layers = ["l1"]\nallow_debugging = true\n'),
        ],
        {"file": "p.toml", "line": 2, "field": "allow_debugging"},
    ),
    (
        "negative cost",
        lambda t: [
            "compare",
            EXAMPLES / "guest.toml",
            "--costs",
            _file(t, "c.toml", "[primitives]\nPVALIDATE = -5\n"),
        ],
        {"file": "c.toml", "field": "primitives.PVALIDATE"},
    ),
    (
        "evidence JSON with a bad field",
        lambda t: ["verify", _bad_evidence_json(t)],
        {"file": "ev.json", "field": "raw"},
    ),
    (
        "raw evidence of unknown kind",
        lambda t: ["verify", _file(t, "ev.bin", b"\x07" * 33)],
        {"file": "ev.bin"},
    ),
    (
        "trust root that is no certificate",
        lambda t: ["verify", _evidence_json(t), "--trust-root", _file(t, "root.pem", "hello\n")],
        {"file": "root.pem"},
    ),
    (
        "certificate file that is no certificate",
        lambda t: ["verify", _evidence_json(t), "--certs", _file(t, "vcek.der", b"\x30\x03")],
        {"file": "vcek.der"},
    ),
    (
        "missing collateral file",
        lambda t: ["verify", _evidence_json(t), "--collateral", f"tcb_info={t / 'tcb.json'}"],
        {"file": "tcb.json"},
    ),
]


@pytest.mark.parametrize("what,argv,where", CASES, ids=[c[0] for c in CASES])
def test_user_input_error_exits_2_naming_file_line_field(
    runner: CliRunner,
    tmp_path: Path,
    what: str,
    argv: Callable[[Path], list[object]],
    where: dict[str, object],
) -> None:
    (tmp_path / "guests").mkdir()
    args = argv(tmp_path)
    res = invoke(runner, *args, "--json")
    assert res.exit_code == 2, f"{what}: {res.output}"
    assert "Traceback" not in res.output and "internal error" not in res.output
    error = assert_schema(runner, "error", res.stdout)["error"]
    for key, value in where.items():
        got = error[key]
        if key == "file":
            assert got is not None and Path(got).name == value, (what, error)
            assert str(value) in error["message"], (what, error)
        else:
            assert got == value, (what, error)


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "x.json", "--nonce", "zz"],
        ["explain", "validate", "--backend", "no-such-backend"],
        ["attest", "--report-data", "00" * 65],
    ],
)
def test_bad_option_values_exit_2(runner: CliRunner, argv: list[str]) -> None:
    res = invoke(runner, *argv)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "internal error" not in res.output


def _boom() -> list[object]:
    raise RuntimeError("kaboom")


def test_bug_exits_3_and_debug_prints_its_traceback(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COCOPART_DEBUG", raising=False)
    monkeypatch.setattr(common, "load_all", _boom)
    plain = runner.invoke(app_(), ["backends"])
    assert plain.exit_code == 3 and "Traceback" not in plain.output
    assert "rerun with --debug" in plain.output
    debug = runner.invoke(app_(), ["--debug", "backends"])
    assert debug.exit_code == 3, debug.output
    assert "Traceback (most recent call last)" in debug.output
    assert "RuntimeError: kaboom" in debug.output and "_boom" in debug.output
    assert "rerun with --debug" not in debug.output
    monkeypatch.setenv("COCOPART_DEBUG", "1")
    env = runner.invoke(app_(), ["backends"])
    assert env.exit_code == 3 and "Traceback (most recent call last)" in env.output


def test_debug_shows_the_traceback_of_a_user_error_too(runner: CliRunner, tmp_path: Path) -> None:
    res = runner.invoke(app_(), ["--debug", "setup", str(tmp_path / "nope.toml")])
    assert res.exit_code == 2
    assert "Traceback (most recent call last)" in res.output and "no such file" in res.output


def test_main_entry_point_honours_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cocopart_cli import main as main_module

    monkeypatch.setattr(common, "load_all", _boom)
    monkeypatch.setattr("sys.argv", ["cocopart", "--debug", "backends"])
    with pytest.raises(SystemExit) as exc:
        main_module.main()
    assert exc.value.code == 3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "kaboom" in err


def test_ctrl_c_exits_130(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted() -> list[object]:
        raise KeyboardInterrupt

    monkeypatch.setattr(common, "load_all", interrupted)
    res = runner.invoke(app_(), ["backends"])
    assert res.exit_code == 130
    assert "Traceback" not in res.output and "internal error" not in res.output


def test_sigint_to_a_running_command_exits_130() -> None:
    """A real SIGINT, delivered while a command runs (its backend listing is made slow)."""
    code = (
        "import sys, time\n"
        "from cocopart_cli import common\n"
        "def slow():\n"
        "    sys.stderr.write('ready\\n'); sys.stderr.flush(); time.sleep(60)\n"
        "common.load_all = slow\n"
        "sys.argv = ['cocopart', 'backends']\n"
        "from cocopart_cli.main import main\n"
        "main()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    assert proc.stderr.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err


def test_closed_pipe_is_not_an_internal_error() -> None:
    env = {**os.environ, "COLUMNS": "100"}
    reader = "import sys; sys.stdin.readline()"  # reads one line, then closes the pipe
    cmd = f"{sys.executable} -m cocopart_cli.main schema --json | {sys.executable} -c '{reader}'"
    res = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {cmd}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert res.returncode in (0, 1, 141), res.stderr


def app_() -> object:
    from cocopart_cli.main import app

    return app

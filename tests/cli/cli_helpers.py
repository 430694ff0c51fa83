"""Helpers shared by the CLI tests (kept out of conftest.py so that test modules can import
them by a unique name)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, ClassVar

from typer.testing import CliRunner, Result

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fake_backend import FakeBackend
from schemacheck import errors

from cocopart.backend import Backend
from cocopart.trace import Cost, CostTable

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


class OtherFakeBackend(FakeBackend):
    """A second fake with slower primitives, so comparisons have two different series."""

    name: ClassVar[str] = "fake-b"
    title: ClassVar[str] = "Second fake architecture (tests only)"

    def cost_table(self) -> CostTable:
        return CostTable(
            primitives={"FAKE.VALIDATE": Cost(ns=300, source="made up")},
            switches={"FAKE.SWITCH": Cost(ns=5000, source="made up")},
        )


FAKES: dict[str, type[Backend]] = {"fake": FakeBackend, "fake-b": OtherFakeBackend}


SMALL = """\
name = "small"
backend = "fake"

[guest]
memory = "64MiB"
vcpus = 2
workload_layers = 2

[[layers]]
name = "l2.1"
memory = { start = 0, size = "32MiB" }

[[layers]]
name = "l2.2"
memory = { start = "32MiB", size = "32MiB" }

[[steps]]
macro = "bring-up"

[[steps]]
name = "grant l2.2 read"
op = "set-access"
layer = "l2.1"
range = { start = 0, size = "2MiB" }
target = "l2.2"
access = "r"

[[steps]]
macro = "attest-each-layer"
"""


def invoke(runner: CliRunner, *args: object) -> Result:
    """Run ``cocopart ARGS`` in-process."""
    from cocopart_cli.main import app

    return runner.invoke(app, [str(a) for a in args])


def assert_schema(runner: CliRunner, name: str, output: str) -> Any:
    """Parse ``output`` and validate it against `cocopart schema NAME`."""
    res = invoke(runner, "schema", name)
    assert res.exit_code == 0, res.output
    schema = json.loads(res.stdout)
    data = json.loads(output)
    problems = errors(data, schema)
    assert not problems, problems[:10]
    return data

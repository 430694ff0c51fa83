"""Issue 16 point 8: the Python API's traps for agents are gone — bad input raises
CocopartError subclasses only, `cocopart.attest` is always the package, and `Attest` needs
report data or an explicit choice."""

from __future__ import annotations

import subprocess
import sys
import types
import warnings
from typing import Any

import pytest

from cocopart.attest.evidence import Evidence
from cocopart.attest.policy import Policy
from cocopart.attest.verifier import TrustStore
from cocopart.errors import CocopartError, InputError
from cocopart.model import GpaRange, PartitionConfig
from cocopart.ops import Attest, SetAccess, parse_operation


@pytest.mark.parametrize(
    "build,field",
    [
        (lambda: Policy(allowed_layers=3), "allowed_layers"),
        (lambda: Policy.model_validate({"expected_nonce": b"x" * 65}), "expected_nonce"),
        (lambda: Evidence.model_validate_json(b'{"vendor": "tdx"}'), "format"),
        (lambda: Evidence(vendor="tdx", format="tdx-quote", raw=5), "raw"),
        (lambda: TrustStore(pinned_roots=[1]), "pinned_roots"),
        (lambda: PartitionConfig(vcpus=0), "vcpus"),
        (
            lambda: PartitionConfig.model_validate({"memory_map": {"l2.1": [{"start": 1}]}}),
            "memory_map.l2.1.0.size",
        ),
        (lambda: GpaRange(start=1, size=4096), None),  # a model-level rule: no single field
        (lambda: SetAccess(range=GpaRange.of(0, 4096), target="l2.1", access="q"), "access"),
        (lambda: parse_operation({"op": "attest", "report_data": "00" * 65}), "attest.report_data"),
    ],
)
def test_bad_input_raises_input_error_not_validation_error(build: Any, field: str | None) -> None:
    with pytest.raises(InputError) as err:
        build()
    assert isinstance(err.value, CocopartError) and isinstance(err.value, ValueError)
    assert err.value.field == field and err.value.errors
    assert type(err.value).__module__ == "cocopart.errors"


def test_attest_requires_report_data_or_an_explicit_none() -> None:
    """Attest() silently attested 64 zero bytes: a nonce nobody chose."""
    with pytest.raises(InputError, match="report_data"):
        Attest()
    assert Attest(report_data=None).report_data == bytes(64)
    assert Attest(report_data=b"\x01").report_data == b"\x01" + bytes(63)
    assert parse_operation({"op": "attest", "report_data": None}).report_data == bytes(64)


@pytest.mark.parametrize("order", ["function-first", "package-first"])
def test_cocopart_attest_is_the_package_whatever_the_import_order(order: str) -> None:
    first, second = (
        ("from cocopart import attest as a", "import cocopart.attest.evidence")
        if order == "function-first"
        else ("import cocopart.attest.evidence", "from cocopart import attest as a")
    )
    code = (
        f"{first}; {second}; import cocopart, types; "
        "from cocopart import request_report; "
        "from cocopart.attest.configfs import attest as fn; "
        "assert isinstance(a, types.ModuleType) and a is cocopart.attest; "
        "assert request_report is fn; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == "ok", out.stderr


def test_calling_the_package_still_requests_a_report_with_a_warning() -> None:
    import cocopart
    from cocopart.attest.faketsm import FakeTsm

    fake = FakeTsm.tdx_guest()
    assert isinstance(cocopart.attest, types.ModuleType)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        report = cocopart.attest(bytes(64), root=fake.root, fs=fake)  # type: ignore[operator]
    assert report.provider == "tdx_guest"
    assert any(
        issubclass(w.category, DeprecationWarning) and "request_report" in str(w.message)
        for w in seen
    )

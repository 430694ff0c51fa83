"""Simulated evidence from either backend verifies end to end with the vendor-neutral
Verifier — only with its simulated root in the trust store, and only for allowed layers."""

from __future__ import annotations

import pytest

from cocopart.attest.evidence import Evidence
from cocopart.attest.policy import Policy
from cocopart.attest.verifier import TrustStore, Verifier
from cocopart.ops import Attest
from cocopart.partition import Partition


@pytest.mark.parametrize("backend,level", [("sev-snp", "VMPL2"), ("tdx", "L2 VM 2")])
def test_service_evidence_of_a_workload_layer_verifies(backend: str, level: str) -> None:
    """With cocopart's requester entry (opt-in, RULE_REQUESTER_ENTRY_OPT_IN) the evidence
    speaks for the layer that asked."""
    p = Partition(
        {"memory": "1GiB", "vcpus": 2, "workload_layers": 2, "attest_requester_entry": True},
        backend,
    )
    nonce = bytes(range(64))
    r = p.run(Attest(layer="l2.2", report_data=nonce))
    assert r.ok, r.reason
    ev = Evidence.model_validate(r.data["evidence"])
    trust = TrustStore().with_root(backend, ev.certificates[-1])
    verdict = Verifier(Policy(allowed_layers=["l2.2"]), trust).verify(ev)
    assert verdict.ok, verdict.summary()
    claims = verdict.claims
    assert claims is not None and claims.simulated
    assert (claims.origin.layer, claims.origin.vendor_level) == ("l2.2", level)
    assert claims.origin.via_privileged_layer and ev.nonce == nonce
    # the default policy accepts only the privileged layer's own evidence
    default = Verifier(trust=trust).verify(ev)
    assert [c.name for c in default.failed] == ["policy.origin_layer"]
    # without the simulated root in the trust store the chain is rejected
    untrusted = Verifier(Policy(allowed_layers=["l2.2"])).verify(ev)
    assert not untrusted.ok
    assert any("pinned" in c.name for c in untrusted.failed)
    # a different nonce breaks the manifest binding
    forged = ev.model_copy(update={"nonce": b"\1" * 64})
    assert any(
        "manifest_binding" in c.name
        for c in Verifier(Policy(allowed_layers=["l2.2"]), trust).verify(forged).failed
    )


@pytest.mark.parametrize("backend", ["sev-snp", "tdx"])
def test_service_evidence_without_the_requester_entry_speaks_for_l1(backend: str) -> None:
    """The default (COCONUT's manifest): the privileged layer's own report and services, so
    the default policy accepts it whichever layer asked, and a policy for the workload layer
    does not."""
    p = Partition({"memory": "1GiB", "vcpus": 2, "workload_layers": 2}, backend)
    r = p.run(Attest(layer="l2.2", report_data=bytes(range(64))))
    assert r.ok, r.reason
    ev = Evidence.model_validate(r.data["evidence"])
    trust = TrustStore().with_root(backend, ev.certificates[-1])
    verdict = Verifier(trust=trust).verify(ev)
    assert verdict.ok, verdict.summary()
    assert verdict.claims is not None and verdict.claims.origin.layer == "l1"
    assert not verdict.claims.origin.via_privileged_layer
    assert [c.name for c in Verifier(Policy(allowed_layers=["l2.2"]), trust).verify(ev).failed] == [
        "policy.origin_layer"
    ]

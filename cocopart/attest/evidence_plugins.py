"""Evidence plug-ins (entry-point group ``cocopart.evidence``) and what their policies may name.

A plug-in class may declare a :class:`PolicySchema` as its ``policy_schema`` attribute: the
measurement names and sizes, TCB component names, vendor level names, check names and TCB
statuses its claims use, and the model of its own policy section (``[sev-snp]``, ``[tdx]``
in a policy file). A :class:`~cocopart.attest.policy.Policy` is validated against the
schemas of every installed plug-in when it is built, so a misspelt key or a pin of the wrong
length is an error at load time, not a mismatch at verify time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

EVIDENCE_GROUP = "cocopart.evidence"


@dataclass(frozen=True)
class PolicySchema:
    """What a policy may say about one vendor's evidence."""

    vendor: str
    #: Measurement name -> size in bytes (``Claims.measurements``).
    measurements: dict[str, int]
    #: The measurement a bare ``--measurement HEX`` pins (SNP "measurement", TDX "mrtd").
    primary_measurement: str
    #: TCB component names (``Claims.tcb``), for ``minimum_tcb``.
    tcb: frozenset[str] = frozenset()
    #: Vendor level names accepted in ``allowed_layers`` (e.g. "VMPL2", "L2 VM 1").
    levels: frozenset[str] = frozenset()
    #: Names of the plug-in's own checks, for ``waive_checks``.
    checks: frozenset[str] = frozenset()
    #: TCB statuses the plug-in reports, for ``accepted_tcb_status``.
    tcb_statuses: frozenset[str] = frozenset()
    #: The model of the plug-in's policy section (a cocopart.attest.policy.VendorPolicy),
    #: or None when it has none.
    section: type[BaseModel] | None = field(default=None, compare=False)


def load_evidence_verifier(vendor: str) -> Any:
    """Load the evidence plug-in for ``vendor`` through stevedore (an instance)."""
    from cocopart.registry import load_plugin

    verifier = load_plugin(EVIDENCE_GROUP, vendor)
    if isinstance(verifier, type):
        verifier = verifier()
    return verifier


@lru_cache(maxsize=1)
def installed_schemas() -> dict[str, PolicySchema]:
    """The policy schema of every installed evidence plug-in that loads and declares one."""
    from cocopart.errors import CocopartError
    from cocopart.registry import installed

    out: dict[str, PolicySchema] = {}
    for name in installed(EVIDENCE_GROUP):
        try:
            schema = getattr(load_evidence_verifier(name), "policy_schema", None)
        except CocopartError:  # a broken plug-in contributes nothing (its evidence fails)
            continue
        if isinstance(schema, PolicySchema):
            out[name] = schema
    return out

"""Reading evidence claims for summaries and turning them into policy advice."""

from __future__ import annotations

import re
from typing import Any

from cocopart.attest.evidence import Claims, Evidence
from cocopart.attest.policy import Policy
from cocopart.attest.verifier import TrustStore, Verifier
from cocopart.errors import CocopartError

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")


def simulated_root(evidence: Evidence) -> bytes | None:
    """The root of simulated evidence: the last of its certificates, else the last PEM
    certificate embedded in the raw evidence (a TDX quote's certification data carries its
    PCK chain, root last). None when there is neither."""
    if evidence.certificates:
        return evidence.certificates[-1]
    embedded = _PEM.findall(evidence.raw)
    return embedded[-1] + b"\n" if embedded else None


def read_claims(evidence: Evidence, layers: list[str]) -> Claims | None:
    """Claims of ``evidence``, trusting its own (simulated) root; None when unverifiable."""
    root = simulated_root(evidence)
    trust = TrustStore()
    if root is not None:
        trust = trust.with_root(evidence.vendor, root)
    policy = Policy(allowed_layers=layers, allow_debug=True, accepted_tcb_status=[])
    try:
        return Verifier(policy, trust).verify(evidence).claims
    except (CocopartError, ValueError, ImportError):
        return None


_LAUNCH_KEYS = ("launch_measurement", "launch_digest", "measurement", "mrtd")


def launch_measurement(data: dict[str, Any]) -> str | None:
    """A launch measurement an operation result carries in ``data``, as hex."""
    for key in _LAUNCH_KEYS:
        v = data.get(key)
        if isinstance(v, (bytes, bytearray)) and v:
            return bytes(v).hex()
        if isinstance(v, str) and v:
            return v
    return None


def policy_toml(layers: list[str], measurements: dict[str, str], title: str) -> str:
    """A policy file (cocopart.attest.policy.Policy fields, hex for bytes)."""
    quoted = ", ".join(f'"{layer}"' for layer in layers)
    lines = [
        f"# {title}",
        "# use with: cocopart verify EVIDENCE.json --policy THIS_FILE",
        f"allowed_layers = [{quoted}]",
        "allow_via_privileged_layer = true",
        "allow_debug = false",
        "",
    ]
    if measurements:
        lines.append("[expected_measurements]")
        lines += [f'{name} = "{value}"' for name, value in sorted(measurements.items())]
    else:
        lines.append("# [expected_measurements]   # pin the evidence's measurement claims here")
    return "\n".join(lines) + "\n"

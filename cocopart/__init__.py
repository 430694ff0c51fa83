"""cocopart: one vendor-neutral L2<->L1 interface for partitioned confidential VMs.

``import cocopart`` is cheap (no backend, no pydantic); the public names load on first use::

    from cocopart import Partition, PartitionConfig, ValidatePages, GpaRange

``cocopart.attest`` is always the attestation package (Evidence, Policy, Verifier,
configfs-tsm, detect). The configfs-tsm request function is exported as
``cocopart.request_report`` (:func:`cocopart.attest.configfs.attest`); calling the package,
``cocopart.attest(nonce)``, still works for code written when a top-level ``attest``
function shadowed it, with a DeprecationWarning.
"""

from __future__ import annotations

from cocopart.lazy_exports import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Partition": "cocopart.partition",
    "Plan": "cocopart.partition",
    "PartitionConfig": "cocopart.model",
    "GpaRange": "cocopart.model",
    "PageSize": "cocopart.model",
    "Access": "cocopart.model",
    "InterruptMode": "cocopart.model",
    "Strategy": "cocopart.model",
    "Layer": "cocopart.model",
    "LayerRole": "cocopart.model",
    "ValidatePages": "cocopart.ops",
    "RescindPages": "cocopart.ops",
    "ConvertPages": "cocopart.ops",
    "SetAccess": "cocopart.ops",
    "CreateVcpu": "cocopart.ops",
    "DeleteVcpu": "cocopart.ops",
    "Attest": "cocopart.ops",
    "InjectInterrupt": "cocopart.ops",
    "ConfigureInterrupts": "cocopart.ops",
    "ExtendMeasurement": "cocopart.ops",
    "OperationResult": "cocopart.ops",
    "Evidence": "cocopart.attest.evidence",
    "Claims": "cocopart.attest.evidence",
    "Policy": "cocopart.attest.policy",
    "Verifier": "cocopart.attest.verifier",
    "TrustStore": "cocopart.attest.verifier",
    "detect": "cocopart.attest.detect",
    "request_report": "cocopart.attest.configfs",
    "CocopartError": "cocopart.errors",
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 - built from the export table


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

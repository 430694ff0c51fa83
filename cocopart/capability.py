"""The capabilities operations need: what a layer must be able to do to carry one out.

A backend's capability matrix (``Backend.capabilities``) and the layer graph's node
capabilities are keyed by these names. Kept apart from :mod:`cocopart.ops` (the operation
models) so that a backend answers capabilities without importing them.
"""

from __future__ import annotations

from enum import Enum


class Capability(str, Enum):
    """What a layer must be able to do to carry out an operation (graph node capability)."""

    VALIDATE = "validate"
    RESCIND = "rescind"
    CONVERT = "convert"
    SET_ACCESS = "set-access"
    CREATE_VCPU = "create-vcpu"
    DELETE_VCPU = "delete-vcpu"
    ATTEST_HARDWARE = "attest-hardware"
    ATTEST_SERVICE = "attest-service"
    INJECT_INTERRUPT = "inject-interrupt"
    EOI = "eoi"
    CONFIGURE_INTERRUPTS = "configure-interrupts"
    EXTEND_MEASUREMENT = "extend-measurement"

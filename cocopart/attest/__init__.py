"""Attestation: evidence, claims, policy and verification; configfs-tsm; platform detection
and the platform plug-ins (:mod:`cocopart.attest.plugin`).

This package is what ``cocopart.attest`` always names. Before, ``from cocopart import
attest`` gave either this package or the configfs-tsm request function, depending on import
order; the function is now ``cocopart.request_report``. Calling the package still performs
that request (:func:`cocopart.attest.configfs.attest`), with a DeprecationWarning, so old
code keeps working whichever way it imported the name.
"""

from __future__ import annotations

import sys
import types
import warnings
from typing import Any


class _CallablePackage(types.ModuleType):
    """The package, callable as the former top-level ``attest`` function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        warnings.warn(
            "calling cocopart.attest(...) is deprecated: use "
            "cocopart.request_report(...) or cocopart.attest.configfs.attest(...)",
            DeprecationWarning,
            stacklevel=2,
        )
        from cocopart.attest.configfs import attest

        return attest(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage

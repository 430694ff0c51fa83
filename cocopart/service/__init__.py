"""Privileged-layer handlers of the protocol, written once over :class:`PrivilegedPlatform`."""

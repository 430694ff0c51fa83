"""cocopart: one vendor-neutral L2<->L1 interface for partitioned confidential VMs."""

__version__ = "0.1.0"

"""Test kit for backend authors: the contract suite every backend passes
(:class:`BackendContract`), runnable against any installed backend."""

from cocopart.testing.contract import BackendContract, sample_operations

__all__ = ["BackendContract", "sample_operations"]

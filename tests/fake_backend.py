"""The tests-only fake backend lives in the test kit (:mod:`cocopart.testing.fake`)."""

from cocopart.testing.fake import (
    PAGE_2M,
    FakeBackend,
    FakeHooks,
    FakeMachine,
    FakePlatform,
    FakeTransport,
    Page,
)

__all__ = [
    "PAGE_2M",
    "FakeBackend",
    "FakeHooks",
    "FakeMachine",
    "FakePlatform",
    "FakeTransport",
    "Page",
]

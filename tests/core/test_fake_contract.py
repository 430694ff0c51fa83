"""The fake backend the test kit ships keeps the backend contract itself."""

from cocopart.testing import BackendContract
from cocopart.testing.fake import FakeBackend


class TestFakeContract(BackendContract):
    backend = FakeBackend()

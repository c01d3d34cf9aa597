"""Fixtures for the flags tests: a clean snapshot per test, and a flag maker."""

import pytest

from flags import evaluate, services


@pytest.fixture(autouse=True)
def _fresh_snapshot():
    evaluate.snapshot_forget()
    yield
    evaluate.snapshot_forget()


@pytest.fixture
def make_flag(project):
    def make(key="new-checkout", **fields):
        return services.flag_create(project=project, key=key, actor="alice", **fields)

    return make


@pytest.fixture
def clock(monkeypatch):
    """Stands in for evaluate's monotonic clock, so polling intervals pass on demand."""

    class Clock:
        now = 1_000.0

        def __call__(self) -> float:
            return self.now

        def advance(self, seconds: float) -> None:
            self.now += seconds
            evaluate.tick()  # in real time, the ticker would have beaten meanwhile

    fake = Clock()
    monkeypatch.setattr(evaluate, "_clock", fake)
    return fake

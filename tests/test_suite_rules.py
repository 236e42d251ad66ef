"""The suite's own rules (tests/conftest.py): a test whose extra is missing skips, or fails under CI=true; a serial
test runs with no other test running in any parallel worker."""

from __future__ import annotations

import fcntl
import os

import pytest

from tests.conftest import require


def test_a_missing_extra_skips_with_its_reason_and_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs a thing: install it"):
        require(False, "needs a thing: install it")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true, and this test cannot run: it needs a thing"):
        require(False, "needs a thing: install it")
    require(True, "needs a thing: install it")  # present: nothing happens


def room(tmp_path_factory):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("one process (-n 0): no other test can run beside this one")
    return open(tmp_path_factory.getbasetemp().parent / "room.lock", "a+")


def can_lock(f, how: int) -> bool:
    try:
        fcntl.flock(f, how | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(f, fcntl.LOCK_UN)
    return True


@pytest.mark.serial
def test_a_serial_test_holds_the_room_alone(tmp_path_factory):
    with room(tmp_path_factory) as f:  # another open file: it conflicts with this test's own lock
        assert not can_lock(f, fcntl.LOCK_SH)


def test_other_tests_share_the_room(tmp_path_factory):
    with room(tmp_path_factory) as f:
        assert can_lock(f, fcntl.LOCK_SH) and not can_lock(f, fcntl.LOCK_EX)

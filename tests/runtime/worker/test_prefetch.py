"""The worker's read-ahead (:class:`gcode.runtime.worker.prefetch.BatchPrefetcher`): a batch read ahead
is used only for exactly the samples it read, a wrong guess falls back to a read, a failed read
ahead reports nothing, and the dataset is never read by two threads at once."""

import threading
import time

import numpy as np
import pytest

from gcode.runtime.worker.prefetch import BatchPrefetcher


class Reader:
    """A read that records which rows it read, on which thread, and how many ran at once."""

    def __init__(self, delay=0.0, fail_on=None):
        self.delay, self.fail_on = delay, fail_on
        self.lock = threading.Lock()
        self.active = self.most_active = 0
        self.calls = []

    def __call__(self, rows):
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            time.sleep(self.delay)
            self.calls.append((tuple(int(i) for i in rows), threading.current_thread().name))
            if self.fail_on is not None and int(rows[0]) == self.fail_on:
                raise KeyError(f"no sample {self.fail_on}")
            return np.asarray(rows) * 10
        finally:
            with self.lock:
                self.active -= 1


@pytest.fixture()
def reader():
    return Reader(delay=0.02)


def test_a_read_ahead_of_the_same_rows_is_used_without_reading_again(reader):
    ahead = BatchPrefetcher(reader)
    ahead.start(np.array([3, 1, 2]))
    batch = ahead.take(np.array([3, 1, 2]))
    np.testing.assert_array_equal(batch, [30, 10, 20])
    assert (ahead.hits, ahead.misses) == (1, 0)
    assert len(reader.calls) == 1 and reader.calls[0][1].startswith("gcode-prefetch")
    ahead.close()


def test_a_wrong_guess_reads_the_asked_rows_on_the_callers_thread(reader):
    ahead = BatchPrefetcher(reader)
    ahead.start(np.array([1, 2]))
    batch = ahead.take(np.array([2, 1]))  # same samples, other order: another batch
    np.testing.assert_array_equal(batch, [20, 10])
    assert (ahead.hits, ahead.misses) == (0, 1)
    assert reader.calls[-1] == ((2, 1), threading.current_thread().name)
    ahead.close()


def test_take_without_a_read_ahead_reads(reader):
    ahead = BatchPrefetcher(reader)
    np.testing.assert_array_equal(ahead.take(np.array([4])), [40])
    assert (ahead.hits, ahead.misses) == (0, 0)
    ahead.close()


def test_a_failed_read_ahead_is_silent_and_the_real_read_raises_where_it_belongs():
    reader = Reader(fail_on=7)
    ahead = BatchPrefetcher(reader)
    ahead.start(np.array([7]))   # a guess that fails: nothing is raised yet
    np.testing.assert_array_equal(ahead.take(np.array([5])), [50])
    ahead.start(np.array([7]))
    with pytest.raises(KeyError, match="no sample 7"):
        ahead.take(np.array([7]))
    ahead.close()


def test_the_rows_read_ahead_are_a_copy(reader):
    ahead = BatchPrefetcher(reader)
    rows = np.array([1, 2])
    ahead.start(rows)
    rows[0] = 9  # the caller reuses its array: the read ahead is still of [1, 2]
    assert ahead.take(np.array([1, 2])).tolist() == [10, 20] and ahead.hits == 1
    ahead.close()


def test_the_dataset_is_never_read_by_two_threads_at_once(reader):
    ahead = BatchPrefetcher(reader)
    rng = np.random.default_rng(0)
    for _ in range(20):
        ahead.start(rng.integers(0, 3, size=2))
        ahead.take(rng.integers(0, 3, size=2))  # often a miss: read while the guess may run
    ahead.start(np.array([1]))
    ahead.start(np.array([2]))  # a second start waits for the first read
    ahead.close()
    assert reader.most_active == 1

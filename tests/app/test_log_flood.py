"""A failure repeating in a tight loop cannot flood the log (issue 12, finding 8)."""

from __future__ import annotations

import logging
import time

from app.logs import RateLimitRepeats


def test_repeats_beyond_the_burst_are_dropped_and_counted() -> None:
    limiter = RateLimitRepeats(burst=5, window=0.3)
    logger = logging.getLogger("tests.flood")

    def record(message: str) -> logging.LogRecord:
        return logger.makeRecord(logger.name, logging.ERROR, __file__, 1, message, (), None)

    passed = [limiter.filter(record("cannot reach %s")) for _ in range(1000)]
    assert sum(passed) == 5
    assert limiter.filter(record("another message"))  # other kinds are not affected
    time.sleep(0.35)
    later = record("cannot reach %s")
    assert limiter.filter(later)
    assert "[995 similar lines dropped]" in str(later.msg)

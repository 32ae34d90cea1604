"""The beat scheduler: redbeat's, made to outlive a Redis that went away or restarted empty.

redbeat keeps its lock and the schedule in Redis. Left alone, a Redis restart without
persistence takes both: the next tick fails to extend the lock it no longer owns and beat
dies (inside ``celery worker -B`` the worker runs on, and no sync is ever scheduled again);
a Redis that is down for a tick kills beat the same way. Here a tick that meets an
unreachable Redis is skipped, and a lost lock is taken again, waiting while another beat
holds it as a beat starting up does, then the schedule is installed again.
"""

from __future__ import annotations

from typing import Any

import redis
import structlog
from redbeat import RedBeatScheduler

log = structlog.get_logger("healthapp.sync.beat")

#: Seconds to the next tick after one that could not reach Redis.
RETRY_SECONDS = 1.0


class ResilientScheduler(RedBeatScheduler):
    """redbeat's scheduler that survives Redis restarts (``--scheduler`` names it)."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            try:
                return float(super().tick(*args, **kwargs))
            except redis.exceptions.LockNotOwnedError:
                self._take_lock_again()
                return float(super().tick(*args, **kwargs))
        except (redis.ConnectionError, redis.TimeoutError) as error:
            log.warning("beat: Redis unreachable, tick skipped", error=type(error).__name__)
            return RETRY_SECONDS

    def _take_lock_again(self) -> None:
        """Take the lock Redis lost, then install the schedule it lost with it."""
        log.warning("beat: lost the lock (Redis restarted?); taking it again")
        self.lock.acquire()  # blocks while another beat holds it
        self.setup_schedule()
        log.warning("beat: lock taken again, schedule installed")

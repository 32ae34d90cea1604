"""What the soak's clients measure: per route, the statuses, errors, unexpected answers and
latencies; and the check-up ids the server accepted or refused."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

GROWTH = 1.02
_LOG_GROWTH = math.log(GROWTH)
_SMALLEST_MS = 0.01


class Histogram:
    """Latencies in milliseconds in 2%-wide logarithmic buckets: memory bounded however long
    the run, percentiles within 1%."""

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.max = 0.0

    def add(self, ms: float) -> None:
        self.buckets[int(math.log(max(ms, _SMALLEST_MS) / _SMALLEST_MS) / _LOG_GROWTH)] += 1
        self.count += 1
        self.max = max(self.max, ms)

    def merge(self, other: Histogram) -> None:
        self.buckets.update(other.buckets)
        self.count += other.count
        self.max = max(self.max, other.max)

    def percentile(self, p: float) -> float:
        if not self.count:
            return float("nan")
        rank = max(1, math.ceil(p / 100 * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return min(_SMALLEST_MS * GROWTH ** (index + 0.5), self.max)
        return self.max


@dataclass
class RouteStats:
    """What one route's requests got: statuses, errors, unexpected answers, latencies."""

    requests: int = 0
    errors: int = 0
    unexpected: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latency: Histogram = field(default_factory=Histogram)

    def record(self, status: int | None, ms: float, *, expected: bool) -> None:
        self.requests += 1
        self.statuses[status or 0] += 1
        if status is None or status >= 500:
            self.errors += 1
        elif not expected:
            self.unexpected += 1
        if status is not None:
            self.latency.add(ms)

    def merge(self, other: RouteStats) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.unexpected += other.unexpected
        self.statuses.update(other.statuses)
        self.latency.merge(other.latency)


@dataclass
class Tally:
    """One client's (then one process's, then the run's) results."""

    routes: dict[str, RouteStats] = field(default_factory=dict)
    #: Check-up ids the server said it stored (created, or a duplicate of a stored one).
    accepted: set[str] = field(default_factory=set)
    #: Ids of invalid items the server turned away: never to be stored.
    refused: set[str] = field(default_factory=set)
    #: Ids of sessions that never got an answer: stored or not, nobody knows.
    unknown: set[str] = field(default_factory=set)
    uploads: Counter[str] = field(default_factory=Counter)
    wrong_answers: int = 0
    wrong_examples: list[str] = field(default_factory=list)
    reconnects: int = 0

    def route(self, key: str) -> RouteStats:
        if key not in self.routes:
            self.routes[key] = RouteStats()
        return self.routes[key]

    def wrong(self, message: str) -> None:
        self.wrong_answers += 1
        if len(self.wrong_examples) < 10:
            self.wrong_examples.append(message)

    def merge(self, other: Tally) -> None:
        for key, stats in other.routes.items():
            self.route(key).merge(stats)
        self.accepted |= other.accepted
        self.refused |= other.refused
        self.unknown |= other.unknown
        self.uploads.update(other.uploads)
        self.wrong_answers += other.wrong_answers
        self.wrong_examples.extend(other.wrong_examples[: 10 - len(self.wrong_examples)])
        self.reconnects += other.reconnects

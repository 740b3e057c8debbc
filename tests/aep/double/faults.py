"""Fault injection for the AEP double.

Transport faults, applied to a request before or after the double handles it:

* ``429``, ``500``, ``503``: answered at once with that status; the request is **not**
  processed (what a gateway or an overloaded service does);
* ``timeout``: the request **is** processed, then the answer is held back longer than the
  client's timeout (a POST that succeeded although the client gave up);
* ``drop``: the request **is** processed, then the connection is closed without an answer;
* ``drop_before``: the connection is closed before anything is processed;
* ``late``: the connection is closed at once, and the request is processed
  ``late_s`` seconds later (AEP took it and finished it after the client gave up: a
  creation must be looked up long enough, or it is made twice).

A ``429`` carries ``Retry-After`` (the double's ``retry_after_s``); a request to the same
method and path before that time has passed is an *early retry*, counted by the double
and recorded as a violation.

Rules match a method and a path substring (or anything) and fire a number of times, or
with a probability (seeded) in random mode. Behaviour faults (a batch that fails, a
query that fails or hangs, a flow run that never finishes, a flow that is "not ready")
are flags the services read, set with :meth:`FaultPlan.behave`.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field

TRANSPORT_KINDS = ("429", "500", "503", "timeout", "drop", "drop_before", "late")
# What random mode draws by default: "late" is opt-in (it needs a client look-up window
# longer than late_s, which the tests set where they use it).
RANDOM_KINDS = ("429", "500", "503", "timeout", "drop", "drop_before")


@dataclass
class Rule:
    kind: str
    method: str | None = None
    path: str | None = None  # substring of the request path
    times: int = 1

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or self.path in path)


@dataclass
class FaultPlan:
    rules: list[Rule] = field(default_factory=list)
    rate: float = 0.0
    kinds: tuple[str, ...] = RANDOM_KINDS
    exclude: tuple[str, ...] = ()  # path substrings random mode leaves alone
    seed: int = 0
    each_op: str | None = None  # this fault hits the first call of every operation
    seen_ops: set = field(default_factory=set)
    injected: Counter = field(default_factory=Counter)
    injected_paths: Counter = field(default_factory=Counter)  # transport faults by request path
    behaviours: Counter = field(default_factory=Counter)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)

    def add(self, kind: str, method: str | None = None, path: str | None = None, times: int = 1) -> None:
        if kind not in TRANSPORT_KINDS:
            raise ValueError(kind)
        with self._lock:
            self.rules.append(Rule(kind, method, path, times))

    def random(self, rate: float, kinds: tuple[str, ...] = RANDOM_KINDS, seed: int = 0,
               exclude: tuple[str, ...] = ()) -> None:
        with self._lock:
            self.rate, self.kinds, self.exclude = rate, kinds, exclude
            self._rng = random.Random(seed)

    def every_operation(self, kind: str) -> None:
        """Inject ``kind`` into the first call of each distinct operation from now on."""
        if kind not in TRANSPORT_KINDS:
            raise ValueError(kind)
        with self._lock:
            self.each_op, self.seen_ops = kind, set()

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.rate = 0.0
            self.each_op = None
            self.behaviours.clear()

    def take(self, method: str, path: str, op: str = "") -> str | None:
        """The fault to inject into this request, if any (and count it). ``op`` names the
        operation (method and path template)."""
        with self._lock:
            kind = None
            if self.each_op and op and op not in self.seen_ops:
                self.seen_ops.add(op)
                kind = self.each_op
            else:
                for rule in self.rules:
                    if rule.times > 0 and rule.matches(method, path):
                        rule.times -= 1
                        kind = rule.kind
                        break
                else:
                    if self.rate and not any(x in path for x in self.exclude) and self._rng.random() < self.rate:
                        kind = self._rng.choice(self.kinds)
            if kind is not None:
                self.injected[kind] += 1
                self.injected_paths[path] += 1
            return kind

    # --- behaviour faults -----------------------------------------------------------------
    def behave(self, name: str, times: int = 1) -> None:
        """Arm a behaviour fault: ``fail_batch``, ``fail_query``, ``hang_query``,
        ``hang_run``, ``fail_run``, ``fail_job``, ``not_ready`` (times = how many)."""
        with self._lock:
            self.behaviours[name] += times

    def consume(self, name: str) -> bool:
        with self._lock:
            if self.behaviours[name] > 0:
                self.behaviours[name] -= 1
                self.injected[name] += 1
                return True
            return False

    @property
    def total(self) -> int:
        return sum(self.injected.values())

"""Injected faults: per path pattern, the chance of a 500, a 503, a forced 429, a dropped connection, a slow answer.

Spec syntax (for `--faults` and the admin surface), rules separated by `;`:

    PATTERN:KIND=P[,KIND=P...]        e.g. "/api/3/*:500=0.1,503=0.05,drop=0.05,slow=0.1@2.0;/api/3/import/*:429=0.2"

PATTERN is a shell-style glob on the request path (`*` also matches `/`). KIND is one of 500, 503, 429, drop,
slow; P is a probability in [0, 1] and a rule's probabilities add up to at most 1. `slow=P@S` delays the answer by
S seconds (divided by the speed; S defaults to 1). A request draws one random number per matching rule, in
rule order; the first rule that draws a fault decides. Same seed and same request sequence: same faults.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass, field
from typing import Any

KINDS = ("500", "503", "429", "drop", "slow")
DEFAULT_SLOW_SECONDS = 1.0


class FaultSpecError(ValueError):
    """A fault spec that cannot be read; the message says which part and what is expected."""


@dataclass(frozen=True)
class Fault:
    """One fault to inject: `kind` from KINDS; `seconds` is the delay of a slow answer at speed 1."""

    kind: str
    seconds: float = 0.0


@dataclass(frozen=True)
class FaultRule:
    pattern: str
    chances: dict[str, float] = field(default_factory=dict)
    slow_seconds: float = DEFAULT_SLOW_SECONDS

    def draw(self, u: float) -> Fault | None:
        """The fault that the uniform number `u` falls on, if any (kinds in KINDS order)."""
        cumulative = 0.0
        for kind in KINDS:
            cumulative += self.chances.get(kind, 0.0)
            if u < cumulative:
                return Fault(kind, self.slow_seconds if kind == "slow" else 0.0)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"pattern": self.pattern, **self.chances, "slow_seconds": self.slow_seconds}

    def to_spec(self) -> str:
        parts = []
        for kind in KINDS:
            if kind in self.chances:
                suffix = f"@{self.slow_seconds:g}" if kind == "slow" else ""
                parts.append(f"{kind}={self.chances[kind]:g}{suffix}")
        return f"{self.pattern}:{','.join(parts)}"


def _rule(pattern: str, chances: dict[str, float], slow_seconds: float) -> FaultRule:
    if not pattern.startswith("/"):
        raise FaultSpecError(f"Fault pattern {pattern!r} must be a path glob starting with '/', e.g. /api/3/*.")
    for kind, chance in chances.items():
        if kind not in KINDS:
            raise FaultSpecError(f"Unknown fault kind {kind!r} for {pattern}; use one of {', '.join(KINDS)}.")
        if not 0.0 <= chance <= 1.0:
            raise FaultSpecError(f"Fault probability {kind}={chance} for {pattern} must be between 0 and 1.")
    if sum(chances.values()) > 1.0 + 1e-9:
        raise FaultSpecError(f"Fault probabilities for {pattern} add up to more than 1; lower some of them.")
    if slow_seconds < 0:
        raise FaultSpecError(f"Slow delay for {pattern} must be zero or more seconds.")
    return FaultRule(pattern, chances, slow_seconds)


def parse_spec(spec: str) -> list[FaultRule]:
    """Rules from the compact string syntax (see the module docstring); an empty spec means no faults."""
    rules = []
    for text in filter(None, (part.strip() for part in spec.split(";"))):
        pattern, colon, body = text.partition(":")
        if not colon or not body.strip():
            raise FaultSpecError(f"Fault rule {text!r} needs PATTERN:KIND=P, e.g. /api/3/*:500=0.1.")
        chances: dict[str, float] = {}
        slow_seconds = DEFAULT_SLOW_SECONDS
        for item in body.split(","):
            kind, equals, value = item.strip().partition("=")
            if not equals:
                raise FaultSpecError(f"Fault {item!r} in {text!r} needs KIND=P, e.g. 503=0.05 or slow=0.1@2.")
            if kind == "slow" and "@" in value:
                value, _, seconds = value.partition("@")
                slow_seconds = _number(seconds, text)
            chances[kind] = _number(value, text)
        rules.append(_rule(pattern.strip(), chances, slow_seconds))
    return rules


def parse_rules(items: list[Any]) -> list[FaultRule]:
    """Rules from their JSON form: [{"pattern": "/api/3/*", "500": 0.1, "slow": 0.1, "slow_seconds": 2}]."""
    rules = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("pattern"), str):
            raise FaultSpecError(f'Each fault rule must be an object with a "pattern" string, got {item!r}.')
        chances = {k: _number(v, item["pattern"]) for k, v in item.items() if k not in ("pattern", "slow_seconds")}
        slow_seconds = _number(item.get("slow_seconds", DEFAULT_SLOW_SECONDS), item["pattern"])
        rules.append(_rule(item["pattern"], chances, slow_seconds))
    return rules


def _number(value: Any, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise FaultSpecError(f"{value!r} in fault rule {where!r} is not a number.") from None


class FaultPlan:
    """The rules in force and the seeded random generator that decides, request by request."""

    def __init__(self, rules: list[FaultRule], seed: int) -> None:
        self.rules = rules
        self.seed = seed
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, faults: str | dict[str, Any] | None, seed: int) -> FaultPlan:
        """From a spec string, or a dict {"spec": "..."} / {"rules": [...]} with an optional "seed"."""
        if faults is None:
            return cls([], seed)
        if isinstance(faults, str):
            return cls(parse_spec(faults), seed)
        seed = int(faults.get("seed", seed))
        if isinstance(faults.get("spec"), str):
            return cls(parse_spec(faults["spec"]), seed)
        if isinstance(faults.get("rules"), list):
            return cls(parse_rules(faults["rules"]), seed)
        raise FaultSpecError('Faults must be a spec string, or a JSON object with "spec" or "rules".')

    def decide(self, path: str) -> Fault | None:
        if not self.rules:
            return None
        with self._lock:
            for rule in self.rules:
                if fnmatch.fnmatchcase(path, rule.pattern):
                    fault = rule.draw(self._random.random())
                    if fault is not None:
                        return fault
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "spec": ";".join(rule.to_spec() for rule in self.rules),
            "rules": [rule.to_dict() for rule in self.rules],
        }

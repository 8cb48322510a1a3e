"""The layout of analyze's state, owned here alone: what the engine keeps per cluster (open
alerts, cooldowns, flaps, first-seen times, each rule's own slice), its bounds, and the check of a
state read back from the file (doorman.analyze.state reads and writes the file; the engine and
flaps only follow this layout).
"""

from __future__ import annotations

from typing import Any

from doorman.analyze.ruleset import RuleSet, default_rules
from doorman.contract.severity import SEVERITIES
from doorman.contract.shapes import is_num, map_of
from doorman.timefmt import parse_iso

STATE_KIND = "doorman-analyze-state"
MAX_CLUSTERS = 64
MAX_ALERTS = 10000
MAX_FLAPS = 1000


def new_state() -> dict[str, Any]:
    return {"v": 1, "kind": STATE_KIND, "clusters": {}}


def new_cluster(rules: RuleSet) -> dict[str, Any]:
    """One cluster's memory: the open alerts, the cooldowns, and each rule's own slice."""
    return {"now": None, "alerts": {}, "cooldown": {}, "flaps": {}, "started": {},
            "rules": {r.name: r.initial_state() for r in rules.rules}}


def _entry_ok(e: Any, alert_types: tuple[str, ...]) -> bool:
    if not isinstance(e, dict) or e.get("alert_type") not in alert_types:
        return False
    if not isinstance(e.get("subject"), str) or not isinstance(e.get("title"), str):
        return False
    if type(e.get("emitted")) is not bool or type(e.get("sent")) is not int:
        return False
    if e["emitted"] and (not is_num(e.get("last_sent")) or e.get("sent_severity") not in SEVERITIES):
        return False
    if e.get("peak_severity") is not None and e["peak_severity"] not in SEVERITIES:
        return False
    try:
        parse_iso(e["started_at"])
    except (ValueError, OverflowError, OSError, TypeError, KeyError):
        return False
    return True


def _flap_ok(f: Any) -> bool:
    return (isinstance(f, dict) and type(f.get("occurrences")) is int and is_num(f.get("since"))
            and (f.get("sent") is None or is_num(f["sent"])) and (f.get("quiet_since") is None or is_num(f["quiet_since"]))
            and all(isinstance(f.get(k), str) for k in ("alert_type", "subject", "title"))
            and (f.get("severity") is None or f["severity"] in SEVERITIES))


def _upgrade(c: dict[str, Any], rules: RuleSet) -> None:
    """A cluster written before rules had slices kept their keys at the top: move them in."""
    if "rules" in c:
        return
    legacy = {k: c.pop(k) for k in list(c) if k not in ("now", "alerts", "cooldown")}
    c["rules"] = {}
    for r in rules.rules:  # each old key goes to the first rule whose whole state it makes up
        mine = r.initial_state()
        if mine and all(k in legacy for k in mine):
            mine = {k: legacy.pop(k) for k in mine}
        c["rules"][r.name] = mine


def _cluster_problem(c: Any, rules: RuleSet) -> str | None:
    if not isinstance(c, dict) or not (c.get("now") is None or is_num(c.get("now"))):
        return "malformed"
    _upgrade(c, rules)
    if not (map_of(c.get("cooldown"), is_num) and isinstance(c.get("rules"), dict)
            and map_of(c.setdefault("started", {}), is_num) and map_of(c.setdefault("flaps", {}), _flap_ok)):
        return "malformed cooldowns, flaps or rules"
    if not map_of(c.get("alerts"), lambda e: _entry_ok(e, rules.alert_types)) or len(c["alerts"]) > MAX_ALERTS:
        return "malformed alerts"
    for rule in rules.rules:
        mine = c["rules"].setdefault(rule.name, rule.initial_state())
        problem = rule.state_problem(mine) if isinstance(mine, dict) else "expected an object"
        if problem:
            return f"rule {rule.name}: {problem}"
    return None


def state_problem(obj: Any, rules: RuleSet | None = None) -> str | None:
    """Why `obj` is not a state this version wrote (None: it is). Upgrades older layouts in place."""
    if not isinstance(obj, dict) or obj.get("kind") != STATE_KIND:
        return "not a doorman-analyze state file"
    if obj.get("v") != 1:
        return f"unknown state version {obj.get('v')!r}"
    clusters = obj.get("clusters")
    if not isinstance(clusters, dict) or len(clusters) > MAX_CLUSTERS:
        return "malformed clusters"
    rules = rules or default_rules()
    for name, c in clusters.items():
        problem = _cluster_problem(c, rules)
        if problem:
            return f"malformed state of cluster {name!r} ({problem})"
    return None

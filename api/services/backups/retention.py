"""Which snapshots to delete: a pure function of their times and the policy.

Policy (the semantics restic's --keep-daily / --keep-weekly use): of the newest `daily` UTC days that
have a snapshot, keep the newest snapshot of each; of the newest `weekly` ISO weeks (Monday to Sunday,
UTC) that have one, keep the newest of each. Days and weeks without a snapshot do not count, so a studio
that was off for a month still keeps `daily` snapshots. The two rules are applied independently and what
either keeps is kept. The newest snapshot is always kept, whatever the policy.
"""

from datetime import datetime, timezone


def _utc(t: datetime) -> datetime:
    return t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _newest_per(stamps, key, count):
    """The newest stamp of each of the newest `count` distinct keys (stamps sorted newest first)."""
    kept, seen = set(), set()
    for t in stamps:
        k = key(_utc(t))
        if k in seen:
            continue
        if len(seen) == count:
            break
        seen.add(k)
        kept.add(t)
    return kept


def to_delete(stamps, daily: int, weekly: int) -> set:
    """The subset of `stamps` (datetimes, naive ones read as UTC) that the policy does not keep."""
    ordered = sorted(set(stamps), key=_utc, reverse=True)
    if not ordered:
        return set()
    keep = {ordered[0]}
    keep |= _newest_per(ordered, lambda t: t.date(), max(0, daily))
    keep |= _newest_per(ordered, lambda t: t.isocalendar()[:2], max(0, weekly))
    return set(ordered) - keep

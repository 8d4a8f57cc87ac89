"""Retention: which snapshots the policy deletes, for hand-computed cases (2026-03-02 is a Monday)."""

from datetime import datetime, timedelta, timezone

from api.services.backups.retention import to_delete


def t(s):
    return datetime.strptime(s, '%Y-%m-%d %H:%M').replace(tzinfo=timezone.utc)


def days(first, n, hour='03:00'):
    start = t(f'{first} {hour}')
    return [start + timedelta(days=i) for i in range(n)]


def test_calendar_used_by_these_cases():
    assert t('2026-03-02 00:00').isoweekday() == 1 and t('2026-03-30 00:00').isoweekday() == 1


def test_nothing_to_delete():
    assert to_delete([], 7, 4) == set()
    assert to_delete([t('2026-03-05 10:00')], 0, 0) == set()


def test_fewer_days_than_kept():
    stamps = days('2026-03-01', 3)
    assert to_delete(stamps, 7, 0) == set()
    assert to_delete(stamps, 7, 4) == set()


def test_same_day_keeps_its_newest():
    stamps = [t('2026-03-05 09:00'), t('2026-03-05 12:00'), t('2026-03-05 18:00')]
    assert to_delete(stamps, 7, 4) == {t('2026-03-05 09:00'), t('2026-03-05 12:00')}


def test_daily_window():
    stamps = days('2026-03-01', 10)
    assert to_delete(stamps, 7, 0) == set(days('2026-03-01', 3))


def test_days_without_a_snapshot_do_not_count():
    stamps = [t('2026-01-01 03:00'), t('2026-02-01 03:00'), t('2026-03-01 03:00')]
    assert to_delete(stamps, 2, 0) == {t('2026-01-01 03:00')}


def test_weeks_run_monday_to_sunday_utc():
    # ISO week 9 ends Sunday 1 March; week 10 is 2-8 March; week 11 starts Monday 9 March
    stamps = [t('2026-03-01 23:59'), t('2026-03-02 00:00'), t('2026-03-08 12:00'), t('2026-03-09 08:00'),
              t('2026-03-10 08:00')]
    assert to_delete(stamps, 1, 3) == {t('2026-03-02 00:00'), t('2026-03-09 08:00')}
    assert to_delete(stamps, 1, 1) == set(stamps) - {t('2026-03-10 08:00')}


def test_daily_and_weekly_together_over_a_month():
    stamps = days('2026-03-01', 31)           # 1 .. 31 March, 03:00
    kept = {t(f'2026-03-{d:02d} 03:00') for d in (15, 22, 25, 26, 27, 28, 29, 30, 31)}
    # daily 7: 25-31; weekly 4: 31 (week of 30 March), 29 (23-29), 22 (16-22), 15 (9-15)
    assert to_delete(stamps, 7, 4) == set(stamps) - kept
    assert len(to_delete(stamps, 7, 4)) == 22


def test_no_policy_keeps_only_the_newest():
    stamps = days('2026-03-01', 5)
    assert to_delete(stamps, 0, 0) == set(stamps[:-1])


def test_naive_times_are_utc_and_order_does_not_matter():
    aware = [t('2026-03-05 09:00'), t('2026-03-05 18:00'), t('2026-03-04 18:00')]
    naive = [s.replace(tzinfo=None) for s in aware]
    assert to_delete(list(reversed(aware)), 1, 0) == {aware[0], aware[2]}
    assert to_delete(naive, 1, 0) == {naive[0], naive[2]}

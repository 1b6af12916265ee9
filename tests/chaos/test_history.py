"""Unit tests of the write-history checker (tests/chaos/history.py) on synthetic logs.

No database: the attempts are built by hand, so every rule of the checker (lost writes,
cancelled sync waits, dual primaries by timeline and by node, downtime and gap) is
pinned down independently of any cluster.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chaos.history import Attempt, Event, check, median_max, split_host  # noqa: E402


def log(*spec):
    """spec items: (id, node, t_done, tli) acked, or (id, node, t_done, None, 'error')."""
    out = []
    for s in spec:
        ident, node, t, tli = s[:4]
        if len(s) > 4 and s[4] == "error":
            out.append(Attempt(ident, node, t - 0.01, t, False, error="OperationalError: x"))
        elif len(s) > 4 and s[4] == "cancelled":
            out.append(Attempt(ident, node, t - 0.01, t, True, tli, sync_cancelled=True))
        else:
            out.append(Attempt(ident, node, t - 0.01, t, True, tli))
    return out


def clean_failover():
    """a writes on tli 1 until the crash at t=10, b acks from t=14.5 on tli 2."""
    a = log((1, "a", 9.0, 1), (2, "a", 9.5, 1), (3, "a", 10.2, None, "error"),
            (4, "b", 12.0, None, "error"), (5, "b", 14.5, 2), (6, "b", 15.0, 2))
    return a, [Event(10.0, "crash", "a")]


def test_clean_failover_passes():
    attempts, events = clean_failover()
    r = check(attempts, {1, 2, 5, 6}, events)
    assert r.lost == [] and r.lost_sync_cancelled == []
    assert not r.dual_primary and r.violations == []
    assert (r.attempts, r.acked, r.errors) == (6, 4, 2)
    assert r.committed_unacked == []


def test_downtime_and_gap_computed():
    attempts, events = clean_failover()
    r = check(attempts, {1, 2, 5, 6}, events)
    (e,) = r.events
    assert e.old_node == "a" and e.new_node == "b"
    assert abs(e.downtime - 4.5) < 1e-9          # crash at 10.0, first ack on b at 14.5
    assert abs(e.gap - 5.0) < 1e-9               # last ack before it: a at 9.5
    assert e.errors_until_new == 2
    assert e.old_acks_after == 0


def test_lost_acknowledged_write_detected():
    attempts, events = clean_failover()
    r = check(attempts, {1, 5, 6}, events, final_by_node={"a": {1, 2}, "b": {1, 5, 6}})
    assert r.lost == [2]
    assert r.lost_where == {2: ["a"]}
    assert not r.dual_primary


def test_error_attempt_that_committed_is_not_lost_nor_counted_as_ack():
    attempts, events = clean_failover()
    r = check(attempts, {1, 2, 3, 5, 6}, events)
    assert r.lost == []
    assert r.committed_unacked == [3]
    assert r.acked == 4


def test_cancelled_sync_wait_reported_apart_from_lost():
    attempts = log((1, "a", 1.0, 1), (2, "a", 1.1, 1, "cancelled"), (3, "b", 5.0, 2))
    r = check(attempts, {1, 3}, [Event(2.0, "crash", "a")])
    assert r.lost == []
    assert r.lost_sync_cancelled == [2]


def test_dual_primary_old_node_acks_after_new_one_by_timeline():
    # b was promoted (tli 2) and acks, then a (still on tli 1) acks again: overlap
    attempts = log((1, "a", 1.0, 1), (2, "b", 5.0, 2), (3, "a", 5.1, 1), (4, "b", 5.2, 2))
    r = check(attempts, {1, 2, 3, 4})
    assert r.dual_primary
    assert any("timeline 1" in v for v in r.violations)


def test_dual_primary_same_timeline_on_two_nodes():
    attempts = log((1, "a", 1.0, 2), (2, "b", 5.0, 2))
    r = check(attempts, {1, 2}, [Event(3.0, "crash", "a")])
    assert r.dual_primary


def test_dual_primary_by_node_rule_without_timelines():
    # no timelines recorded: a, b, a again within one failover window
    attempts = log((1, "a", 1.0, None), (2, "b", 5.0, None), (3, "a", 6.0, None))
    r = check(attempts, {1, 2, 3}, [Event(3.0, "crash", "a")])
    assert r.dual_primary
    assert any("switched back" in v for v in r.violations)


def test_switch_back_after_second_event_is_legal():
    # switchover a->b (tli 2), later switchover b->a (tli 3): two events, two switches
    attempts = log((1, "a", 1.0, 1), (2, "b", 3.0, 2), (3, "b", 4.0, 2), (4, "a", 7.0, 3))
    events = [Event(2.0, "switchover", "a"), Event(6.0, "switchover", "b")]
    r = check(attempts, {1, 2, 3, 4}, events)
    assert not r.dual_primary, r.violations
    assert [e.new_node for e in r.events] == ["b", "a"]
    assert abs(r.events[1].gap - 3.0) < 1e-9


def test_unexpected_failover_before_any_event_is_a_violation():
    attempts = log((1, "a", 1.0, None), (2, "b", 2.0, None), (3, "b", 3.0, None))
    r = check(attempts, {1, 2, 3}, [Event(5.0, "crash", "b")])
    assert r.dual_primary
    assert any("before any injected event" in v for v in r.violations)


def test_timeline_going_back_on_one_node():
    attempts = log((1, "a", 1.0, 3), (2, "a", 2.0, 2))
    r = check(attempts, {1, 2})
    assert r.dual_primary


def test_nothing_checkable_is_said():
    attempts = log((1, "a", 1.0, None), (2, "b", 2.0, None))
    r = check(attempts, {1, 2})
    assert not r.dual_primary
    assert r.notes


def test_no_new_primary_means_no_downtime():
    attempts = log((1, "a", 1.0, 1), (2, "a", 3.0, None, "error"))
    r = check(attempts, {1}, [Event(2.0, "crash", "a")])
    (e,) = r.events
    assert e.downtime is None and e.new_node is None
    assert e.old_acks_after == 0


def test_switchover_old_primary_keeps_acking_until_demoted():
    attempts = log((1, "a", 1.0, 1), (2, "a", 2.1, 1), (3, "a", 2.2, 1), (4, "b", 2.9, 2))
    r = check(attempts, {1, 2, 3, 4}, [Event(2.0, "switchover", "a")])
    (e,) = r.events
    assert e.old_acks_after == 2
    assert abs(e.gap - 0.7) < 1e-9
    assert abs(e.downtime - 0.9) < 1e-9
    assert not r.dual_primary


def test_helpers():
    assert split_host("10.0.0.1:5433") == ("10.0.0.1", "5433")
    assert split_host("db") == ("db", None)
    assert median_max([3, None, 1, 2]) == (2, 3)
    assert median_max([None]) == (None, None)

"""Unit tests of the chaos suite's own logic (no root, no daemons, a few
seconds): the seeded plan, the real-time role model, the WAL parser behind
the torn-write fault, and the history slice the shrinker prints.

    python3 tests/chaos/selftest.py
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import corrupt_wal_tail, wal_valid_end  # noqa: E402
from model import Model, status_of  # noqa: E402
from plan import make_plan  # noqa: E402
from shrink import slice_history  # noqa: E402
from checker import Failure, Verdict, back_in_since_out, history_holds  # noqa: E402

DEVICES = {"ada": "ada@example.com", "cyd": "cyd@example.com", "dan": "dan@example.com"}


def model() -> Model:
    return Model({"it": ["cyd@example.com"]},
                 {"Ops": {"group:it": "editor", "user:dan@example.com": "member"}},
                 "ada@example.com", DEVICES)


class PlanTest(unittest.TestCase):
    def test_a_seed_gives_the_same_plan(self):
        a, b = make_plan(7, 60, 5), make_plan(7, 60, 5)
        self.assertEqual(a.to_json(), b.to_json())
        self.assertNotEqual(a.to_json(), make_plan(8, 60, 5).to_json())

    def test_edits_name_items_an_earlier_add_created(self):
        p = make_plan(3, 120, 6)
        added: dict[str, float] = {}
        for o in sorted(p.ops, key=lambda o: o.t):
            if o.kind == "add":
                added[o.args["name"]] = o.t
            if o.kind in ("edit", "rm", "restore", "totp_set"):
                self.assertIn(o.args["item"], added, o)
                self.assertLessEqual(added[o.args["item"]], o.t)

    def test_dan_writing_to_ops_is_statically_forbidden(self):
        p = make_plan(5, 120, 5)
        for o in p.ops:
            if o.dev == "dan" and o.kind in ("add", "edit", "import") and o.args.get("folder") == "Ops":
                self.assertTrue(o.static_forbidden, o)
            if o.dev == "ada":
                self.assertFalse(o.static_forbidden, o)

    def test_without_leaves_kinds_out_and_keeps_the_rest(self):
        full = make_plan(9, 120, 5)
        cut = make_plan(9, 120, 5, frozenset({"revoke", "user_remove", "net"}))
        kinds = {o.kind for o in cut.ops} | {f.kind for f in cut.faults}
        self.assertFalse(kinds & {"revoke", "user_remove", "invite", "net"})
        keep = [o for o in full.ops if o.kind not in ("revoke", "user_remove", "invite")]
        self.assertEqual([o.id for o in keep], [o.id for o in cut.ops])


class ModelTest(unittest.TestCase):
    def test_a_removal_answered_before_the_write_forbids_it(self):
        m = model()
        self.assertTrue(m.may_write("cyd", "Ops", 1, 2))
        m.record(("member", "it", "cyd@example.com"), 10, 11, False, 0)
        self.assertTrue(m.may_write("cyd", "Ops", 10.5, 10.6), "in flight: undecided")
        self.assertFalse(m.may_write("cyd", "Ops", 12, 13))
        self.assertTrue(m.may_write("cyd", "Ops", 5, 12), "started before the removal ended")

    def test_a_refused_removal_changes_nothing_and_an_uncertain_one_decides_nothing(self):
        m = model()
        m.record(("member", "it", "cyd@example.com"), 10, 11, False, 10)
        self.assertTrue(m.may_write("cyd", "Ops", 12, 13))
        m.record(("member", "it", "cyd@example.com"), 20, 21, False, None)
        self.assertTrue(m.may_write("cyd", "Ops", 30, 31))
        m.record(("member", "it", "cyd@example.com"), 40, 41, False, 0)
        self.assertFalse(m.may_write("cyd", "Ops", 42, 43))

    def test_another_path_keeps_the_right(self):
        m = model()
        m.record(("grant", "Ops", "user:cyd@example.com"), 5, 6, "editor", 0)
        m.record(("member", "it", "cyd@example.com"), 10, 11, False, 0)
        self.assertTrue(m.may_write("cyd", "Ops", 12, 13))
        m.record(("grant", "Ops", "user:cyd@example.com"), 14, 15, "member", 0)
        self.assertFalse(m.may_write("cyd", "Ops", 16, 17))
        self.assertTrue(m.may("cyd", "Ops", 16, 17, 1), "a Folder Member still reads")

    def test_a_grant_in_flight_or_uncertain_may_have_given_the_right(self):
        m = model()
        self.assertFalse(m.may_write("dan", "Ops", 1, 2))
        m.record(("grant", "Ops", "user:dan@example.com"), 10, 12, "editor", None)
        self.assertTrue(m.may_write("dan", "Ops", 11, 11.5))
        self.assertTrue(m.may_write("dan", "Ops", 20, 21))

    def test_removed_users_and_revoked_devices_write_nothing_and_the_admin_always_may(self):
        m = model()
        m.record(("removed", "cyd@example.com"), 10, 11, True, 0)
        self.assertFalse(m.may_write("cyd", "Ops", 12, 13))
        m.record(("revoked", "ada"), 10, 11, True, 0)
        self.assertTrue(m.may_write("ada", "Ops", 12, 13))

    def test_a_writer_may_not_know_a_removed_device_was_back_in(self):
        m = model()
        m.record(("member", "it", "cyd@example.com"), 10, 11, False, 0)
        moments = [0.0, 10, 11, 20, 21, 30, 31]
        self.assertFalse(back_in_since_out(m, "cyd", "Ops", 40, 50, moments), "out for good")
        m.record(("member", "it", "cyd@example.com"), 20, 21, True, 0)
        m.record(("removed", "cyd@example.com"), 30, 31, True, 0)
        self.assertTrue(back_in_since_out(m, "cyd", "Ops", 40, 50, moments), "out, back in, out: stale writer")
        self.assertFalse(back_in_since_out(m, "cyd", "Ops", 10.5, 50, moments), "never out before the write")

    def test_exit_11_is_a_refusal_only_when_the_cli_never_connected(self):
        self.assertEqual(status_of(11, "cofferd is not available: cannot connect to cofferd"), "refused")
        self.assertEqual(status_of(11, "cofferd is not available: connection reset"), "uncertain")
        self.assertEqual(status_of(1, "database error: database or disk is full"), "refused")
        self.assertEqual(status_of(None), "uncertain")
        self.assertEqual(status_of(0), "acked")


class WalTest(unittest.TestCase):
    def test_a_torn_frame_after_the_last_commit_loses_nothing(self):
        d = Path(tempfile.mkdtemp())
        try:
            db = d / "v.sqlite3"
            con = sqlite3.connect(db)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA wal_autocheckpoint=0")
            con.execute("CREATE TABLE t (x BLOB)")
            for _ in range(30):
                con.execute("INSERT INTO t VALUES (?)", (os.urandom(500),))
                con.commit()
            wal = Path(str(db) + "-wal")
            data = wal.read_bytes()
            end, page, _ = wal_valid_end(data)
            self.assertEqual(end, len(data))
            self.assertEqual(page, 4096)
            copy = d / "copy.sqlite3"
            shutil.copy(db, copy)
            shutil.copy(wal, str(copy) + "-wal")
            con.close()
            self.assertIn("torn frame written", corrupt_wal_tail(copy, 1))
            self.assertEqual(wal_valid_end(Path(str(copy) + "-wal").read_bytes())[0], end)
            c2 = sqlite3.connect(copy)
            self.assertEqual(c2.execute("SELECT COUNT(*) FROM t").fetchone()[0], 30)
            self.assertEqual(c2.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            c2.close()
        finally:
            shutil.rmtree(d)


class SliceTest(unittest.TestCase):
    def test_the_slice_keeps_the_failure_its_neighbourhood_and_membership(self):
        h = [
            {"type": "op", "op": 1, "dev": "ada", "kind": "group_remove", "args": {}, "t0": 5, "t1": 6},
            {"type": "op", "op": 2, "dev": "dan", "kind": "add", "args": {"name": "w2"}, "t0": 1, "t1": 1.1},
            {"type": "op", "op": 3, "dev": "cyd", "kind": "add", "args": {"name": "w3"}, "t0": 30, "t1": 31},
            {"type": "op", "op": 4, "dev": "cyd", "kind": "edit", "args": {"item": "w3"}, "t0": 90, "t1": 91},
            {"type": "op", "op": 5, "dev": "dan", "kind": "add", "args": {"name": "w5"}, "t0": 80, "t1": 81},
            {"type": "fault", "kind": "net", "args": {}, "t0": 25},
            {"type": "fault", "kind": "net", "args": {}, "t0": 70},
        ]
        v = Verdict(1, 5)
        v.failures.append(Failure("forbidden_accepted", "x", ops=[3], devs=["cyd"]))
        got = [(r["type"], r.get("op", r.get("t0"))) for r in slice_history(h, v)]
        self.assertEqual(got, [("op", 1), ("op", 3), ("op", 4), ("fault", 25)])



class HistoryTest(unittest.TestCase):
    def test_a_refused_rm_is_not_credited_with_the_previous_rms_entry(self):
        # Seed 60303: cyd trashed w73 (op 112), then tried again a second
        # later (op 115, refused: no item matches); the first's history
        # entry lies in the second's slack.
        first = {"op": 112, "kind": "rm", "dev": "cyd", "args": {"item": "w73"}, "code": 0,
                 "w0": 1796288324350.875, "w1": 1796288324391.794}
        second = {"op": 115, "kind": "rm", "dev": "cyd", "args": {"item": "w73"}, "code": 5,
                  "w0": 1796288325355.407, "w1": 1796288325381.783}
        entry = {"device": "D-cyd", "time_ms": 1796288324371, "trashed": True, "fields": {}}
        histories = {"w73": {"ada": [entry]}}
        ids = {"cyd": "D-cyd"}
        ops = [first, second]
        self.assertEqual(history_holds(first, ops, histories, ids, True), (True, "ada"))
        self.assertEqual(history_holds(second, ops, histories, ids, True), (False, "ada"))
        # Alone, the same entry would be credited to the second (it is
        # within a second of it): the rule is about the other op's window.
        self.assertEqual(history_holds(second, [second], histories, ids, True), (True, "ada"))

    def test_a_refused_restore_is_not_credited_with_the_adds_entry(self):
        # Seed 60309: bob added w63 (op 63), then a restore of it was
        # refused a second later (op 66: not in the trash); the add's entry
        # (trashed: false) lies in the restore's slack.
        add = {"op": 63, "kind": "add", "dev": "bob", "args": {"folder": "Ops", "name": "w63"}, "code": 0,
               "w0": 1000.0, "w1": 1079.0}
        restore = {"op": 66, "kind": "restore", "dev": "bob", "args": {"item": "w63"}, "code": 5,
                   "w0": 2007.0, "w1": 2051.0}
        entry = {"device": "D-bob", "time_ms": 1050, "trashed": False, "fields": {}}
        histories = {"w63": {"ada": [entry]}}
        got = history_holds(restore, [add, restore], histories, {"bob": "D-bob"}, True)
        self.assertEqual(got, (False, "ada"))

if __name__ == "__main__":
    unittest.main(verbosity=1)

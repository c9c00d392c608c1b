"""Who may write where, in real time, as far as the history proves it.

The roles of a run are a handful of facts: a folder's grant to a user or a
group, a user's membership of a group, a user removed, a device revoked.
The plan gives each fact one issuing device, which runs one operation at a
time, so the changes of one fact are totally ordered by real time. Each
change is known to have taken effect (exit 0), known not to have (a
refusal), or uncertain (the daemon was killed under it, or it timed out).

`possible(fact, a, b)` is every value the fact may have had at some moment
of [a, b]; `may_write(device, folder, a, b)` is False only when, under
every combination of those values, the device's user had no write right
during the whole interval. A write that started after its author certainly
lost every write right cannot be inside any removal's cutoff (the remover
could not have seen it), so the acceptance rule must quarantine it: the
checker calls it forbidden. The converse is not claimed: a write the
model cannot decide is judged only by the daemons' own quarantine reasons.
"""

from __future__ import annotations

from dataclasses import dataclass

RANK = {"none": 0, "member": 1, "editor": 2, "manager": 3}

# Exit codes that mean "refused, nothing changed" (docs/cli.md).
REFUSED = {2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18, 19}


def status_of(code: int | None, err: str = "") -> str:
    """acked, refused (certainly no effect) or uncertain. Exit 11 is a
    refusal only when the CLI could not connect at all: a daemon killed
    under a request also ends in 11."""
    if code == 0:
        return "acked"
    if code in REFUSED or (code == 11 and "cannot connect" in err) or "disk is full" in err:
        return "refused"
    return "uncertain"


@dataclass
class Change:
    t0: float
    t1: float
    value: object
    status: str  # acked | refused | uncertain


class Model:
    def __init__(self, groups: dict[str, list[str]], grants: dict[str, dict[str, str]],
                 admin_email: str, device_user: dict[str, str]):
        self.initial: dict[tuple, object] = {}
        self.changes: dict[tuple, list[Change]] = {}
        self.groups = sorted(groups)
        self.admin = admin_email
        self.device_user = device_user  # device label -> email
        for g, emails in groups.items():
            for e in emails:
                self.initial[("member", g, e)] = True
        for folder, gs in grants.items():
            for principal, role in gs.items():
                self.initial[("grant", folder, principal)] = role

    def default(self, fact: tuple) -> object:
        return {"member": False, "grant": "none", "removed": False, "revoked": False}[fact[0]]

    def record(self, fact: tuple, t0: float, t1: float, value: object, code: int | None, err: str = "") -> None:
        self.changes.setdefault(fact, []).append(Change(t0, t1, value, status_of(code, err)))

    def record_uncertain(self, fact: tuple, t0: float, t1: float, value: object) -> None:
        self.changes.setdefault(fact, []).append(Change(t0, t1, value, "uncertain"))

    def facts_about(self, email: str) -> list[tuple]:
        keys = set(self.initial) | set(self.changes)
        return [k for k in keys if (k[0] == "member" and k[2] == email) or
                (k[0] == "grant" and k[2] == f"user:{email}")]

    def possible(self, fact: tuple, a: float, b: float) -> set:
        vals = {self.initial.get(fact, self.default(fact))}
        for c in sorted(self.changes.get(fact, []), key=lambda c: c.t0):
            if c.t0 > b:
                break
            if c.status == "refused":
                continue
            if c.t1 <= a and c.status == "acked":
                vals = {c.value}
            else:
                vals = vals | {c.value}
        return vals

    def may(self, device: str, folder: str, a: float, b: float, need: int) -> bool:
        """Whether `device` may have had a role of rank >= need in `folder`
        at some moment of [a, b]."""
        email = self.device_user[device]
        if email == self.admin:
            return True
        if False not in self.possible(("revoked", device), a, b):
            return False
        if False not in self.possible(("removed", email), a, b):
            return False
        best = max(RANK[r] for r in self.possible(("grant", folder, f"user:{email}"), a, b))
        for g in self.groups:
            if True in self.possible(("member", g, email), a, b):
                best = max(best, max(RANK[r] for r in self.possible(("grant", folder, f"group:{g}"), a, b)))
        return best >= need

    def may_write(self, device: str, folder: str, a: float, b: float) -> bool:
        return self.may(device, folder, a, b, RANK["editor"])

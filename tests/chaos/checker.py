"""The chaos suite's checker: judges a recorded history against the final
state the daemons report. Its words are the guarantees of
docs/RELIABILITY.md:

- converged: after the network heals and every daemon is up and unlocked,
  every member device of a shared folder (as the founding admin's daemon
  lists them) reports the same accepted-state digest and the same items
  digest within CONVERGE_SECS;
- lost: a write answered as done (exit 0) that is not in the final state
  of every member (an add or import: its items by name on every member; an
  edit, TOTP change, rm or restore: its value in the item's history), and
  whose absence no rule explains. The rules: (1) a daemon reports the
  write's envelope (author, seq between the author's own seq before and
  after the write) quarantined for a removal's cutoff (beyond or after the
  cutoff, or builds on a quarantined change, or a stale incarnation);
  (2) no member holds any envelope of that range, its author was revoked
  or removed (from the team, or its user from that folder), and the write
  ended at most 60 s before that removal began:
  it never left its author. A personal-folder write must be on its author
  unless (2) explains its absence (a linked laptop shares its user's
  Personal folder, so the same rule voids it there);
- forbidden_accepted: a write whose actor's role forbade it since setup
  and was answered as done; or any write that appears in the final state
  of a member of its folder other than its author although, per the
  history (model.py), its author certainly had no write right for the
  whole time it ran (a removal answered as done before it started, no
  grant since), unless a daemon lists it as endorsed (another user's
  accepted change built on it: the rule keeps it); or a roster change by
  a non-admin answered as done;
- diverged: shared folders whose members do not agree (or cannot read it);
- read_after_removal: a removed or revoked device, given every envelope of
  the shared folders from the admin's store, can read a value written by a
  device whose member list, just before that write, no longer held it,
  although it cannot have been a member since and no share that reached
  its user was made after the write (an issuer not yet aware of the
  removal wraps the key for it);
- also failing a run: a daemon that died without being killed, an RSS
  sample above the limit, a store whose integrity_check is not ok, an
  acknowledged membership change the final grants contradict, an import
  answered with an error that left some but not all of its items, a
  refused write that took effect, an answer saying "internal error", and
  any harness error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from model import status_of

SHARED = ("Ops", "Fin")
# How long before its author's removal a write may still not have left it
# (partitions change every 4-12 s; a daemon keeps a connection's worth of
# pushes going while it is connected).
LEFT_BEHIND_SECS = 60
CUTOFF_REASONS = ("beyond its cutoff", "after its cutoff", "builds on a quarantined change",
                  "written as incarnation")


@dataclass
class Failure:
    kind: str
    message: str
    ops: list[int] = field(default_factory=list)
    devs: list[str] = field(default_factory=list)
    folder: str | None = None


@dataclass
class Verdict:
    seed: int
    nodes: int
    ops: int = 0
    acked: int = 0
    partitions: int = 0
    kills: int = 0
    lost: int = 0
    forbidden_accepted: int = 0
    diverged: int = 0
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    harness_failed: bool = False
    history: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures and not self.harness_failed

    def line(self) -> str:
        return (f"chaos: {'PASS' if self.passed else 'FAIL'} seed={self.seed} nodes={self.nodes} "
                f"ops={self.ops} acked={self.acked} partitions={self.partitions} kills={self.kills} "
                f"lost={self.lost} forbidden_accepted={self.forbidden_accepted} diverged={self.diverged}")

    def kinds(self) -> set[str]:
        return {f.kind for f in self.failures}

    def report(self) -> None:
        for k, v in self.stats.items():
            print(f"chaos: {k}: {v}")
        for n in self.notes:
            print(f"chaos: note: {n}")
        for f in self.failures[:40]:
            where = f" [{f.folder}]" if f.folder else ""
            print(f"chaos: FAILURE {f.kind}{where}: {f.message}")
        if len(self.failures) > 40:
            print(f"chaos: ... and {len(self.failures) - 40} more failures (verdict.json)")

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["failures"] = [f.__dict__ for f in self.failures]
        d.pop("history", None)
        d["passed"] = self.passed
        d["line"] = self.line()
        return d

    @staticmethod
    def harness_error(plan, message: str, run) -> "Verdict":
        v = Verdict(plan.seed, plan.nodes, harness_failed=True)
        v.failures.append(Failure("harness", message))
        if run is not None:
            v.history = run.history
            v.kills = run.kills
            v.partitions = run.partitions
            for d in run.devices.values():
                for death in d.deaths:
                    v.failures.append(Failure("died", death, devs=[d.name]))
        return v


def item_folders(plan) -> dict[str, str]:
    """item name -> the folder the plan's add put it in."""
    out = {}
    for op in plan.ops:
        if op.kind == "add":
            out[op.args["name"]] = op.args["folder"]
    return out


def back_in_since_out(model, label: str, folder: str, before: float, end: float, moments: list[float]) -> bool:
    """Whether the device was certainly out of the folder at some moment
    (of `moments`, sorted) before `before` and may have been a member again
    at a later moment. A writer whose member list lacks the device may then
    be one that heard of that removal but not yet of the re-grant, and
    writes under the key the re-granter handed the device (read revocation
    starts when the writer knows; seed 4: cyd out of group `it`, back in,
    then removed, and dan, who had heard of the first only, wrote to `Fin`
    after the last)."""
    for t in moments:
        if t >= before:
            return False
        if not model.may(label, folder, t, t, 1):
            return model.may(label, folder, t, end, 1)
    return False


def touches(op: dict, item: str) -> bool:
    """Whether `op` wrote the item named `item` (edits name it, adds and
    imports create it)."""
    args = op.get("args") or {}
    return args.get("item") == item or (op.get("kind") == "add" and args.get("name") == item) \
        or item in (op.get("names") or [])


def history_holds(rec: dict, ops: list[dict], histories: dict, ids: dict[str, str],
                  others_only: bool) -> tuple[bool | None, str]:
    """Whether the item's history (from up to two members; with
    others_only, not from the write's own author) holds the write `rec`: an
    entry by its device, stamped while it ran, with its value. Returns
    (None, "") when no member's history of the item was taken."""
    sources = {k: e for k, e in (histories.get(rec["args"]["item"]) or {}).items()
               if not (others_only and k == rec["dev"])}
    if not sources:
        return None, ""
    aid = ids.get(rec["dev"])
    k = rec["kind"]
    lo, hi = rec.get("w0", 0) - 1000, rec.get("w1", 0) + 1000
    # An entry inside another op's own window, by the same device on the
    # same item, is that op's: two `rm` of one item a second apart (the
    # second refused: already in the trash) must not credit the first's
    # entry, which is within the slack, to the second; nor a refused
    # `restore` the entry of the `add` that created the item (seed 60309).
    item = rec["args"]["item"]
    others = [(o["w0"] - 1, o["w1"] + 1) for o in ops
              if o is not rec and o["dev"] == rec["dev"] and touches(o, item)
              and o.get("w0") is not None and o.get("w1") is not None]
    for src, entries in sources.items():
        for e in entries:
            t = e.get("time_ms", 0)
            if e.get("device") != aid or not lo <= t <= hi:
                continue
            if any(w0 <= t <= w1 for w0, w1 in others):
                continue
            f = e.get("fields", {})
            if ((k == "edit" and f.get("password") == rec["value"]) or
                    (k == "totp_set" and rec["value"] in (f.get("totp") or "")) or
                    (k == "rm" and e.get("trashed") is True) or
                    (k == "restore" and e.get("trashed") is False)):
                return True, src
    return False, ",".join(sorted(sources))


def check(plan, run, state: dict, integrity: dict, converged: bool, conv_secs: float, why: str) -> Verdict:
    v = Verdict(plan.seed, plan.nodes, partitions=run.partitions, kills=run.kills)
    v.history = run.history
    devices = run.devices
    ids = {d.name: d.device_id for d in devices.values()}
    ops = [r for r in run.history if r.get("type") == "op" and "skipped" not in r]
    v.ops = len(ops)
    v.acked = sum(1 for r in ops if r.get("code") == 0)
    folders_of_item = item_folders(plan)
    statuses = state["status"]
    exports = {k: x for k, x in state["export"].items() if x is not None}
    retired = {d.name for d in devices.values() if d.retired}

    # ---- convergence -------------------------------------------------------
    members = run.final_members(statuses)
    v.stats["converged_in_secs"] = conv_secs if converged else f"not within bound ({why})"
    for folder in SHARED:
        labels = members.get(folder)
        if not labels:
            v.diverged += 1
            v.failures.append(Failure("diverged", f"ada does not list {folder}'s members", folder=folder))
            continue
        seen = {}
        for label in sorted(labels):
            sp = run.space(statuses.get(label), folder)
            seen[label] = (sp or {}).get("digest"), (sp or {}).get("items_digest")
        if len(set(seen.values())) != 1 or any(x[1] is None for x in seen.values()):
            v.diverged += 1
            v.failures.append(Failure("diverged", f"{folder}: " + ", ".join(
                f"{k}={str(a)[:10]}/{str(b)[:10]}" for k, (a, b) in seen.items()), devs=sorted(labels),
                folder=folder))
    v.stats["members"] = {f: sorted(x) for f, x in members.items()}

    # ---- items as each device reads them ---------------------------------
    names_on: dict[str, dict[str, set[str]]] = {}
    values_on: dict[str, set[str]] = {}
    for label, items in exports.items():
        per = names_on.setdefault(label, {})
        vals = values_on.setdefault(label, set())
        for it in items:
            per.setdefault(it["folder"], set()).add(it["name"])
            for val in it.get("fields", {}).values():
                vals.add(val)
    quarantine: dict[str, list[dict]] = {f: [] for f in SHARED}
    endorsed: dict[str, list[dict]] = {f: [] for f in SHARED}
    for label, st in statuses.items():
        for folder in SHARED:
            sp = run.space(st, folder)
            if sp:
                quarantine[folder].extend(sp.get("quarantined", []))
                endorsed[folder].extend(sp.get("endorsed", []))
    user_of = {d.device_id: d.email for d in devices.values() if d.device_id}

    def endorsement(rec: dict, folder: str) -> str | None:
        """The documented exception: a change another user's accepted
        change built on stays (`sync status` lists it as endorsed)."""
        aid = ids.get(rec["dev"])
        lo = ((rec.get("pre") or {}).get(folder) or {}).get("self", 0)
        hi = ((rec.get("post") or {}).get(folder) or {}).get("self", float("inf"))
        for e in endorsed[folder]:
            if e["author"] == aid and lo < e["seq"] <= hi and user_of.get(e["by_author"]) != user_of.get(aid):
                return f"kept because {label_of(e['by_author'])} built on it"
        return None

    def label_of(device_id: str) -> str:
        return next((d.name for d in devices.values() if d.device_id == device_id), device_id[:8])
    histories = state["history"]

    def holds(folder: str, author_id: str, lo: int, hi: float) -> bool:
        for label in members.get(folder, ()):
            sp = run.space(statuses.get(label), folder)
            if sp and sp["version_vector"].get(author_id, 0) > lo:
                return True
        return any(q["author"] == author_id and lo < q["seq"] <= hi for q in quarantine[folder])

    def explain(rec: dict, folder: str) -> str | None:
        author = rec["dev"]
        aid = ids.get(author)
        lo = ((rec.get("pre") or {}).get(folder) or {}).get("self", 0)
        hi = ((rec.get("post") or {}).get(folder) or {}).get("self", float("inf"))
        for q in quarantine[folder]:
            if q["author"] == aid and lo < q["seq"] <= hi and any(r in q["reason"] for r in CUTOFF_REASONS):
                return f"quarantined: {q['reason']}"
        if not holds(folder, aid, lo, hi):
            return removed_soon_after(rec, folder)
        return None

    def removed_soon_after(rec: dict, folder: str | None = None) -> str | None:
        """Why a write that never left its author is gone: the author was
        revoked or removed soon after, from the team or from `folder` (a
        write concurrent with its author's removal is void by the rule, on
        the author too)."""
        author = rec["dev"]
        email = devices[author].email
        if author not in retired and folder is None:
            return None
        # Only near or after the removal: a write that stayed on a
        # connected daemon for longer would be a sync defect.
        removals = [r["t0"] for r in ops if status_of(r.get("code"), r.get("err") or "") != "refused" and
                    ((author in retired and r["kind"] == "revoke" and r["args"].get("target") == author) or
                     (author in retired and r["kind"] == "user_remove" and r["args"].get("email") == email) or
                     (folder is not None and r["kind"] == "unshare" and r["args"].get("folder") == folder and
                      r["args"].get("principal") == f"user:{email}"))]
        if removals and rec["t1"] >= min(removals) - LEFT_BEHIND_SECS:
            return "never left its author before the author was removed"
        return None

    def visible_elsewhere(rec: dict, names: list[str], folder: str) -> list[str]:
        """The members (not the author) whose final state shows the items."""
        out = []
        for label, per in names_on.items():
            if label == rec["dev"] or label in retired or label not in members.get(folder, ()):
                continue
            if any(n in s for s in per.values() for n in names):
                out.append(label)
        return out

    def history_has(rec: dict, others_only: bool) -> tuple[bool | None, str]:
        return history_holds(rec, ops, histories, ids, others_only)

    # ---- every write ---------------------------------------------------------
    explained: list[str] = []
    for rec in ops:
        kind = rec["kind"]
        if kind not in ("add", "import", "edit", "rm", "restore", "totp_set"):
            continue
        folder = rec["args"].get("folder") if kind in ("add", "import") else folders_of_item.get(rec["args"]["item"])
        names = rec.get("names") or ([rec["args"]["name"]] if kind == "add" else [])
        acked = rec.get("code") == 0
        status = status_of(rec.get("code"), rec.get("err") or "")
        author = rec["dev"]
        if folder not in SHARED:
            # Personal: durable on its author. A linked laptop shares its
            # user's Personal folder, so a write it made just before it was
            # revoked may be void like any other folder's.
            if acked and names and author in names_on:
                missing = [n for n in names if n not in names_on[author].get("Personal", set())]
                why = removed_soon_after(rec) if missing else None
                if why:
                    explained.append(f"op {rec['op']} {kind} by {author} in Personal: {why}")
                elif missing:
                    v.lost += 1
                    v.failures.append(Failure("lost", f"op {rec['op']} {kind} by {author} into Personal answered "
                                              f"done at {rec['t1']}s; missing after restart: {missing[:5]}",
                                              ops=[rec["op"]], devs=[author], folder="Personal"))
            continue
        may = run.model.may_write(author, folder, rec["t0"], rec["t1"])
        if names:
            present_on = {label for label in members.get(folder, ()) if label in names_on and
                          all(n in names_on[label].get(folder, set()) for n in names)}
            some_on = set(visible_elsewhere(rec, names, folder))
            effect = bool(some_on) or bool(present_on)
        else:
            h, src = history_has(rec, others_only=False)
            h = bool(h) if h is not None else None
            seen_by_other, other = history_has(rec, others_only=True)
            present_on = set(members.get(folder, ())) if h else set()
            some_on = {f"the history on {other}"} if seen_by_other else set()
            effect = bool(seen_by_other)
        if rec.get("static_forbidden"):
            if acked or effect:
                v.forbidden_accepted += 1
                v.failures.append(Failure("forbidden_accepted", f"op {rec['op']} {kind} by {author} in {folder}: "
                                          f"the role forbids it since setup; exit {rec.get('code')}, "
                                          f"visible on {sorted(some_on) if names else effect}",
                                          ops=[rec["op"]], devs=[author], folder=folder))
            continue
        if not may:
            elsewhere = visible_elsewhere(rec, names, folder) if names else sorted(some_on)
            kept = endorsement(rec, folder) if elsewhere else None
            if kept:
                explained.append(f"op {rec['op']} {kind} by {author} in {folder} (forbidden): {kept}")
            elif elsewhere:
                v.forbidden_accepted += 1
                v.failures.append(Failure("forbidden_accepted", f"op {rec['op']} {kind} by {author} in {folder} "
                                          f"ran {rec['t0']}-{rec['t1']}s after its author certainly lost write "
                                          f"access (exit {rec.get('code')}), yet it is on {elsewhere}",
                                          ops=[rec["op"]], devs=[author], folder=folder))
            continue
        if acked:
            need = members.get(folder, set())
            if names:
                missing_on = sorted(need - present_on - {lbl for lbl in need if lbl not in names_on})
            else:
                missing_on = [] if h else ["the item's history (no member showed it)" if h is None
                                                else f"the item's history on {src}"]
            if missing_on:
                why = explain(rec, folder)
                if why:
                    explained.append(f"op {rec['op']} {kind} by {author} in {folder}: {why}")
                else:
                    v.lost += 1
                    v.failures.append(Failure("lost", f"op {rec['op']} {kind} by {author} in {folder} answered "
                                              f"done at {rec['t1']}s; missing on {missing_on}; own seq "
                                              f"{((rec.get('pre') or {}).get(folder) or {}).get('self')}->"
                                              f"{((rec.get('post') or {}).get(folder) or {}).get('self')}; "
                                              f"no quarantine or removal explains it",
                                              ops=[rec["op"]], devs=[author] + missing_on, folder=folder))
            elif kind == "import" and names:
                partial = [lbl for lbl in need if lbl in names_on and
                           0 < sum(n in names_on[lbl].get(folder, set()) for n in names) < len(names)]
                if partial:
                    v.failures.append(Failure("partial_import", f"op {rec['op']} import by {author}: some but not "
                                              f"all items on {partial}", ops=[rec["op"]], folder=folder))
        elif status == "refused" and effect:
            v.failures.append(Failure("refused_took_effect", f"op {rec['op']} {kind} by {author} in {folder} "
                                      f"exited {rec.get('code')} ({rec.get('err', '').strip()[:120]}) yet took effect",
                                      ops=[rec["op"]], devs=[author], folder=folder))
        elif status == "uncertain" and kind == "import" and names:
            for lbl in members.get(folder, ()):
                if lbl in names_on:
                    k = sum(n in names_on[lbl].get(folder, set()) for n in names)
                    if 0 < k < len(names):
                        v.failures.append(Failure("partial_import", f"op {rec['op']} import by {author} "
                                                  f"(interrupted, exit {rec.get('code')}): {k} of {len(names)} "
                                                  f"items on {lbl}", ops=[rec["op"]], folder=folder))
                        break
    v.stats["explained_absences"] = len(explained)
    for e in explained[:20]:
        v.notes.append(e)

    # ---- answers no daemon should give ----------------------------------------------
    internal: dict[tuple, list[dict]] = {}
    for rec in ops:
        err = rec.get("err") or ""
        if "internal error" in err:
            internal.setdefault((rec["dev"], rec["args"].get("folder"), err.strip()[:300]), []).append(rec)
    for (dev, folder, err), recs in internal.items():
        first = recs[0]
        more = f" (and {len(recs) - 1} more of its operations, until {recs[-1]['t0']}s)" if len(recs) > 1 else ""
        v.failures.append(Failure("internal_error", f"op {first['op']} {first['kind']} by {dev} at {first['t0']}s"
                                  f"{more}: {err}", ops=[r["op"] for r in recs], devs=[dev], folder=folder))

    # ---- roster changes by non-admins ------------------------------------------
    for rec in ops:
        if rec["kind"] in ("group_create", "invite_x", "user_remove_x", "share") and rec.get("static_forbidden"):
            if rec.get("code") == 0:
                v.forbidden_accepted += 1
                v.failures.append(Failure("forbidden_accepted", f"op {rec['op']} {rec['kind']} {rec['args']} by "
                                          f"{rec['dev']} answered done", ops=[rec["op"]], devs=[rec["dev"]]))
    forbidden_groups = {r["args"]["group"] for r in ops if r["kind"] == "group_create"}
    for label, groups in state["groups"].items():
        for g in groups or []:
            if g.get("name") in forbidden_groups:
                v.forbidden_accepted += 1
                v.failures.append(Failure("forbidden_accepted", f"group {g['name']} created by a non-admin is on "
                                          f"{label}", devs=[label]))

    # ---- final grants against the history --------------------------------------
    end = run.now()
    for folder in SHARED:
        m = state["members"].get(folder)
        if not m:
            continue
        final = {f"{x['kind']}:{x['name']}": x["role"] for x in m.get("members", []) if x["kind"] in ("user", "group")}
        for fact in list(run.model.initial) + list(run.model.changes):
            if fact[0] != "grant" or fact[1] != folder:
                continue
            got = final.get(fact[2], "none")
            possible = run.model.possible(fact, end, end)
            email = fact[2].split(":", 1)[1]
            if fact[2].startswith("user:") and True in run.model.possible(("removed", email), end, end):
                continue  # a removed user's grants: the roster decides
            if got not in possible:
                v.failures.append(Failure("membership", f"{folder}: {fact[2]} is {got} at the end; the history "
                                          f"allows only {sorted(possible)}", folder=folder))
    ada_groups = state["groups"].get("ada") or []
    for g in ada_groups:
        for fact in [f for f in set(run.model.initial) | set(run.model.changes) if f[0] == "member" and f[1] == g["name"]]:
            got = fact[2] in g.get("members", [])
            if True in run.model.possible(("removed", fact[2]), end, end):
                continue
            if got not in run.model.possible(fact, end, end):
                v.failures.append(Failure("membership", f"group {g['name']}: {fact[2]} member={got} at the end; "
                                          f"the history allows only {run.model.possible(fact, end, end)}"))

    # ---- removed devices read nothing written after ---------------------------------
    writes_by_marker: dict[str, dict] = {}
    for rec in ops:
        for n in rec.get("names") or ([rec["args"]["name"]] if rec["kind"] == "add" else []):
            writes_by_marker[n] = rec
        if rec["kind"] == "edit":
            writes_by_marker[rec["value"]] = rec
    def regranted(label: str, folder: str, since: float) -> bool:
        """A share answered (or maybe applied) after `since` that reached
        the device's user: its issuer, not knowing of the removal yet, may
        have wrapped the folder's key for the device (then it reads the
        folder's history, as any new member does)."""
        email = devices[label].email
        for r in ops:
            if r["kind"] != "share" or r["args"].get("folder") != folder or r.get("t1", 0) < since:
                continue
            if status_of(r.get("code"), r.get("err") or "") == "refused":
                continue
            kind, who = r["args"]["principal"].split(":", 1)
            if (kind == "user" and who == email) or (
                    kind == "group" and True in run.model.possible(("member", who, email), r["t0"], r["t1"])):
                return True
        return False

    moments = sorted({0.0} | {r[k] for r in ops for k in ("t0", "t1") if r.get(k) is not None})
    reads = dict(state.get("removed_reads", {}))
    for label in retired:
        if label in exports and label not in reads:
            reads[label] = exports[label]
    checked = 0
    for label, items in reads.items():
        did = ids.get(label)
        for it in items or []:
            folder = it.get("folder")
            if folder not in SHARED:
                continue
            if label in members.get(folder, set()):
                continue
            for marker in [it["name"], it.get("fields", {}).get("password", "")]:
                rec = writes_by_marker.get(marker)
                if not rec or rec["dev"] == label or rec.get("code") != 0:
                    continue
                pre = (rec.get("pre") or {}).get(folder)
                if not pre:
                    continue
                checked += 1
                if did in pre.get("members", []):
                    continue
                if run.model.may(label, folder, rec["t0"], end, 1):
                    continue  # it may have been a member again since (new members read history)
                if regranted(label, folder, rec["t0"]):
                    continue
                if back_in_since_out(run.model, label, folder, rec["t0"], end, moments):
                    continue
                v.failures.append(Failure("read_after_removal", f"{label} reads {marker!r} in {folder}, written by "
                                          f"{rec['dev']} (op {rec['op']}, {rec['t0']}s) whose member list no longer "
                                          f"held {label}", ops=[rec["op"]], devs=[label, rec["dev"]], folder=folder))
    v.stats["removed_device_reads_checked"] = {k: len(x or []) for k, x in reads.items()}

    # ---- processes, memory, stores -------------------------------------------------
    for d in devices.values():
        for death in d.deaths:
            v.failures.append(Failure("died", f"{d.name}: {death}", devs=[d.name]))
        text = ""
        try:
            text = d.log.read_text(errors="replace")
        except OSError:
            pass
        if "panicked" in text:
            line = next(x for x in text.splitlines() if "panicked" in x)
            v.failures.append(Failure("panic", f"{d.name}: {line[:300]}", devs=[d.name]))
    rss = {d.name: max((k for _, k in d.rss_kib), default=0) // 1024 for d in devices.values()}
    v.stats["max_rss_mib"] = rss
    for name, mib in rss.items():
        if mib > run.mem_limit_mib:
            v.failures.append(Failure("memory", f"{name}: RSS reached {mib} MiB (limit {run.mem_limit_mib})",
                                      devs=[name]))
    for name, res in integrity.items():
        if res != "ok":
            v.failures.append(Failure("integrity", f"{name}: PRAGMA integrity_check: {res}", devs=[name]))
    v.stats["integrity_checked"] = len(integrity)
    for e in run.errors:
        v.failures.append(Failure("harness", e[:2000]))
    for n in run.setup_notes:
        v.notes.append(n)
    faults = [r for r in run.history if r.get("type") == "fault"]
    v.stats["faults"] = {k: sum(1 for r in faults if r["kind"] == k and "skipped" not in r)
                         for k in sorted({r["kind"] for r in faults})}
    v.stats["answers"] = {str(c): sum(1 for r in ops if r.get("code") == c)
                          for c in sorted({r.get("code") for r in ops}, key=lambda x: -1 if x is None else x)}
    return v


def dumps(x) -> str:
    return json.dumps(x, default=str)

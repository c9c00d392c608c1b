"""Shrinking a failing chaos history.

Two cuts, both printed:

1. A slice (free): the failing operations, every roster and membership
   change, and the faults and operations of the devices involved from a
   little before the first failing operation to its end.
2. Replays (within --shrink-secs): the plan is run again with parts left
   out — first everything after the failure, then all but the slice's
   operations, then each kind of fault, then halves, quarters, ... of what
   is left (ddmin) — keeping every cut that still fails with a failure of
   the same kind. Real
   processes and real time make a replay a new experiment: a cut that
   passes once is not proof that it would always pass, so the result is
   "the shortest history this run found that still fails", with its plan
   saved for `run.sh --plan FILE`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

MEMBERSHIP = {"share", "unshare", "group_add", "group_remove", "user_remove", "revoke", "link", "invite"}


def describe(rec: dict) -> str:
    if rec.get("type") == "fault":
        a = rec.get("args", {})
        if rec["kind"] == "net":
            what = a.get("shape", "")
            if a.get("groups"):
                what += " " + " | ".join("n" + ",n".join(map(str, g)) for g in a["groups"])
            if a.get("cuts"):
                what += " cut " + " ".join(f"n{x}-n{y}" for x, y in a["cuts"])
            if a.get("down"):
                what += " down " + ",".join(f"n{x}" for x in a["down"])
            lossy = {k: v for k, v in (a.get("loss") or {}).items() if v}
            if lossy:
                what += " loss " + ",".join(f"n{k}:{v}%" for k, v in lossy.items())
        else:
            what = rec.get("dev", a.get("dev"))
            if rec.get("skipped"):
                what = f"{what} (skipped: {rec['skipped']})"
        return f"{rec.get('t0', 0):8.2f}s  fault {rec['kind']:<16} {what}"
    if rec.get("type") != "op":
        return f"{rec.get('t0', 0):8.2f}s  {rec.get('type')} {rec.get('phase', rec.get('dev', ''))}"
    args = " ".join(f"{k}={v}" for k, v in rec.get("args", {}).items() if k not in ("retire",))
    res = "skipped" if "skipped" in rec else f"exit {rec.get('code')}"
    err = (rec.get("err") or "").strip().splitlines()
    tail = f"  ({err[-1][:90]})" if err and rec.get("code") not in (0, None) else ""
    return f"{rec.get('t0', 0):8.2f}-{rec.get('t1', 0):.2f}s  {rec['dev']:<5} #{rec['op']} {rec['kind']} {args} -> {res}{tail}"


def slice_history(history: list[dict], verdict) -> list[dict]:
    bad_ops = {o for f in verdict.failures for o in f.ops}
    devs = {d for f in verdict.failures for d in f.devs}
    bad = [r for r in history if r.get("type") == "op" and r.get("op") in bad_ops]
    if not bad:
        return [r for r in history if r.get("type") in ("fault", "death") or r.get("kind") in MEMBERSHIP]
    lo = min(r["t0"] for r in bad) - 15
    hi = max(r.get("t1", r["t0"]) for r in bad) + 5
    items = {r["args"].get("item") or r["args"].get("name") for r in bad}
    out = []
    for r in history:
        if r.get("type") == "op":
            if (r["op"] in bad_ops or r["kind"] in MEMBERSHIP or
                    (r["args"].get("item") or r["args"].get("name")) in items or
                    (r["dev"] in devs and lo <= r["t0"] <= hi)):
                out.append(r)
        elif r.get("type") == "fault":
            if lo <= r["t0"] <= hi and (r["kind"] == "net" or r.get("dev") in devs or r["args"].get("dev") in devs):
                out.append(r)
        elif r.get("type") == "death":
            out.append(r)
    return out


def still_fails(kinds: set[str], v) -> bool:
    return not v.harness_failed and bool(kinds & v.kinds())


def shrink(plan, verdict, args, run_plan) -> None:
    print("chaos: --- the failing history, sliced to what touches the failure ---")
    sliced = slice_history(verdict.history, verdict)
    for r in sliced:
        print("chaos:   " + describe(r))
    kinds = verdict.kinds() - {"harness"}
    budget_end = time.monotonic() + args.shrink_secs
    base = args.workdir
    best = plan
    best_history = sliced
    tries = 0

    def attempt(candidate) -> bool:
        nonlocal tries, best, best_history
        tries += 1
        est = candidate.secs + 150
        if time.monotonic() + est > budget_end:
            return False
        wd = base / f"shrink-{tries}"
        print(f"chaos: shrink try {tries}: {len(candidate.ops)} ops, {len(candidate.faults)} faults, "
              f"{candidate.secs:.0f}s", flush=True)
        v = run_plan(candidate, wd, args.bin_dir, args.prefix, args.mem_limit_mib, quiet=True)
        fails = still_fails(kinds, v)
        print(f"chaos: shrink try {tries}: {'still fails' if fails else 'passes'} ({v.line()})", flush=True)
        if fails:
            best = candidate
            best_history = [r for r in v.history if r.get("type") in ("op", "fault", "death")]
            (base / "shrunk-plan.json").write_text(json.dumps(candidate.to_json(), indent=1))
        return fails

    # 1. Nothing after the failure.
    bad_ops = {o for f in verdict.failures for o in f.ops}
    t_bad = [r.get("t1", 0) for r in verdict.history if r.get("type") == "op" and r.get("op") in bad_ops]
    if t_bad:
        cut = max(t_bad) + 5
        if cut < plan.secs - 10:
            c = plan.subset({o.id for o in plan.ops if o.t <= cut}, {f.id for f in plan.faults if f.t <= cut})
            c.secs = cut
            attempt(c)
    # 2. Only the slice's operations (the failing ones, the roster and
    #    membership changes, the involved devices' neighbourhood).
    keep = {r["op"] for r in slice_history(verdict.history, verdict) if r.get("type") == "op"}
    c = best.subset({o.id for o in best.ops if o.id in keep}, {f.id for f in best.faults})
    c.secs = best.secs
    if len(c.ops) < len(best.ops):
        attempt(c)
    # 3. Without each kind of fault in turn.
    for kinds_out in (("net",), ("kill", "kill_mid_import", "kill_after_heal"), ("disk_full", "wal_corrupt")):
        c = best.subset({o.id for o in best.ops}, {f.id for f in best.faults if f.kind not in kinds_out})
        c.secs = best.secs
        if len(c.faults) < len(best.faults):
            attempt(c)
    # 4. ddmin over what is left (ops and faults together).
    n = 2
    while time.monotonic() < budget_end:
        units = [("o", o.id) for o in best.ops] + [("f", f.id) for f in best.faults]
        if len(units) <= 1:
            break
        size = max(1, len(units) // n)
        chunks = [units[i:i + size] for i in range(0, len(units), size)]
        progressed = False
        for ch in chunks:
            keep = set(units) - set(ch)
            c = best.subset({i for k, i in keep if k == "o"}, {i for k, i in keep if k == "f"})
            c.secs = best.secs
            if attempt(c):
                n = max(n - 1, 2)
                progressed = True
                break
            if time.monotonic() >= budget_end:
                break
        if not progressed:
            if size == 1:
                break
            n = min(len(units), n * 2)
    print(f"chaos: --- shortest failing history found ({tries} replays; "
          f"{len(best.ops)} ops, {len(best.faults)} faults of {len(plan.ops)} and {len(plan.faults)}) ---")
    for r in best_history:
        print("chaos:   " + describe(r))
    if best is not plan:
        print(f"chaos: replay it: bash tests/chaos/run.sh --plan {Path(base) / 'shrunk-plan.json'}")

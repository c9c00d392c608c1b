"""What a chaos run does, drawn from its seed before anything starts.

A Plan is the cast (devices, users, the initial grants), the workload (one
list of operations, each for one device at a planned second) and the
faults (network changes, kills, a full disk, a corrupted WAL page). The
same seed gives the same plan; the run itself is not deterministic (real
processes, real time), which is why the checker judges the recorded
history, not the plan. The shrinker replays subsets of a plan.

Who may change what is fixed per fact, so each fact's changes come from one
device, one at a time (see model.py): the Ops folder's grants are changed
only by bob (its Folder Manager), the Fin folder's grants, group `it` and
the roster only by ada (the founding admin); bob revokes his own second
laptop. dan is a Folder Member of Ops for the whole run: his writes there
are refused statically.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

SHARED = ["Ops", "Fin"]
ROLES = ["member", "editor"]


@dataclass
class DeviceSpec:
    label: str
    email: str
    node: int
    index: int
    initial: bool = True  # enrolled in setup (else: by a workload op)
    tmpfs: bool = False  # data dir on a small tmpfs (the full-disk fault)


@dataclass
class Op:
    id: int
    dev: str
    t: float
    kind: str
    args: dict = field(default_factory=dict)
    # The actor's role forbids it since setup, and its daemon knows: it
    # must be refused (non-zero exit) and never appear anywhere.
    static_forbidden: bool = False


@dataclass
class Fault:
    id: int
    t: float
    kind: str
    args: dict = field(default_factory=dict)


@dataclass
class Plan:
    seed: int
    secs: float
    nodes: int
    devices: list[DeviceSpec]
    setup_groups: dict[str, list[str]]  # group -> emails
    setup_grants: dict[str, dict[str, str]]  # folder -> principal -> role
    ops: list[Op]
    faults: list[Fault]

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> "Plan":
        return Plan(
            seed=d["seed"], secs=d["secs"], nodes=d["nodes"],
            devices=[DeviceSpec(**x) for x in d["devices"]],
            setup_groups=d["setup_groups"], setup_grants=d["setup_grants"],
            ops=[Op(**x) for x in d["ops"]], faults=[Fault(**x) for x in d["faults"]],
        )

    def device(self, label: str) -> DeviceSpec:
        return next(d for d in self.devices if d.label == label)

    def subset(self, op_ids: set[int], fault_ids: set[int]) -> "Plan":
        return Plan(self.seed, self.secs, self.nodes, self.devices, self.setup_groups, self.setup_grants,
                    [o for o in self.ops if o.id in op_ids], [f for f in self.faults if f.id in fault_ids])


def cast(nodes: int) -> tuple[list[DeviceSpec], dict, dict]:
    """ada (admin), bob on two laptops, cyd (group it), dan (stable Folder
    Member of Ops), and for nodes > 5 more users alternating between group
    `it` and direct grants on Fin."""
    devs = [
        DeviceSpec("ada", "ada@example.com", 0, 0),
        DeviceSpec("bob", "bob@example.com", 1, 1),
        DeviceSpec("bob2", "bob@example.com", 2, 2),
        DeviceSpec("cyd", "cyd@example.com", 3, 3, tmpfs=True),
        DeviceSpec("dan", "dan@example.com", 4, 4),
    ]
    groups = {"it": ["cyd@example.com"]}
    grants = {
        "Ops": {"user:bob@example.com": "manager", "group:it": "editor", "user:dan@example.com": "member"},
        "Fin": {"group:it": "member", "user:dan@example.com": "editor"},
    }
    for n in range(5, nodes):
        name = f"u{n}"
        email = f"{name}@example.com"
        devs.append(DeviceSpec(name, email, n, n))
        if n % 2:
            groups["it"].append(email)
        else:
            grants["Fin"][f"user:{email}"] = "editor"
            grants["Ops"][f"user:{email}"] = "member"
    # Successors, enrolled by workload ops on the nodes of the devices they replace.
    devs.append(DeviceSpec("bob3", "bob@example.com", 2, nodes, initial=False))
    devs.append(DeviceSpec("cyd2", "cyd@example.com", 3, nodes + 1, initial=False))
    return devs, groups, grants


# What --without may leave out (op kinds, and the fault kinds).
OPTIONAL = {"user_remove", "revoke", "link", "share", "unshare", "group_add", "group_remove", "import", "lock",
            "kill", "net", "disk_full", "wal_corrupt"}


def make_plan(seed: int, secs: float, nodes: int, without: frozenset[str] = frozenset()) -> Plan:
    """Draws the plan; `without` leaves kinds of operations or faults out
    after drawing (so the rest of the plan is the same as without it)."""
    plan = draw_plan(seed, secs, nodes)
    if not without:
        return plan
    drop = set(without)
    if "user_remove" in drop:
        drop.add("invite")  # the re-invite of the removed user
    if "lock" in drop:
        drop.add("unlock")
    if "kill" in drop:
        drop |= {"kill_mid_import", "kill_after_heal"}
    plan.ops = [o for o in plan.ops if o.kind not in drop]
    plan.faults = [f for f in plan.faults if f.kind not in drop]
    return plan


def draw_plan(seed: int, secs: float, nodes: int) -> Plan:
    rng = random.Random(seed)
    devices, groups, grants = cast(nodes)
    ops: list[Op] = []
    faults: list[Fault] = []
    next_id = [0]

    def op(dev: str, t: float, kind: str, static_forbidden: bool = False, **args) -> None:
        if kind == "share" and not static_forbidden:
            # A third of the role changes go through `coffer folder role`
            # (refused, exit 5, when the principal holds no grant yet).
            args["cmd"] = "role" if next_id[0] % 3 == 0 else "share"
        ops.append(Op(next_id[0], dev, round(t, 2), kind, args, static_forbidden))
        next_id[0] += 1

    # ---- the roster and membership script (one issuer per fact) ---------
    it_members = [d.email for d in devices if d.initial and d.label not in ("ada", "bob", "bob2", "dan")]
    t_remove_cyd = secs * rng.uniform(0.35, 0.5)
    t_reinvite_cyd = t_remove_cyd + secs * rng.uniform(0.12, 0.2)
    t_revoke_bob2 = secs * rng.uniform(0.3, 0.55)
    t_relink_bob = t_revoke_bob2 + secs * rng.uniform(0.1, 0.2)
    op("bob", t_revoke_bob2, "revoke", target="bob2")
    op("bob", t_relink_bob, "link", new="bob3")
    op("ada", t_remove_cyd, "user_remove", email="cyd@example.com", retire=["cyd"])
    op("ada", t_reinvite_cyd, "invite", email="cyd@example.com", new="cyd2", groups=["it"])

    t = rng.uniform(3, 8)
    while t < secs * 0.9:
        who = rng.choice(["ada", "ada", "bob"])
        if who == "bob":
            # Ops grants: cyd directly, group it, the extra users.
            principal = rng.choice(["user:cyd@example.com", "group:it"] +
                                   [f"user:{e}" for e in it_members if e != "cyd@example.com"])
            if principal == "group:it":
                op("bob", t, "share", folder="Ops", principal=principal, role=rng.choice(ROLES))
            else:
                kind = rng.choice(["share", "share", "unshare"])
                if kind == "share":
                    op("bob", t, "share", folder="Ops", principal=principal, role=rng.choice(ROLES))
                else:
                    op("bob", t, "unshare", folder="Ops", principal=principal)
        else:
            r = rng.random()
            if r < 0.45 and it_members:
                email = rng.choice(it_members)
                op("ada", t, rng.choice(["group_add", "group_remove"]), group="it", email=email)
            elif r < 0.8:
                principal = rng.choice(["user:dan@example.com", "group:it"])
                kind = "share" if principal == "group:it" else rng.choice(["share", "share", "unshare"])
                if kind == "share":
                    op("ada", t, "share", folder="Fin", principal=principal, role=rng.choice(ROLES))
                else:
                    op("ada", t, "unshare", folder="Fin", principal=principal)
            else:
                principal = rng.choice(["user:bob@example.com", "user:cyd@example.com"])
                kind = rng.choice(["share", "unshare"])
                if kind == "share":
                    op("ada", t, "share", folder="Fin", principal=principal, role=rng.choice(ROLES))
                else:
                    op("ada", t, "unshare", folder="Fin", principal=principal)
        t += rng.uniform(3, 8)

    # ---- item writes, lock/unlock, forbidden attempts ----------------------
    # Times first (per device), then kinds in global time order, so an edit
    # only names an item some earlier add created.
    slots: list[tuple[float, str]] = []
    for d in devices:
        start = 1.0
        if not d.initial:
            start = (t_relink_bob if d.label == "bob3" else t_reinvite_cyd) + 15
        t = start + rng.uniform(0, 2)
        while t < secs:
            slots.append((t, d.label))
            t += rng.uniform(1.0, 3.0)
    slots.sort()
    items: list[tuple[str, str, str]] = []  # (name, folder, adding device)
    locked_until: dict[str, float] = {}
    for t, label in slots:
        if t < locked_until.get(label, 0):
            continue
        r = rng.random()
        folder = rng.choices(SHARED + ["Personal"], weights=[4, 3, 2])[0]
        # Items this device can name: shared ones, and its own personal ones.
        mine = [(n, f) for n, f, who in items[-60:] if f != "Personal" or who == label]

        def sf(f: str) -> bool:
            return label == "dan" and f == "Ops"

        if r < 0.34 or (0.34 <= r < 0.67 and not mine):
            name = f"w{next_id[0]}"
            items.append((name, folder, label))
            op(label, t, "add", sf(folder), folder=folder, name=name)
        elif r < 0.52:
            n, f = rng.choice(mine)
            op(label, t, "edit", sf(f), folder=f, item=n)
        elif r < 0.58:
            n, f = rng.choice(mine)
            op(label, t, "rm", sf(f), folder=f, item=n)
        elif r < 0.62:
            n, f = rng.choice(mine)
            op(label, t, "restore", sf(f), folder=f, item=n)
        elif r < 0.67:
            n, f = rng.choice(mine)
            op(label, t, "totp_set", sf(f), folder=f, item=n)
        elif r < 0.73:
            n = rng.choice([3, 5, 10, 20, 40]) if rng.random() < 0.9 else rng.choice([200, 400])
            op(label, t, "import", sf(folder), folder=folder, count=n)
        elif r < 0.77:
            op(label, t, "lock")
            back = t + rng.uniform(1, 6)
            op(label, back, "unlock")
            locked_until[label] = back + 0.5
        elif r < 0.81 and label != "ada":
            # Roster changes need a team admin.
            which = rng.choice(["group_create", "invite_x", "user_remove_x"])
            if which == "group_create":
                op(label, t, "group_create", True, group=f"x{next_id[0]}")
            elif which == "invite_x":
                op(label, t, "invite_x", True, email=f"x{next_id[0]}@example.com")
            else:
                op(label, t, "user_remove_x", True, email="ada@example.com" if label == "dan" else "dan@example.com")
        elif r < 0.84 and label == "dan":
            op(label, t, "share", True, folder="Ops", principal="user:dan@example.com", role="manager")
        else:
            name = f"w{next_id[0]}"
            items.append((name, folder, label))
            op(label, t, "add", sf(folder), folder=folder, name=name)

    # ---- faults ------------------------------------------------------------
    fid = [0]

    def fault(t: float, kind: str, **args) -> None:
        faults.append(Fault(fid[0], round(t, 2), kind, args))
        fid[0] += 1

    t = rng.uniform(2, 5)
    while t < secs:
        fault(t, "net", **random_net(rng, nodes))
        t += rng.uniform(4, 12)
    t = rng.uniform(5, 10)
    labels = [d.label for d in devices]
    while t < secs - 3:
        kind = rng.choice(["kill", "kill", "kill_mid_import", "kill_after_heal"])
        fault(t, kind, dev=rng.choice(labels), down=round(rng.uniform(0.2, 4.0), 2),
              unlock=rng.random() < 0.85)
        t += rng.uniform(5, 14)
    if secs >= 40:
        fault(secs * rng.uniform(0.2, 0.4), "disk_full", dev="cyd", hold=round(rng.uniform(4, 10), 1))
        fault(secs * rng.uniform(0.5, 0.8), "wal_corrupt", dev=rng.choice(["bob", "dan", "ada"]))
    ops.sort(key=lambda o: (o.t, o.id))
    faults.sort(key=lambda f: (f.t, f.id))
    return Plan(seed, secs, nodes, devices, groups, grants, ops, faults)


def random_net(rng: random.Random, nodes: int) -> dict:
    """One network state: a partition shape, per-node loss and bandwidth,
    per-link delay."""
    everyone = list(range(nodes))
    shape = rng.choice(["healed", "halves", "halves", "isolate", "bridge", "link_down", "cuts"])
    groups = None
    cuts: list[list[int]] = []
    down: list[int] = []
    if shape == "halves":
        shuffled = everyone[:]
        rng.shuffle(shuffled)
        k = rng.randint(1, nodes // 2)
        groups = [sorted(shuffled[:k]), sorted(shuffled[k:])]
    elif shape == "isolate":
        n = rng.choice(everyone)
        groups = [[n], [m for m in everyone if m != n]]
    elif shape == "bridge":
        shuffled = everyone[:]
        rng.shuffle(shuffled)
        b = shuffled[0]
        k = rng.randint(1, nodes - 2)
        left, right = shuffled[1:1 + k], shuffled[1 + k:]
        cuts = [[x, y] for x in left for y in right]
        groups = None
        shape = f"bridge via n{b}"
    elif shape == "link_down":
        down = [rng.choice(everyone)]
    elif shape == "cuts":
        pairs = [[a, b] for a in everyone for b in everyone if a < b]
        cuts = rng.sample(pairs, rng.randint(1, max(1, len(pairs) // 3)))
    loss = {str(n): rng.choice([0, 0, 0, 2, 5, 10, 20]) for n in everyone}
    bw = {str(n): rng.choice([None, None, None, 256, 1024, 8192]) for n in everyone}
    delay = [[a, b, rng.choice([0, 0, 5, 20, 50, 150, 400])] for a in everyone for b in everyone if a != b]
    return {"shape": shape, "groups": groups, "cuts": cuts, "down": down, "loss": loss, "bandwidth": bw,
            "delay": delay}

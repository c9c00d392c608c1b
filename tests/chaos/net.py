"""The chaos suite's network: namespaces it creates, and the faults it injects.

Layout (every name starts with the run's prefix, so cleanup only ever
touches this run's objects):

    PREFIX-br    one bridge `br0` (10.77.0.254/24), the delaying proxy, and
                 the partition rules (nftables, input/output by proxy port)
    PREFIX-nI    node I: `eth0` 10.77.0.(I+1)/24, a veth into the bridge; its
                 daemons listen on eth0; packet loss (nftables numgen) and a
                 bandwidth limit (tc tbf) live here

Daemons never talk to each other directly: the bridge drops IP between two
node ports (a `bridge` family rule), so every connection goes through the
proxy in PREFIX-br, which delays it by the link's current delay and which
the partition rules can cut. Nothing here is reachable from outside the
bridge namespace: it has no uplink. Needs root, `ip`, `nft` and `tc`.
"""

from __future__ import annotations

import subprocess
import tempfile

SUBNET = "10.77.0"
BRIDGE_IP = f"{SUBNET}.254"
PROXY_BASE_PORT = 20000


def sh(args: list[str], check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, input=input, text=True, capture_output=True)


def node_ip(node: int) -> str:
    return f"{SUBNET}.{node + 1}"


def node_of_ip(ip: str) -> int | None:
    parts = ip.split(".")
    if len(parts) == 4 and ".".join(parts[:3]) == SUBNET:
        n = int(parts[3]) - 1
        if 0 <= n < 250:
            return n
    return None


def proxy_port(device: int) -> int:
    return PROXY_BASE_PORT + device


class Net:
    """Namespaces, links and the fault knobs of one run."""

    def __init__(self, prefix: str, nodes: int):
        self.prefix = prefix
        self.nodes = nodes
        self.br = f"{prefix}-br"
        self.ns = [f"{prefix}-n{i}" for i in range(nodes)]
        # node -> device indexes running there (for partition rules)
        self.devices_on: dict[int, set[int]] = {i: set() for i in range(nodes)}
        self.blocked: set[frozenset[int]] = set()
        self.down: set[int] = set()

    # ---- setup / teardown -------------------------------------------------

    def nft(self, ns: str, script: str) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".nft") as f:
            f.write(script)
            f.flush()
            sh(["ip", "netns", "exec", ns, "nft", "-f", f.name])

    def up(self) -> None:
        sh(["ip", "netns", "add", self.br])
        ex = ["ip", "netns", "exec", self.br]
        sh(ex + ["ip", "link", "set", "lo", "up"])
        sh(ex + ["ip", "link", "add", "br0", "type", "bridge"])
        sh(ex + ["ip", "addr", "add", f"{BRIDGE_IP}/24", "dev", "br0"])
        sh(ex + ["ip", "link", "set", "br0", "up"])
        for i, ns in enumerate(self.ns):
            sh(["ip", "netns", "add", ns])
            # Both ends are created inside our namespaces: nothing appears
            # in the root namespace, even for a moment.
            sh(["ip", "link", "add", "eth0", "netns", ns, "type", "veth",
                "peer", "name", f"v{i}", "netns", self.br])
            nx = ["ip", "netns", "exec", ns]
            sh(nx + ["ip", "link", "set", "lo", "up"])
            sh(nx + ["ip", "addr", "add", f"{node_ip(i)}/24", "dev", "eth0"])
            sh(nx + ["ip", "link", "set", "eth0", "up"])
            sh(ex + ["ip", "link", "set", f"v{i}", "master", "br0"])
            sh(ex + ["ip", "link", "set", f"v{i}", "up"])
            self.nft(ns, "table inet chaos {\n"
                         " chain input { type filter hook input priority 0; policy accept; }\n"
                         "}\n")
        # Node to node only through the proxy; partitions by proxy port.
        self.nft(self.br, f"""
table bridge chaos {{
  chain forward_nodes {{
    type filter hook forward priority 0; policy accept;
    ip saddr {SUBNET}.0/24 ip daddr {SUBNET}.0/24 drop
  }}
}}
table inet chaos {{
  chain input {{ type filter hook input priority 0; policy accept; }}
  chain output {{ type filter hook output priority 0; policy accept; }}
}}
""")

    def down_all(self) -> None:
        """Best effort: deletes this run's namespaces (processes inside must
        be gone already; run.sh kills them by pid first)."""
        for ns in self.ns + [self.br]:
            sh(["ip", "netns", "del", ns], check=False)

    def exec_prefix(self, node: int) -> list[str]:
        return ["ip", "netns", "exec", self.ns[node]]

    def bridge_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.br]

    # ---- faults ---------------------------------------------------------

    def set_partition(self, groups: list[set[int]] | None, cut_pairs: set[frozenset[int]] | None = None) -> None:
        """Nodes in different `groups` cannot reach each other (None: heal).
        `cut_pairs` cuts single links instead (a bridge topology)."""
        blocked: set[frozenset[int]] = set()
        if groups:
            where = {n: gi for gi, g in enumerate(groups) for n in g}
            for a in range(self.nodes):
                for b in range(a + 1, self.nodes):
                    if where.get(a, -1) != where.get(b, -2):
                        blocked.add(frozenset((a, b)))
        if cut_pairs:
            blocked |= cut_pairs
        self.blocked = blocked
        self.apply_partition()

    def apply_partition(self) -> None:
        lines = ["flush chain inet chaos input", "flush chain inet chaos output"]
        for pair in sorted(self.blocked, key=sorted):
            a, b = sorted(pair)
            for x, y in ((a, b), (b, a)):
                ports = sorted(proxy_port(d) for d in self.devices_on.get(y, ()))
                if not ports:
                    continue
                ps = "{ " + ", ".join(map(str, ports)) + " }"
                lines.append(f"add rule inet chaos input ip saddr {node_ip(x)} tcp dport {ps} drop")
                lines.append(f"add rule inet chaos output ip daddr {node_ip(x)} tcp sport {ps} drop")
        self.nft(self.br, "\n".join(lines) + "\n")

    def set_loss(self, node: int, percent: int) -> None:
        lines = ["flush chain inet chaos input"]
        if percent > 0:
            lines.append(f"add rule inet chaos input numgen random mod 100 < {percent} drop")
        self.nft(self.ns[node], "\n".join(lines) + "\n")

    def set_bandwidth(self, node: int, kbit: int | None) -> None:
        nx = self.exec_prefix(node)
        sh(nx + ["tc", "qdisc", "del", "dev", "eth0", "root"], check=False)
        if kbit:
            burst = max(16, kbit // 8)
            sh(nx + ["tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", f"{kbit}kbit",
                     "burst", f"{burst}kbit", "latency", "500ms"])

    def set_link(self, node: int, up: bool) -> None:
        sh(self.exec_prefix(node) + ["ip", "link", "set", "eth0", "up" if up else "down"])
        if up:
            self.down.discard(node)
        else:
            self.down.add(node)

    def heal(self) -> None:
        self.set_partition(None)
        for n in range(self.nodes):
            self.set_loss(n, 0)
            self.set_bandwidth(n, None)
            if n in self.down:
                self.set_link(n, True)

"""Coffer's browser extension in a real browser (issue 15).

Debian's chromium driven by Playwright with the unpacked extension
(`browser/`) loaded into a temporary profile, the native host's manifest
installed into that profile by `coffer browser install --dir`, and real
daemons on loopback: Alice (team admin) and Bob, whose daemon the browser
uses; Bob is a Folder Member of Alice's folder Ops. Test pages are served
by this script on one loopback port under several host names
(`--host-resolver-rules` maps them all to 127.0.0.1).

The popup is opened as a page of its own (`popup.html?tab=N`: Playwright
cannot click the toolbar), and clicked like a user would.

Fills: a plain login form; a two-step login; the 2FA code of that second;
a Folder Member's login; "save this login?" then `coffer get` shows it.
Refusals, each its own check, nothing filled and no autofill record: a
look-alike domain, an http page for an https item, a form in a
cross-origin frame, invisible fields, a page that tries to fill without a
user action, a transparent overlay (clickjacking), another extension
calling the host, and requests outside the host's allowed set.

Fill latency (the popup's click to the page's input event) is measured on
every run; with --perf-only, with COFFER_BROWSER_ITEMS (default 10,000)
logins in the vault.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socketserver
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from walkthrough import BIN, PIN_A, PIN_B, TOTP_SECRET, Checks, Joiner, Node  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "browser"
EXT_ID = "ljbebaglikapmoonnjailinnjchcfhfh"
HOST = "dev.coffer.host"
TIMEOUT_MS = 15_000

BANK = "login.coffer-bank.com"      # Bob's own login: http://coffer-bank.com:PORT
STEP = "id.coffer-steps.com"        # two-step login, with a 2FA page
OPS = "team.coffer-ops.com"         # Alice's shared login, Bob a Folder Member
PAY = "secure.coffer-pay.com"       # an https item; the page is http
SIGNUP = "shop.coffer-shop.com"     # a new login to save
LOOKALIKES = ["coffer-bank.com.evil-site.net", "cofer-bank.com", "coffer-bank.co"]
FRAME = "frames.other-origin.net"   # a cross-origin iframe's host

LOGIN_FORM = """<form id=f action="/done" method=post>
<input id=user name=username autocomplete=username>
<input id=pass name=password type=password autocomplete=current-password>
<button>Sign in</button></form>"""

WATCH = """<script>
window.filledAt = null;
document.addEventListener('input', () => { window.filledAt = window.filledAt || Date.now(); }, true);
</script>"""

PAGES = {
    "/login": f"<h1>Sign in</h1>{LOGIN_FORM}{WATCH}",
    "/step1": """<h1>Step 1</h1><form action="/step2" method=get>
<input id=user name=identifier type=email autocomplete=username><button>Next</button></form>""" + WATCH,
    "/step2": """<h1>Step 2</h1><form action="/2fa" method=get>
<input id=pass name=password type=password autocomplete=current-password><button>Sign in</button></form>""" + WATCH,
    "/2fa": """<h1>2FA</h1><form action="/done" method=get>
<input id=otp name=otp inputmode=numeric autocomplete=one-time-code><button>Verify</button></form>""" + WATCH,
    "/framed": "<h1>Sign in below</h1><iframe id=fr src='http://{frame}/login' width=400 height=200></iframe>" + WATCH,
    "/invisible": """<h1>Hidden fields</h1><form>
<input id=u1 name=username style="opacity:0">
<input id=p1 type=password style="opacity:0">
<input id=u2 name=email style="position:absolute;left:-9999px">
<input id=p2 type=password style="position:absolute;top:-9999px">
<div style="display:none"><input id=p3 type=password></div>
<input id=p4 type=password style="visibility:hidden">
<input id=p5 type=password style="width:1px;height:1px;border:0;padding:0">
<div style="height:0;overflow:hidden"><input id=p6 type=password></div>
<input id=u3 name=login type=hidden>
</form>""" + WATCH,
    "/overlay": f"""<h1>Sign in</h1>{LOGIN_FORM}
<div id=veil style="position:fixed;inset:0;z-index:2147483647;background:transparent"
 onclick="window.veilClicked=true"></div>{WATCH}""",
    "/auto": f"""<h1>Sign in</h1>{LOGIN_FORM}{WATCH}<script>
// Everything a page can do to start a fill by itself.
const u = document.getElementById('user');
u.focus(); u.click();
for (const t of ['keydown','keypress','keyup']) {{
  document.dispatchEvent(new KeyboardEvent(t, {{key:'L', code:'KeyL', altKey:true, shiftKey:true, bubbles:true}}));
}}
window.postMessage({{type:'fill', item:'*'}}, '*');
try {{ chrome.runtime.sendMessage('{EXT_ID}', {{type:'fill', tabId:0, item:'*'}}); }} catch (e) {{}}
document.getElementById('f').dispatchEvent(new Event('submit', {{bubbles:true, cancelable:true}}));
window.tried = true;
</script>""",
    "/signup": """<h1>Create an account</h1><form action="/welcome" method=post>
<input id=user name=email type=email autocomplete=username>
<input id=pass name=password type=password autocomplete=new-password><button id=go>Create</button></form>""",
    "/welcome": "<h1>Welcome</h1>",
    "/done": "<h1>Done</h1>",
}


class Pages(http.server.BaseHTTPRequestHandler):
    def _page(self) -> None:
        path = self.path.split("?")[0]
        body = PAGES.get(path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        port = self.server.server_address[1]
        body = body.replace("{frame}", f"{FRAME}:{port}")
        data = f"<!doctype html><html><head><meta charset=utf-8><title>{path}</title></head><body>{body}</body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._page()

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._page()

    def log_message(self, *args) -> None:
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


class Browser:
    """Chromium with the extension (and the other one), on Bob's daemon."""

    def __init__(self, p, base: Path, node: Node, port: int):
        self.port = port
        self.node = node
        profile = base / "profile"
        hosts = profile / "NativeMessagingHosts"
        # Where Chromium looks with --user-data-dir: PROFILE/NativeMessagingHosts.
        node.cli(["browser", "install", "--browser", "chromium", "--dir", str(hosts),
                  "--host", str(BIN / "coffer-native-host")])
        other = base / "other-extension"
        other.mkdir()
        (other / "manifest.json").write_text(json.dumps({
            "manifest_version": 3, "name": "Not Coffer", "version": "1",
            "permissions": ["nativeMessaging"], "background": {"service_worker": "bg.js"}}))
        (other / "bg.js").write_text("// tries the host from the test\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("COFFER_")}
        env.update(COFFER_SOCKET=str(node.socket))
        exts = f"{EXTENSION},{other}"
        names = [BANK, STEP, OPS, PAY, SIGNUP, FRAME, *LOOKALIKES]
        rules = ", ".join(f"MAP {n} 127.0.0.1" for n in names)
        self.ctx = p.chromium.launch_persistent_context(
            str(profile), executable_path=os.environ.get("COFFER_CHROMIUM", "/usr/bin/chromium"),
            headless=True, env=env, viewport={"width": 1000, "height": 700},
            args=["--no-sandbox", "--disable-gpu", f"--disable-extensions-except={exts}",
                  f"--load-extension={exts}", f"--host-resolver-rules={rules}",
                  "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable"])
        self.workers = {}
        deadline = time.monotonic() + 20
        while len(self.workers) < 2:
            for w in self.ctx.service_workers:
                self.workers[w.url.split("/")[2]] = w
            if len(self.workers) < 2:
                assert time.monotonic() < deadline, f"extensions did not start: {list(self.workers)}"
                self.ctx.wait_for_event("serviceworker", timeout=TIMEOUT_MS)
        assert EXT_ID in self.workers, f"Coffer's extension id is not {EXT_ID}: {list(self.workers)}"
        self.sw = self.workers[EXT_ID]
        self.other = next(w for k, w in self.workers.items() if k != EXT_ID)

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.port}{path}"

    def open(self, host: str, path: str):
        page = self.ctx.new_page()
        page.goto(self.url(host, path))
        return page

    def tab_id(self, page) -> int:
        tid = self.sw.evaluate("async (u) => (await chrome.tabs.query({})).find(t => t.url === u)?.id", page.url)
        assert tid is not None, f"no tab for {page.url}"
        return tid

    def popup(self, page):
        """The popup for `page`'s tab, loaded (its state: ready, locked, ...)."""
        popup = self.ctx.new_page()
        popup.goto(f"chrome-extension://{EXT_ID}/popup.html?tab={self.tab_id(page)}")
        popup.wait_for_function("() => document.body.dataset.state", timeout=TIMEOUT_MS)
        return popup

    def click(self, popup, selector: str) -> dict:
        """Clicks (a user's click) and waits for the popup's answer."""
        popup.evaluate("() => { delete document.body.dataset.filled; }")
        popup.click(selector)
        popup.wait_for_function("() => document.body.dataset.filled !== undefined", timeout=TIMEOUT_MS)
        return {"filled": popup.evaluate("() => document.body.dataset.filled"),
                "status": popup.locator("#status").inner_text(),
                "clicked_at": int(popup.evaluate("() => document.body.dataset.clickedAt"))}

    def ask(self, popup, msg: dict) -> dict:
        """A message sent from the popup by hand (what a buggy popup could send)."""
        return popup.evaluate("(m) => chrome.runtime.sendMessage(m)", msg)


def values(page, ids=("user", "pass")) -> list[str]:
    return [page.eval_on_selector(f"#{i}", "e => e.value") for i in ids]


def autofills(node: Node) -> int:
    return len(node.json(["audit", "--action", "autofill"]))


def setup(base: Path, port: int) -> tuple[Node, Node, dict]:
    a, b = Node("alice", base), Node("bob", base)
    a.start()
    a.cli(["init", "--name", "Alice", "--email", "alice@acme.test", "--pin-stdin"], PIN_A + "\n" + PIN_A + "\n")
    a.cli(["team", "create", "Acme"])
    b.start([a.addr])
    code = a.json(["invite", "bob@acme.test"])["code"]
    joiner = Joiner(b, code, a)
    shown = joiner.verification_code()
    deadline = time.monotonic() + 60
    while not a.json(["invite", "pending"]):
        assert time.monotonic() < deadline, "the join is not pending"
        time.sleep(0.2)
    a.cli(["invite", "confirm", shown])
    assert joiner.proc.wait(60) == 0, "\n".join(joiner.lines)
    a.cli(["folder", "create", "Ops"])
    a.cli(["folder", "share", "Ops", "--user", "bob@acme.test", "--role", "member"])
    a.cli(["add", "login", "Ops Console", "--folder", "Ops", "--username", "ops-admin",
           "--url", f"http://{OPS}:{port}/"], "ops-secret-1\n")
    ids = {}
    ids["bank"] = b.json(["add", "login", "Bank", "--username", "bob", "--url", f"http://coffer-bank.com:{port}"],
                         "bank-secret-1\n")["id"]
    ids["step"] = b.json(["add", "login", "Steps", "--username", "bob@acme.test",
                          "--url", f"http://{STEP}:{port}/step1"], "step-secret-1\n")["id"]
    b.cli(["totp", "set", "Steps"], TOTP_SECRET + "\n")
    ids["pay"] = b.json(["add", "login", "Pay", "--username", "bob", "--url", f"https://{PAY}:{port}"],
                        "pay-secret-1\n")["id"]
    deadline = time.monotonic() + 60
    while b.cli(["get", "Ops/Ops Console", "--json"], check=False).returncode != 0:
        assert time.monotonic() < deadline, "the shared folder did not reach Bob"
        time.sleep(0.3)
    ids["ops"] = b.json(["get", "Ops/Ops Console"])["id"]
    return a, b, ids


def fills(br: Browser, b: Node, ids: dict, c: Checks) -> list[float]:
    latencies = []
    # A plain login form.
    page = br.open(BANK, "/login")
    popup = br.popup(page)
    names = popup.locator("#logins button.fill").all_inner_texts()
    assert len(names) == 1 and names[0].startswith("Bank"), names
    assert "bank-secret-1" not in popup.content()
    r = br.click(popup, f"button.fill[data-item='{ids['bank']}']")
    assert r["filled"] == "password,username", r
    assert values(page) == ["bob", "bank-secret-1"], values(page)
    latencies.append(page.evaluate("() => window.filledAt") - r["clicked_at"])
    for _ in range(4):
        page.reload()
        r = br.click(popup, f"button.fill[data-item='{ids['bank']}']")
        latencies.append(page.evaluate("() => window.filledAt") - r["clicked_at"])
    c.ok(f"a plain login form filled from the popup (the popup shows no password); click to filled {latencies[0]} ms")
    # Keyboard: the first entry has the focus; Enter fills.
    page.reload()
    popup.reload()
    popup.wait_for_function("() => document.body.dataset.state === 'ready'")
    popup.keyboard.press("Enter")
    popup.wait_for_function("() => document.body.dataset.filled !== undefined", timeout=TIMEOUT_MS)
    assert values(page) == ["bob", "bank-secret-1"], values(page)
    c.ok("the keyboard fills too (the first match is focused; Enter)")
    page.close()
    popup.close()

    # A two-step login, then its 2FA code.
    page = br.open(STEP, "/step1")
    popup = br.popup(page)
    r = br.click(popup, f"button.fill[data-item='{ids['step']}']")
    assert r["filled"] == "username" and values(page, ["user"]) == ["bob@acme.test"], r
    page.click("button")
    page.wait_for_url("**/step2**")
    r = br.click(popup, f"button.fill[data-item='{ids['step']}']")
    assert r["filled"] == "password" and values(page, ["pass"]) == ["step-secret-1"], r
    c.ok("a two-step login: the username on the first page, the password on the second")
    page.click("button")
    page.wait_for_url("**/2fa**")
    before = b.json(["totp", "Steps"])["code"]
    r = br.click(popup, f"button.totp[data-item='{ids['step']}']")
    after = b.json(["totp", "Steps"])["code"]
    got = values(page, ["otp"])[0]
    assert r["filled"] == "code" and got in (before, after), (r, got, before, after)
    c.ok(f"the 2FA page's one-time-code field gets the linked TOTP code of that second ({got})")
    page.close()
    popup.close()

    # A Folder Member's login (Alice's folder Ops).
    page = br.open(OPS, "/login")
    popup = br.popup(page)
    r = br.click(popup, f"button.fill[data-item='{ids['ops']}']")
    assert values(page) == ["ops-admin", "ops-secret-1"], (r, values(page))
    c.ok("a login of a folder where Bob is a Folder Member fills (and is not shown)")
    page.close()
    popup.close()

    # Audit: every fill and code insert is one autofill record.
    rows = b.json(["audit", "--action", "autofill"])
    assert {r["field"] for r in rows} == {"password", "totp"}, rows
    assert len(rows) == 10, [(r["item_name"], r["field"]) for r in rows]
    c.ok(f"every fill and 2FA insert left an autofill record ({len(rows)}), with the page's origin")

    # "Save this login?" after a submit.
    page = br.open(SIGNUP, "/signup")
    page.fill("#user", "newbie@acme.test")
    page.fill("#pass", "fresh-secret-9")
    page.click("#go")
    page.wait_for_url("**/welcome")
    popup = br.popup(page)
    assert popup.locator("#offer").is_visible(), popup.content()
    assert "fresh-secret-9" not in popup.content()
    popup.fill("#offer-name", "Coffer Shop")
    popup.click("#offer-save")
    popup.wait_for_function("() => document.body.dataset.saved !== undefined", timeout=TIMEOUT_MS)
    item = b.json(["get", "Coffer Shop", "--reveal"])
    assert item["fields"]["username"] == "newbie@acme.test" and item["fields"]["password"] == "fresh-secret-9", item
    assert item["urls"] == [f"http://{SIGNUP}:{br.port}"], item
    c.ok("after a sign-up submit the popup offers to save; saved, `coffer get` shows it")
    page.close()
    popup.close()
    return latencies


def refusals(br: Browser, b: Node, ids: dict, c: Checks) -> None:
    count = autofills(b)

    def nothing(what: str) -> None:
        assert autofills(b) == count, f"{what}: an autofill record was written"
        c.ok(what)

    # Look-alike domains: no match listed; a fill asked by hand is refused.
    for host in LOOKALIKES:
        page = br.open(host, "/login")
        popup = br.popup(page)
        assert popup.locator("#logins button").count() == 0, host
        r = br.ask(popup, {"type": "fill", "tabId": br.tab_id(page), "item": ids["bank"]})
        assert r.get("error", {}).get("code") == "denied", r
        assert values(page) == ["", ""]
        page.close()
        popup.close()
    nothing(f"look-alike domains ({', '.join(LOOKALIKES)}): no match, a forced fill refused by the daemon")

    # An https item on the http page of its host.
    page = br.open(PAY, "/login")
    popup = br.popup(page)
    assert popup.locator("#logins button").count() == 0
    r = br.ask(popup, {"type": "fill", "tabId": br.tab_id(page), "item": ids["pay"]})
    assert r.get("error", {}).get("code") == "denied", r
    assert values(page) == ["", ""]
    page.close()
    popup.close()
    nothing("an https item is not filled into the http page of its host")

    # A login form inside a cross-origin iframe on the bank's own page.
    page = br.open(BANK, "/framed")
    frame = page.frame_locator("#fr")
    frame.locator("#user").wait_for(timeout=TIMEOUT_MS)
    popup = br.popup(page)
    r = br.click(popup, f"button.fill[data-item='{ids['bank']}']")
    inner = page.frames[1]
    assert r["filled"] == "" and [inner.eval_on_selector(s, "e => e.value") for s in ("#user", "#pass")] == ["", ""], r
    page.close()
    popup.close()
    nothing("a login form in a cross-origin iframe is not filled (top frame only), the daemon not even asked")

    # Invisible and off-screen fields.
    page = br.open(BANK, "/invisible")
    popup = br.popup(page)
    r = br.click(popup, f"button.fill[data-item='{ids['bank']}']")
    got = page.evaluate("() => [...document.querySelectorAll('input')].map(i => i.value).join('')")
    assert r["filled"] == "" and got == "", (r, got)
    page.close()
    popup.close()
    nothing("invisible, off-screen, zero-size and hidden fields are never filled, the daemon not even asked")

    # A transparent overlay over the form (clickjacking).
    page = br.open(BANK, "/overlay")
    popup = br.popup(page)
    r = br.click(popup, f"button.fill[data-item='{ids['bank']}']")
    assert r["filled"] == "" and values(page) == ["", ""], (r, values(page))
    page.close()
    popup.close()
    nothing("a form under a transparent overlay is not filled (the field is not what a click there reaches)")

    # A page that tries to fill by itself: nothing, and no record.
    page = br.open(BANK, "/auto")
    page.wait_for_function("() => window.tried === true")
    time.sleep(1.0)
    assert values(page) == ["", ""]
    page.close()
    nothing("a page that tries to start a fill itself (events, messages, focus) gets nothing")

    # Another extension calling the host: the browser refuses it.
    err = br.other.evaluate("""() => new Promise((done) => {
        const p = chrome.runtime.connectNative('dev.coffer.host');
        p.onMessage.addListener((m) => done('answered: ' + JSON.stringify(m)));
        p.onDisconnect.addListener(() => done('refused: ' + (chrome.runtime.lastError || {}).message));
        p.postMessage({id: 1, method: 'browser.find', params: {origin: 'http://coffer-bank.com:%d'}});
    })""" % br.port)
    assert err.startswith("refused:"), err
    c.ok(f"another extension cannot start the host ({err})")

    # Requests outside the allowed set, sent by Coffer's own extension.
    replies = br.sw.evaluate("""() => new Promise((done) => {
        const p = chrome.runtime.connectNative('dev.coffer.host');
        const got = [];
        const asks = [
          {id: 1, method: 'item.get', params: {item: 'Bank'}},
          {id: 2, method: 'export', params: {pin: '1', format: 'json'}},
          {id: 3, method: 'item.list', params: {}},
          {id: 4, method: 'unlock', params: {pin: '1'}},
          {id: 5, method: 'totp.code', params: {item: 'Steps'}},
        ];
        p.onMessage.addListener((m) => { got.push(m); if (got.length === asks.length) { p.disconnect(); done(got); } });
        p.onDisconnect.addListener(() => done(got));
        for (const a of asks) p.postMessage(a);
    })""")
    assert len(replies) == 5 and all(r.get("error", {}).get("code") == "refused" for r in replies), replies
    assert "bank-secret-1" not in json.dumps(replies)
    nothing("requests outside the host's four (item.get, export, item.list, unlock, totp.code) are refused by the host")


def locked(br: Browser, b: Node, c: Checks) -> None:
    b.cli(["lock"])
    page = br.open(BANK, "/login")
    popup = br.popup(page)
    assert popup.evaluate("() => document.body.dataset.state") == "locked"
    text = popup.locator("#status").inner_text()
    assert "coffer unlock" in text and "web app" in text, text
    page.close()
    popup.close()
    b.cli(["unlock", "--pin-stdin"], PIN_B + "\n")
    c.ok(f"locked vault: the popup says {text!r}")


def perf(p, base: Path, port: int, n: int, c: Checks) -> None:
    node = Node("perf", base)
    node.start()
    try:
        node.cli(["init", "--name", "Perf", "--email", "perf@acme.test", "--pin-stdin"], PIN_A + "\n" + PIN_A + "\n")
        csv = base / "perf.csv"
        with open(csv, "w") as f:
            f.write("name,url,username,password\n")
            for i in range(n):
                f.write(f"Service {i:05d},https://s{i}.example.com/,user{i}@acme.test,pw-{i:05d}-x\n")
        node.cli(["import", str(csv), "--format", "chrome-csv"], timeout=900)
        bank = node.json(["add", "login", "Bank", "--username", "bob", "--url", f"http://coffer-bank.com:{port}"],
                         "bank-secret-1\n")["id"]
        br = Browser(p, base / "perf-browser", node, port)
        page = br.open(BANK, "/login")
        listed = []
        for _ in range(5):
            popup = br.popup(page)
            # From the popup's navigation start to its list of matches.
            listed.append(round(popup.evaluate("() => performance.getEntriesByName('coffer-listed')[0].startTime")))
            popup.close()
        popup = br.popup(page)
        lat = []
        for _ in range(7):
            page.reload()
            r = br.click(popup, f"button.fill[data-item='{bank}']")
            lat.append(page.evaluate("() => window.filledAt") - r["clicked_at"])
        med = statistics.median(lat)
        print(f"  ..  {n} items: click to filled {lat} ms, median {med} ms; "
              f"popup open to matches listed {listed} ms", flush=True)
        c.ok(f"{n} items: fill latency median {med} ms (of {len(lat)}), "
             f"popup listed in {statistics.median(listed)} ms (median of {len(listed)})")
        br.ctx.close()
    finally:
        node.stop()


def main() -> int:
    perf_only = "--perf-only" in sys.argv
    items = int(os.environ.get("COFFER_BROWSER_ITEMS", "10000"))
    (base_root := Path(tempfile.gettempdir()) / "coffer-ext-tests").mkdir(mode=0o700, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="run-", dir=base_root))
    server = Server(("127.0.0.1", 0), Pages)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    nodes: list[Node] = []
    c = Checks()
    started = time.monotonic()
    try:
        with sync_playwright() as p:
            if perf_only:
                perf(p, base, port, items, c)
            else:
                a, b, ids = setup(base, port)
                nodes += [a, b]
                br = Browser(p, base / "browser", b, port)
                lat = fills(br, b, ids, c)
                refusals(br, b, ids, c)
                locked(br, b, c)
                print(f"  ..  fill latency (click to filled), few items: {lat} ms, median {statistics.median(lat)} ms")
                br.ctx.close()
    except Exception:
        for n in nodes:
            print(f"--- {n.name}'s log (tail) ---\n{n.log.read_text()[-3000:] if n.log.exists() else ''}", file=sys.stderr)
        raise
    finally:
        server.shutdown()
        for n in nodes:
            n.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"extension: {len(c.passed)} checks passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

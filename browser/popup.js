// Coffer's popup: the only place a choice is made. It lists the logins
// the daemon says may be filled into the tab's page, and fills one on a
// click or a key press (Enter/Space on the focused entry). It shows no
// password, ever: a Folder Member's logins fill but are not revealed.
//
// The tab is the active one; `popup.html?tab=N` names another (how the
// browser tests open it, as a page of its own).

const $ = (id) => document.getElementById(id);

function say(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function ask(msg) {
  return chrome.runtime.sendMessage(msg);
}

function explain(error) {
  switch (error.code) {
    case "locked":
      return "Your vault is locked. Unlock it with `coffer unlock` or in the web app (`coffer ui`), then open Coffer again.";
    case "no_host":
      return "Coffer's native host is not reachable: run `coffer browser install` and restart the browser. (" + error.message + ")";
    case "no_daemon":
      return "cofferd is not running: run `coffer status` to start it.";
    case "not_initialized":
      return "No vault on this device yet: run `coffer init`.";
    case "denied":
      return "Refused: " + error.message;
    default:
      return error.message || "Something went wrong.";
  }
}

async function tabId() {
  const named = new URLSearchParams(location.search).get("tab");
  if (named) return Number(named);
  const [tab] = await chrome.tabs.query({ active: true, currentWindow: true });
  return tab ? tab.id : -1;
}

function filledText(r) {
  if (r.error) return [explain(r.error), true];
  if (r.filled && r.filled.length) return ["Filled " + r.filled.join(" and ") + ".", false];
  return [r.why || "Nothing was filled.", true];
}

async function main() {
  const tab = await tabId();
  say("Looking for logins…");
  const found = await ask({ type: "find", tabId: tab });
  if (found.origin) $("origin").textContent = found.origin;
  if (found.error) {
    say(explain(found.error), true);
    document.body.dataset.state = found.error.code;
    return;
  }
  const logins = found.logins || [];
  const list = $("logins");
  for (const login of logins) {
    const li = document.createElement("li");
    const fill = document.createElement("button");
    fill.className = "fill";
    fill.dataset.item = login.id;
    fill.textContent = login.name;
    if (login.username) {
      const small = document.createElement("small");
      small.textContent = " " + login.username;
      fill.append(small);
    }
    fill.addEventListener("click", async () => {
      document.body.dataset.clickedAt = String(Date.now());
      const r = await ask({ type: "fill", tabId: tab, item: login.id });
      const [text, error] = filledText(r);
      say(text, error);
      document.body.dataset.filled = (r.filled || []).join(",");
    });
    li.append(fill);
    if (login.has_totp) {
      const code = document.createElement("button");
      code.className = "totp";
      code.dataset.item = login.id;
      code.textContent = "2FA code";
      code.title = "Fill the current 2FA code of " + login.name;
      code.addEventListener("click", async () => {
        document.body.dataset.clickedAt = String(Date.now());
        const r = await ask({ type: "totp", tabId: tab, item: login.id });
        const [text, error] = filledText(r);
        say(text, error);
        document.body.dataset.filled = (r.filled || []).join(",");
      });
      li.append(code);
    }
    list.append(li);
  }
  say(logins.length ? "Choose a login to fill:" : "No login in your vault for this site.");
  document.body.dataset.state = "ready";
  performance.mark("coffer-listed");
  // Offered unless a listed login of this site has that username already.
  if (found.offer && !logins.some((l) => (l.username || "") === (found.offer.username || ""))) {
    $("offer").hidden = false;
    $("offer-origin").textContent = found.origin;
    $("offer-user").textContent = found.offer.username || "(none)";
    $("offer-save").addEventListener("click", async () => {
      const r = await ask({ type: "save", tabId: tab, name: $("offer-name").value });
      $("offer").hidden = true;
      if (r.error) say(explain(r.error), true);
      else say("Saved as " + r.saved.name + " in " + r.saved.folder + ".", false);
      document.body.dataset.saved = r.error ? "" : r.saved.name;
    });
    $("offer-dismiss").addEventListener("click", async () => {
      await ask({ type: "dismiss", tabId: tab });
      $("offer").hidden = true;
    });
  }
  const first = list.querySelector("button");
  if (first) first.focus();
}

main().catch((e) => say(String(e), true));

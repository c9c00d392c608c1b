// Coffer's extension, background part: the one place that talks to the
// native host (`coffer-native-host`, which forwards to cofferd only the
// four browser.* requests) and the one place that writes into pages.
//
// Safety by construction (docs/browser.md):
// - a fill or code insert happens only on a message from the extension's
//   own popup (a click or a key press there); pages and the content
//   script can only offer a login to save;
// - the origin sent to the daemon is the tab's top-level URL as the
//   browser reports it; the daemon decides whether an item may be filled
//   there (scheme, port, registrable domain);
// - values are written into the top frame only (frameIds [0]), after the
//   page checked it is still that origin, into visible, on-screen fields
//   that are not covered by another element; no UI is ever added to a page.

const HOST = "dev.coffer.host";

let port = null;
let nextId = 1;
const waiting = new Map();

function connect() {
  if (port) return port;
  port = chrome.runtime.connectNative(HOST);
  port.onMessage.addListener((msg) => {
    const done = msg && waiting.get(msg.id);
    if (done) {
      waiting.delete(msg.id);
      done(msg);
    }
  });
  port.onDisconnect.addListener(() => {
    const why = (chrome.runtime.lastError && chrome.runtime.lastError.message) || "the native host stopped";
    port = null;
    for (const [id, done] of waiting) done({ id, error: { code: "no_host", message: why } });
    waiting.clear();
  });
  return port;
}

// One request to the daemon through the host: {result} or {error}.
function call(method, params) {
  return new Promise((resolve) => {
    const id = nextId++;
    waiting.set(id, resolve);
    try {
      connect().postMessage({ id, method, params });
    } catch (e) {
      waiting.delete(id);
      resolve({ id, error: { code: "no_host", message: String(e) } });
    }
  });
}

// The tab's top-level origin, or null for a page nothing is filled into.
async function tabOrigin(tabId) {
  const tab = await chrome.tabs.get(tabId);
  if (!tab || !tab.url) return null;
  const url = new URL(tab.url);
  if (url.protocol !== "https:" && url.protocol !== "http:") return null;
  return url.origin;
}

// ---- What runs in the page (top frame only, the extension's isolated world) ----

// Fills `values` ({username, password} or {code}) into the page if it is
// still `expected`; returns the kinds of field filled. With `probe` it
// fills nothing and says which it would (values then only say which kinds
// are asked: `true`). Self-contained: chrome.scripting serialises it.
function fillInPage(expected, values, probe) {
  if (window.top !== window || location.origin !== expected) {
    return { filled: [], why: "the page is not the one the login was chosen for" };
  }
  const MIN_SIZE = 6;
  function visible(el) {
    if (!el.isConnected || el.disabled || el.readOnly || el.type === "hidden") return false;
    if (el.checkVisibility && !el.checkVisibility({ opacityProperty: true, visibilityProperty: true, contentVisibilityAuto: true })) {
      return false;
    }
    for (let n = el; n && n.nodeType === 1; n = n.parentElement) {
      const s = getComputedStyle(n);
      if (s.display === "none" || s.visibility !== "visible" && n === el || parseFloat(s.opacity) < 0.2) return false;
    }
    let r = el.getBoundingClientRect();
    if (r.width < MIN_SIZE || r.height < MIN_SIZE) return false;
    // Inside the document (not pushed off to a negative position).
    if (r.right + scrollX <= 0 || r.bottom + scrollY <= 0) return false;
    if (r.left >= innerWidth || r.top >= innerHeight || r.bottom <= 0 || r.right <= 0) {
      el.scrollIntoView({ block: "center", inline: "center" });
      r = el.getBoundingClientRect();
      if (r.left >= innerWidth || r.top >= innerHeight || r.bottom <= 0 || r.right <= 0) return false;
    }
    // What the user would click at the field's centre must be the field
    // (or its label): a field under another element, even a transparent
    // one, is not filled.
    const x = Math.min(Math.max(r.left + r.width / 2, 0), innerWidth - 1);
    const y = Math.min(Math.max(r.top + r.height / 2, 0), innerHeight - 1);
    const hit = document.elementFromPoint(x, y);
    if (!hit) return false;
    if (hit === el || el.contains(hit)) return true;
    const label = hit.closest && hit.closest("label");
    return !!label && label.control === el;
  }
  function set(el, value) {
    if (probe) return;
    const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set;
    setter.call(el, value);
    el.dispatchEvent(new Event("input", { bubbles: true }));
    el.dispatchEvent(new Event("change", { bubbles: true }));
  }
  const text = (i) => ["text", "email", "tel", "number", ""].includes((i.getAttribute("type") || "").toLowerCase()) || i.type === "text";
  const named = (i, re) => re.test([i.name, i.id, i.getAttribute("autocomplete"), i.getAttribute("placeholder"), i.getAttribute("aria-label")].join(" "));
  const OTP = /one-time-code|\botp\b|totp|2fa|mfa|one.?time|verification|security.?code|auth.?code|\bcode\b|token/i;
  const USER = /user|e-?mail|login|account|identifier|\bid\b/i;
  const inputs = [...document.querySelectorAll("input")];
  const filled = [];
  if (values.code !== undefined) {
    const otp = inputs.filter((i) => text(i) && visible(i));
    const field = otp.find((i) => i.getAttribute("autocomplete") === "one-time-code") || otp.find((i) => named(i, OTP));
    if (field) {
      set(field, values.code);
      filled.push("code");
    }
    return { filled, why: field ? null : "no visible 2FA code field on this page" };
  }
  const password = inputs.find((i) => i.type === "password" && visible(i));
  if (password && values.password) {
    set(password, values.password);
    filled.push("password");
  }
  if (values.username) {
    const candidates = inputs.filter((i) => text(i) && !named(i, OTP) && visible(i));
    let user = candidates.find((i) => /username|email/.test(i.getAttribute("autocomplete") || "")) ||
      candidates.find((i) => i.type === "email") ||
      candidates.find((i) => named(i, USER));
    if (!user && password) {
      // The text field just before the password in its form.
      const before = candidates.filter((i) => i.form === password.form &&
        (i.compareDocumentPosition(password) & Node.DOCUMENT_POSITION_FOLLOWING));
      user = before[before.length - 1];
    }
    if (user) {
      set(user, values.username);
      filled.push("username");
    }
  }
  return { filled, why: filled.length ? null : "no visible login field on this page" };
}

async function writeInto(tabId, origin, values, probe) {
  const [done] = await chrome.scripting.executeScript({
    target: { tabId, frameIds: [0] },
    func: fillInPage,
    args: [origin, values, !!probe],
  });
  return done && done.result ? done.result : { filled: [], why: "the page could not be reached" };
}

// ---- Offers to save ----

const pendingKey = (tabId) => `offer-${tabId}`;

async function offerFor(tabId, origin) {
  const key = pendingKey(tabId);
  const got = await chrome.storage.session.get(key);
  const offer = got[key];
  if (!offer || offer.origin !== origin || Date.now() - offer.at > 5 * 60 * 1000) return null;
  return offer;
}

// ---- Messages ----

const POPUP = chrome.runtime.getURL("popup.html");

async function fromPopup(msg) {
  const tabId = Number(msg.tabId);
  const origin = await tabOrigin(tabId);
  if (!origin) return { error: { code: "page", message: "Coffer fills only http and https pages." } };
  switch (msg.type) {
    case "find": {
      const r = await call("browser.find", { origin });
      const offer = await offerFor(tabId, origin);
      return { origin, logins: r.result, error: r.error, offer: offer && { username: offer.username } };
    }
    case "fill":
    case "totp": {
      const method = msg.type === "fill" ? "browser.fill" : "browser.totp";
      // First, without any value: is there a field to fill? If not, the
      // daemon is not asked, so nothing leaves the vault (and no record).
      const asked = msg.type === "fill" ? { username: true, password: true } : { code: true };
      const probe = await writeInto(tabId, origin, asked, true);
      if (!probe.filled.length) return probe;
      const r = await call(method, { origin, item: String(msg.item) });
      if (r.error) return { error: r.error };
      const values = msg.type === "fill" ? r.result : { code: r.result.code };
      return await writeInto(tabId, origin, values);
    }
    case "save": {
      const offer = await offerFor(tabId, origin);
      if (!offer) return { error: { code: "gone", message: "Nothing to save any more." } };
      await chrome.storage.session.remove(pendingKey(tabId));
      const r = await call("browser.save", {
        origin, name: msg.name || null, username: offer.username, password: offer.password,
      });
      return r.error ? { error: r.error } : { saved: r.result };
    }
    case "dismiss":
      await chrome.storage.session.remove(pendingKey(tabId));
      return {};
    default:
      return { error: { code: "refused", message: "unknown request" } };
  }
}

async function fromPage(msg, sender) {
  // The content script's one message: a login form was submitted in the
  // top frame. Kept in session memory for the popup to offer; the origin
  // is the browser's word for the frame, not the page's.
  if (msg.type !== "submitted" || sender.frameId !== 0 || !sender.tab) return {};
  const origin = sender.origin || new URL(sender.url).origin;
  if (typeof msg.password !== "string" || !msg.password || msg.password.length > 4096) return {};
  const username = typeof msg.username === "string" ? msg.username.slice(0, 512) : "";
  await chrome.storage.session.set({
    [pendingKey(sender.tab.id)]: { origin, username, password: msg.password, at: Date.now() },
  });
  return {};
}

chrome.runtime.onMessage.addListener((msg, sender, reply) => {
  if (sender.id !== chrome.runtime.id || !msg || typeof msg !== "object") return false;
  const popup = typeof sender.url === "string" && sender.url.split("?")[0] === POPUP;
  (popup ? fromPopup(msg) : fromPage(msg, sender))
    .then(reply, (e) => reply({ error: { code: "error", message: String(e) } }));
  return true;
});

chrome.tabs.onRemoved.addListener((tabId) => chrome.storage.session.remove(pendingKey(tabId)));

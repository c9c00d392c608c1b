// Coffer's web app: plain JavaScript, no build step, no third-party code.
// Every action is one call of the daemon's own methods (POST /api/rpc):
// the daemon decides what a role may do; this page only hides what it
// would refuse. Secrets travel in request bodies, never in URLs.
"use strict";

const csrf = sessionStorage.getItem("coffer-csrf");
const S = {
  status: null,
  folders: [],
  items: [],
  trash: false,
  folder: null, // a folder's id, or null for every item
  selected: null,
  query: "",
  view: "vault",
  team: null,
  revealed: {},
  timers: [],
};
const PAGE = 200;

// ---- plumbing -------------------------------------------------------------

class CallError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function ended(why) {
  sessionStorage.setItem("coffer-ended", why);
  sessionStorage.removeItem("coffer-csrf");
  window.location.replace("/");
}

async function call(method, params) {
  let r;
  try {
    r = await fetch("/api/rpc", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Coffer-Csrf": csrf || "" },
      body: JSON.stringify({ method: method, params: params || {} }),
    });
  } catch (e) {
    throw new CallError(0, "cofferd does not answer");
  }
  if (r.status === 401) {
    ended("signed out or the vault locked");
    throw new CallError(401, "no session");
  }
  let body;
  try {
    body = await r.json();
  } catch (e) {
    throw new CallError(r.status, r.status === 413 ? "the request is too large for the web app" : "cofferd answered " + r.status);
  }
  if (body.error) throw new CallError(body.error.code, body.error.message);
  return body.result;
}

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);

function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 3000);
}

function clearTimers() {
  for (const t of S.timers) clearInterval(t);
  S.timers = [];
}

function fail(e) {
  toast(e.message || String(e));
}

// What the page did with a value it was served, told to the daemon as the
// CLI does (`audit.note`): it cannot see a clipboard or a screen. Best
// effort, and never the value: the action, the item's id, the field's name.
function note(action, item, field) {
  call("audit.note", { action: action, item: item, field: field || null }).catch(() => {});
}

async function copy(text, what) {
  try {
    await navigator.clipboard.writeText(text);
    toast((what || "Value") + " copied");
  } catch (e) {
    toast("The browser refused the clipboard");
  }
}

const ROLE = { manager: "Folder Manager", editor: "Item Manager", member: "Folder Member", none: "—" };
const TYPES = { login: "Login", note: "Secure note", card: "Payment card", totp: "2FA token" };
const FIELDS = {
  login: ["username", "password", "totp", "notes"],
  note: ["notes"],
  card: ["holder", "number", "expiry", "cvv", "notes"],
  totp: ["totp", "notes"],
};
const LABEL = {
  username: "Username", password: "Password", totp: "2FA secret", notes: "Notes",
  holder: "Card holder", number: "Card number", expiry: "Expiry (MM/YY)", cvv: "CVV",
};

function canEdit(folderName) {
  const f = S.folders.find((x) => x.name === folderName || x.id === folderName);
  return !f || f.role === "manager" || f.role === "editor";
}

// ---- dialogs --------------------------------------------------------------

function dialog(title, body, onOk, okText) {
  const d = $("dialog");
  $("dialog-title").textContent = title;
  const b = $("dialog-body");
  b.replaceChildren(...[body].flat());
  $("dialog-error").textContent = "";
  $("dialog-ok").textContent = okText || "Save";
  $("dialog-ok").hidden = !onOk;
  const form = $("dialog-form");
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    if (!onOk) return d.close();
    $("dialog-ok").disabled = true;
    try {
      await onOk();
      d.close();
    } catch (e) {
      $("dialog-error").textContent = e.message || String(e);
    } finally {
      $("dialog-ok").disabled = false;
    }
  };
  $("dialog-cancel").onclick = () => d.close();
  d.showModal();
  const first = b.querySelector("input, select, textarea");
  if (first) first.focus();
}

function field(id, label, input) {
  input.id = id;
  return h("div", {}, h("label", { for: id }, label), input);
}

// ---- the password generator ----------------------------------------------

function generate(length, symbols) {
  const sets = "abcdefghijkmnopqrstuvwxyz" + "ABCDEFGHJKLMNPQRSTUVWXYZ" + "23456789" + (symbols ? "!#$%&*+-=?@^_" : "");
  const out = [];
  const buf = new Uint32Array(1);
  while (out.length < length) {
    crypto.getRandomValues(buf);
    const limit = Math.floor(0x100000000 / sets.length) * sets.length;
    if (buf[0] < limit) out.push(sets[buf[0] % sets.length]);
  }
  return out.join("");
}

function generatorDialog(into) {
  const len = h("input", { type: "number", min: 8, max: 128, value: 20 });
  const sym = h("input", { type: "checkbox", checked: true });
  const out = h("input", { type: "text", readonly: true, class: "mono" });
  const again = () => { out.value = generate(Math.max(8, Math.min(128, Number(len.value) || 20)), sym.checked); };
  len.addEventListener("input", again);
  sym.addEventListener("change", again);
  again();
  dialog("Password generator", [
    field("gen-length", "Length", len),
    h("label", { for: "gen-symbols" }, "Symbols"), Object.assign(sym, { id: "gen-symbols" }),
    field("gen-output", "Password", out),
    h("div", { class: "toolbar" },
      h("button", { type: "button", class: "ghost", onclick: again }, "Another"),
      h("button", { type: "button", class: "ghost", onclick: () => copy(out.value, "Password") }, "Copy")),
  ], into ? async () => { into.value = out.value; } : null, into ? "Use it" : "Close");
  if (!into) {
    $("dialog-ok").hidden = true;
  }
}

// ---- import and export ----------------------------------------------------
//
// The page reads the chosen file and sends its bytes in the request body
// (`import.data`): no path on this machine is named. An export comes back
// in the reply (the PIN asked again) and is saved as a download from a
// blob; the daemon records it in the audit trail.

const IMPORT_FORMATS = ["auto", "bitwarden-json", "bitwarden-csv", "1password-1pux", "1password-csv", "keepass-xml",
  "keepassxc-csv", "kdbx", "lastpass-csv", "chrome-csv", "firefox-csv", "otpauth", "otpauth-migration", "coffer-json"];

const IMPORT_MAX = 1500 * 1024;

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

function download(text, name, type) {
  const url = URL.createObjectURL(new Blob([text], { type: type }));
  const a = h("a", { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function importDialog() {
  const file = h("input", { type: "file", required: true });
  const format = h("select", {}, IMPORT_FORMATS.map((f) => h("option", { value: f }, f === "auto" ? "detect it" : f)));
  const writable = S.folders.filter((f) => f.role === "manager" || f.role === "editor");
  const folder = h("select", {}, h("option", { value: "" }, "the export's own folders"),
    writable.map((f) => h("option", { value: f.id }, f.name)));
  const password = h("input", { type: "password", autocomplete: "off" });
  const report = h("div", { id: "import-report", role: "status" });
  dialog("Import", [
    field("import-file", "Export file", file),
    field("import-format", "Format", format),
    field("import-folder", "Into", folder),
    field("import-password", "KeePass database password (kdbx only)", password),
    report,
  ], async () => {
    const f = file.files && file.files[0];
    if (!f) throw new Error("Choose the export file");
    // The body's limit is 2 MB, and base64 takes a third more.
    if (f.size > IMPORT_MAX) throw new Error("This file is larger than the web app takes (1.5 MB): use `coffer import FILE`");
    const params = {
      format: format.value, data_base64: base64(await f.arrayBuffer()), folder: folder.value || null,
      dry_run: false, password: password.value || null,
    };
    const r = await call("import.data", params);
    const added = Object.values(r.added).reduce((a, b) => a + b, 0);
    toast(`Imported ${added} items (${r.format})` + (r.duplicates ? `, ${r.duplicates} already here` : "") +
      (r.records_skipped ? `, ${r.records_skipped} skipped` : ""));
    await refresh();
  }, "Import");
}

function exportDialog() {
  const format = h("select", {}, h("option", { value: "json" }, "Coffer JSON (importable)"), h("option", { value: "csv" }, "CSV"));
  const folder = h("select", {}, h("option", { value: "" }, "every folder"), S.folders.map((f) => h("option", { value: f.id }, f.name)));
  const trash = h("input", { type: "checkbox" });
  const pin = h("input", { type: "password", autocomplete: "off", required: true });
  dialog("Export", [
    h("p", { class: "hint" }, "The file holds every secret in plain text. The team's admins see that you exported."),
    field("export-format", "Format", format),
    field("export-folder", "Folder", folder),
    h("label", { for: "export-trash" }, "Include the trash"), Object.assign(trash, { id: "export-trash" }),
    field("export-pin", "Your PIN", pin),
  ], async () => {
    const r = await call("export", { pin: pin.value, format: format.value, folder: folder.value || null, include_trash: trash.checked });
    pin.value = "";
    download(r.text, "coffer-export." + r.format, r.format === "csv" ? "text/csv" : "application/json");
    toast(`Exported ${r.items} items`);
  }, "Export");
}

// ---- loading --------------------------------------------------------------

async function loadStatus() {
  S.status = await call("status");
  $("who").textContent = S.status.name ? S.status.name + " · " + (S.status.email || "") : "";
  return S.status;
}

// The first page comes first (the vault paints at once), the whole
// listing after it: search and folders then filter it here, as you type.
async function loadVault() {
  const [folders, page] = await Promise.all([
    call("folder.list"),
    call("item.page", { trash: S.trash, limit: PAGE }),
  ]);
  S.folders = folders;
  S.items = page.items;
  S.total = page.total;
  S.complete = page.items.length >= page.total;
  if (!S.complete) loadRest();
}

let loading = 0;
async function loadRest() {
  const ticket = ++loading;
  let all;
  try {
    all = await call("item.list", { trash: S.trash });
  } catch (e) {
    return;
  }
  if (ticket !== loading) return;
  S.items = all;
  S.complete = true;
  if ($("items")) renderList();
  performance.mark("coffer-list-complete");
}

async function loadTeam() {
  try {
    S.team = await call("team.show");
  } catch (e) {
    S.team = null;
  }
}

// ---- the PIN screen -------------------------------------------------------

function renderLocked() {
  clearTimers();
  const pin = h("input", { type: "password", autocomplete: "current-password", inputmode: "numeric", required: true });
  const error = h("p", { class: "error", role: "alert", id: "unlock-error" });
  const form = h("form", { class: "card narrow", id: "unlock-form" },
    h("h1", {}, "Unlock"),
    h("p", { class: "hint" }, "The vault on this device is locked. Enter your PIN."),
    field("pin", "PIN", pin),
    error,
    h("div", { class: "actions" }, h("button", { type: "submit", id: "unlock" }, "Unlock")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try {
      await call("unlock", { pin: pin.value });
      pin.value = "";
      await start();
    } catch (e) {
      pin.value = "";
      error.textContent = e.message;
      pin.focus();
    }
  });
  $("main").replaceChildren(form);
  pin.focus();
}

// ---- the vault ------------------------------------------------------------

function visibleItems() {
  const q = S.query.trim().toLowerCase();
  const folder = S.folder && S.folders.find((f) => f.id === S.folder);
  const out = [];
  let total = 0;
  for (const it of S.items) {
    if (folder && it.folder !== folder.name) continue;
    if (q) {
      const hay = it.name.toLowerCase() + " " + (it.username || "").toLowerCase() + " " + it.urls.join(" ").toLowerCase();
      if (!hay.includes(q)) continue;
    }
    total++;
    if (out.length < PAGE) out.push(it);
  }
  return { page: out, total: total };
}

function renderVault() {
  const sidebar = h("nav", { class: "sidebar", "aria-label": "Folders" },
    h("h2", {}, "Folders"),
    h("ul", { id: "folders" },
      h("li", {}, folderButton(null, "All items", "")),
      S.folders.map((f) => h("li", {}, folderButton(f.id, f.name, ROLE[f.role] || f.role)))),
    h("ul", {}, h("li", {}, h("button", {
      type: "button", id: "folder-trash", "aria-current": S.trash ? "true" : "false",
      onclick: () => { S.trash = !S.trash; S.selected = null; refresh(); },
    }, S.trash ? "Leave the trash" : "Trash"))),
    h("div", { class: "tools" },
      h("button", { type: "button", id: "new-item", onclick: () => itemDialog(null) }, "+ New item"),
      h("button", { type: "button", id: "add-2fa", onclick: () => add2faDialog(null) }, "+ 2FA"),
      h("button", { type: "button", class: "ghost", id: "new-folder", onclick: newFolderDialog }, "New folder"),
      h("button", { type: "button", class: "ghost", id: "generator", onclick: () => generatorDialog(null) }, "Password generator"),
      h("button", { type: "button", class: "ghost", id: "import", onclick: importDialog }, "Import"),
      h("button", { type: "button", class: "ghost", id: "export", onclick: exportDialog }, "Export")));
  const search = h("input", {
    type: "search", id: "search", placeholder: "Search", "aria-label": "Search items", value: S.query,
    oninput: (ev) => { S.query = ev.target.value; renderList(); },
  });
  const list = h("section", { class: "listpane", "aria-label": "Items" },
    h("div", { class: "searchbar" }, search),
    h("div", { class: "count", id: "count", role: "status" }),
    h("ul", { class: "items", id: "items" }));
  const detail = h("section", { class: "detail", id: "detail", "aria-label": "Item" });
  $("main").replaceChildren(h("div", { class: "vault" }, sidebar, list, detail));
  renderList();
  renderDetail();
  search.focus();
}

function folderButton(id, name, role) {
  return h("button", {
    type: "button", "data-folder": name, "aria-current": S.folder === id ? "true" : "false",
    onclick: () => { S.folder = id; S.selected = null; renderVault(); },
  }, h("span", {}, name), h("span", { class: "role" }, role));
}

function renderList() {
  const { page, total } = visibleItems();
  const ul = $("items");
  if (!ul) return;
  ul.replaceChildren(...page.map((it) => h("li", {},
    h("button", {
      type: "button", "data-item": it.name, "aria-current": S.selected === it.id ? "true" : "false",
      onclick: () => { S.selected = it.id; S.revealed = {}; renderList(); renderDetail(); },
    },
    h("span", {}, it.name, it.has_totp ? h("span", { class: "badge" }, "2FA") : null,
      it.item_type !== "login" ? h("span", { class: "badge" }, TYPES[it.item_type] || it.item_type) : null),
    h("span", { class: "sub" }, [it.username, it.folder].filter(Boolean).join(" · "))))));
  $("count").textContent = !S.complete
    ? `${S.total} items (loading the rest…)`
    : total > page.length
    ? `${total} items (showing ${page.length}; search to narrow)`
    : `${total} item${total === 1 ? "" : "s"}${S.trash ? " in the trash" : ""}`;
  performance.mark("coffer-list-rendered");
}

async function renderDetail() {
  clearTimers();
  const pane = $("detail");
  if (!pane) return;
  if (!S.folder && !S.selected) {
    pane.replaceChildren(h("p", { class: "empty" }, "Select an item."));
    return;
  }
  if (!S.selected) {
    pane.replaceChildren(await folderPanel(S.folder));
    return;
  }
  let item;
  try {
    item = await call("item.get", { item: S.selected, trash: S.trash });
  } catch (e) {
    pane.replaceChildren(h("p", { class: "error" }, e.message));
    return;
  }
  const editable = canEdit(item.folder_id) && canEdit(item.folder);
  const dl = h("dl", { class: "fields" });
  const order = (FIELDS[item.item_type] || []).concat(Object.keys(item.fields).filter((k) => !(FIELDS[item.item_type] || []).includes(k)));
  for (const k of order) {
    const v = item.fields[k];
    if (v === undefined || v === "") continue;
    const secret = item.secret_fields.includes(k);
    const label = item.labels && item.labels[k] ? item.labels[k] : (LABEL[k] || k);
    if (k === "totp") {
      const code = h("span", { class: "totp", id: "totp-code", "aria-live": "off" }, "······");
      const secs = h("span", { class: "secs", id: "totp-secs" });
      dl.append(h("dt", {}, "2FA code"), h("dd", {}, code, secs,
        h("button", {
          type: "button", class: "small ghost", id: "totp-copy",
          onclick: () => { if (code.dataset.code) { note("totp-copy", item.id, "totp"); copy(code.dataset.code, "Code"); } },
        }, "Copy")));
      liveTotp(item.id, code, secs);
      continue;
    }
    const shown = !secret || S.revealed[k];
    dl.append(h("dt", {}, label), h("dd", {},
      h("span", { class: secret ? "mono" : "", "data-field": k }, shown ? v : "••••••••"),
      secret ? h("button", {
        type: "button", class: "small ghost", "aria-label": (shown ? "Hide " : "Reveal ") + label,
        onclick: () => {
          S.revealed[k] = !S.revealed[k];
          if (S.revealed[k]) note("reveal", item.id, k);
          renderDetail();
        },
      }, shown ? "Hide" : "Reveal") : null,
      h("button", {
        type: "button", class: "small ghost", "aria-label": "Copy " + label, "data-copy": k,
        onclick: () => { note("copy", item.id, k); copy(v, label); },
      }, "Copy")));
  }
  if (item.urls.length) dl.append(h("dt", {}, "Websites"), h("dd", {}, item.urls.join(", ")));
  const tools = h("div", { class: "toolbar", id: "item-tools" });
  if (editable && !S.trash) {
    tools.append(...[
      h("button", { type: "button", id: "edit-item", onclick: () => itemDialog(item) }, "Edit"),
      item.item_type === "login" && !item.fields.totp
        ? h("button", { type: "button", class: "ghost", onclick: () => add2faDialog(item) }, "Add 2FA") : null,
      h("button", { type: "button", class: "danger", id: "trash-item", onclick: () => act(call("item.trash", { item: item.id }), "Moved to the trash", true) }, "Move to trash"),
    ].filter(Boolean));
  }
  if (editable && S.trash) {
    tools.append(h("button", { type: "button", id: "restore-item", onclick: () => act(call("item.restore", { item: item.id }), "Restored", true) }, "Restore"));
  }
  tools.append(h("button", { type: "button", class: "ghost", id: "history-item", onclick: () => historyDialog(item) }, "History"));
  pane.replaceChildren(
    h("h1", { id: "item-name" }, item.name),
    h("p", { class: "muted" }, (TYPES[item.item_type] || item.item_type) + " in " + item.folder + (editable ? "" : " · view only (" + roleOf(item.folder) + ")")),
    tools, dl);
}

function roleOf(folderName) {
  const f = S.folders.find((x) => x.name === folderName);
  return f ? (ROLE[f.role] || f.role) : "";
}

function liveTotp(id, code, secs) {
  let left = 0;
  const tick = async () => {
    if (left > 1) {
      left -= 1;
      secs.textContent = left + " s left";
      return;
    }
    try {
      const c = await call("totp.code", { item: id });
      code.textContent = c.code.replace(/^(\d{3})(\d{3})$/, "$1 $2");
      code.dataset.code = c.code;
      left = c.seconds_remaining;
      secs.textContent = left + " s left";
    } catch (e) {
      secs.textContent = e.message;
    }
  };
  tick();
  S.timers.push(setInterval(tick, 1000));
}

async function act(promise, done, deselect) {
  try {
    await promise;
    toast(done);
    if (deselect) S.selected = null;
    await refresh();
  } catch (e) {
    fail(e);
  }
}

function folderSelect(id, preferred) {
  const writable = S.folders.filter((f) => f.role === "manager" || f.role === "editor");
  return h("select", { id: id },
    writable.map((f) => h("option", { value: f.id, selected: f.id === preferred || f.name === preferred }, f.name)));
}

function itemDialog(item) {
  const type = item ? item.item_type : "login";
  const typeSel = h("select", {}, Object.entries(TYPES).map(([k, v]) => h("option", { value: k, selected: k === type }, v)));
  const name = h("input", { type: "text", required: true, value: item ? item.name : "" });
  const folder = folderSelect("item-folder", item ? item.folder_id : S.folder);
  const box = h("div", {});
  const inputs = {};
  const url = h("input", { type: "text", value: item ? item.urls.join(", ") : "" });
  const drawFields = () => {
    const t = typeSel.value;
    box.replaceChildren();
    for (const k of FIELDS[t]) {
      const secret = ["password", "totp", "number", "cvv"].includes(k);
      const input = k === "notes"
        ? h("textarea", { rows: 3 })
        : h("input", { type: secret ? "password" : "text", autocomplete: "off" });
      input.value = item && item.fields[k] ? item.fields[k] : (inputs[k] ? inputs[k].value : "");
      inputs[k] = input;
      if (k === "password") {
        input.id = "field-password";
        box.append(h("label", { for: "field-password" }, LABEL[k]), h("div", { class: "inline" }, input,
          h("button", { type: "button", class: "ghost", id: "gen-into", onclick: () => { input.type = "text"; input.value = generate(20, true); } }, "Generate")));
      } else {
        box.append(field("field-" + k, LABEL[k], input));
      }
    }
    if (t === "login") box.append(field("field-urls", "Websites (comma-separated)", url));
  };
  typeSel.addEventListener("change", drawFields);
  drawFields();
  const body = [field("item-name-input", "Name", name)];
  if (!item) body.unshift(field("item-type", "Type", typeSel), field("item-folder-label", "Folder", folder));
  body.push(box);
  dialog(item ? "Edit " + item.name : "New item", body, async () => {
    const fields = {};
    for (const [k, input] of Object.entries(inputs)) {
      if (!FIELDS[typeSel.value].includes(k)) continue;
      if (item ? input.value !== (item.fields[k] || "") : input.value !== "") fields[k] = input.value;
    }
    const urls = url.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (item) {
      await call("item.edit", { item: item.id, name: name.value !== item.name ? name.value : null, fields: fields, urls: typeSel.value === "login" ? urls : null });
      toast("Saved");
    } else {
      const added = await call("item.add", { folder: folder.value, item_type: typeSel.value, name: name.value, fields: fields, urls: urls });
      S.selected = added.id;
      toast("Added");
    }
    await refresh();
  });
}

function add2faDialog(linkTo) {
  const secret = h("input", { type: "password", required: true, autocomplete: "off", placeholder: "base32 secret or otpauth://…" });
  const logins = S.items.filter((i) => i.item_type === "login" && !i.has_totp && canEdit(i.folder));
  const link = h("select", {},
    h("option", { value: "" }, "No: a standalone 2FA token"),
    logins.map((i) => h("option", { value: i.id, selected: linkTo && linkTo.id === i.id }, i.name + " (" + i.folder + ")")));
  const name = h("input", { type: "text" });
  const folder = folderSelect("totp-folder", S.folder);
  const standalone = h("div", {}, field("totp-name", "Name", name), field("totp-folder-label", "Folder", folder));
  const sync = () => { standalone.hidden = link.value !== ""; };
  link.addEventListener("change", sync);
  sync();
  dialog("Add 2FA", [
    field("totp-secret", "Secret key or otpauth:// URI", secret),
    field("totp-link", "Link to an existing password", link),
    standalone,
  ], async () => {
    if (link.value) {
      await call("totp.set", { item: link.value, secret: secret.value });
      S.selected = link.value;
    } else {
      let n = name.value.trim();
      if (!n && secret.value.startsWith("otpauth://")) {
        try { n = decodeURIComponent(new URL(secret.value).pathname.replace(/^\/+totp\//, "").replace(/^\/+/, "")); } catch (e) { n = ""; }
      }
      const added = await call("item.add", { folder: folder.value, item_type: "totp", name: n || "2FA token", fields: { totp: secret.value }, urls: [] });
      S.selected = added.id;
    }
    toast("2FA added");
    await refresh();
  }, "Add 2FA");
}

async function historyDialog(item) {
  let entries;
  try {
    entries = await call("item.history", { item: item.id, trash: S.trash });
  } catch (e) {
    return fail(e);
  }
  const rows = entries.map((e) => h("tr", {},
    h("td", {}, new Date(e.time_ms).toLocaleString()),
    h("td", {}, e.user_name || e.user || "—", e.device_name ? " (" + e.device_name + ")" : ""),
    h("td", {}, (e.changed || []).join(", ") || "created")));
  dialog("History of " + item.name, h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "Who"), h("th", {}, "Changed"))),
    h("tbody", {}, rows)), null);
}

function newFolderDialog() {
  const name = h("input", { type: "text", required: true });
  dialog("New folder", field("folder-name", "Name", name), async () => {
    await call("folder.create", { name: name.value });
    toast("Folder created");
    await refresh();
  }, "Create");
}

async function folderPanel(id) {
  const f = S.folders.find((x) => x.id === id);
  if (!f) return h("p", { class: "empty" }, "Select an item.");
  const panel = h("div", { id: "folder-panel" }, h("h1", {}, f.name), h("p", { class: "muted" }, "Your role: " + (ROLE[f.role] || f.role)));
  let members;
  try {
    members = await call("folder.members", { folder: f.id });
  } catch (e) {
    panel.append(h("p", { class: "error" }, e.message));
    return panel;
  }
  const manager = f.role === "manager";
  const table = h("table", { id: "members" },
    h("caption", { class: "sr-only" }, "Members"),
    h("thead", {}, h("tr", {}, h("th", {}, "Member"), h("th", {}, "Role"), manager ? h("th", {}, h("span", { class: "sr-only" }, "Actions")) : null)),
    h("tbody", {}, members.members.map((m) => {
      const who = m.kind === "group" ? { group: m.name } : { user: m.name };
      const role = h("select", { "aria-label": "Role of " + m.name, disabled: !manager },
        Object.entries(ROLE).filter(([k]) => k !== "none").map(([k, v]) => h("option", { value: k, selected: k === m.role }, v)));
      role.addEventListener("change", () => act(call("folder.role", Object.assign({ folder: f.id, role: role.value }, who)), "Role changed"));
      return h("tr", {}, h("td", {}, m.kind === "group" ? "Group " : "", m.name), h("td", {}, role),
        manager ? h("td", {}, h("button", { type: "button", class: "small danger", onclick: () => act(call("folder.unshare", Object.assign({ folder: f.id }, who)), "Removed") }, "Remove")) : null);
    })));
  panel.append(h("h2", {}, "Members"), table);
  // Personal until shared: sharing it (below) converts it in place.
  const me = S.status && S.status.email;
  const personal = !members.members.some((m) => m.kind === "group" || (m.kind === "user" && m.name !== me));
  if (personal) {
    panel.append(h("p", { class: "hint", id: "folder-personal" }, manager
      ? "Personal: only you and your own devices reach it. Share it with a user or a group to make it a shared folder; its items and their history stay as they are."
      : "Personal: only its owner's devices reach it."));
  }
  if (manager) {
    const kind = h("select", { id: "share-kind" }, h("option", { value: "group" }, "Group"), h("option", { value: "user" }, "User (email)"));
    const who = h("input", { type: "text", id: "share-who", required: true });
    const role = h("select", { id: "share-role" }, Object.entries(ROLE).filter(([k]) => k !== "none").map(([k, v]) => h("option", { value: k, selected: k === "member" }, v)));
    const form = h("form", { class: "row", id: "share-form" },
      h("div", {}, h("label", { for: "share-kind" }, "Share with"), kind),
      h("div", {}, h("label", { for: "share-who" }, "Name"), who),
      h("div", {}, h("label", { for: "share-role" }, "Role"), role),
      h("button", { type: "submit", id: "share-add" }, "Add"));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const p = { folder: f.id, role: role.value };
      p[kind.value] = who.value.trim();
      act(call("folder.share", p), "Shared");
    });
    panel.append(form);
  }
  return panel;
}

async function refresh() {
  try {
    await loadVault();
  } catch (e) {
    if (e.code === 1001) return renderLocked();
    return fail(e);
  }
  if (S.view === "vault") renderVault();
}

// ---- the admin console ----------------------------------------------------

async function renderAdmin() {
  clearTimers();
  await loadTeam();
  const main = $("main");
  if (!S.team) {
    main.replaceChildren(h("div", { class: "card narrow" }, h("h1", {}, "No team"),
      h("p", {}, "This device is in no team yet: run `coffer team create NAME` to found one.")));
    return;
  }
  const calls = await Promise.allSettled([
    call("user.list"), call("group.list"), call("device.list"), call("invite.pending", { kind: "user" }),
    call("invite.list"), call("peers"), call("folder.list"),
  ]);
  const [users, groups, devices, pending, invites, peers, folders] = calls.map((c) => (c.status === "fulfilled" ? c.value : null));
  const admin = S.team.admin;
  const sections = [];
  sections.push(h("section", { class: "card", id: "team" }, h("h2", {}, "Team " + S.team.name),
    h("p", {}, `${S.team.users} users · ${S.team.devices} devices · you are ${admin ? "a team admin" : "a member"}`)));
  if (admin) sections.push(inviteSection(), pendingSection(pending || []));
  sections.push(h("section", { class: "card", id: "users" }, h("h2", {}, "Users and devices"),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "User"), h("th", {}, "Groups"), h("th", {}, "Devices"))),
      h("tbody", {}, (users || []).map((u) => h("tr", {},
        h("td", {}, u.name || u.email, h("div", { class: "muted" }, u.email), u.admin ? h("span", { class: "badge" }, u.founder ? "founder" : "admin") : null),
        h("td", {}, u.groups.join(", ")),
        h("td", {}, u.device_list.map((d) => h("div", {}, (d.name || d.device_id.slice(0, 8)) + (d.this_device ? " (this one)" : ""),
          d.last_seen_ms ? h("span", { class: "muted" }, " · seen " + new Date(d.last_seen_ms).toLocaleTimeString()) : null,
          admin && !d.this_device ? h("button", { type: "button", class: "small danger", onclick: () => confirmRevoke(d) }, "Revoke") : null)))))))));
  sections.push(groupsSection(groups || [], admin));
  const access = await Promise.all((folders || []).map((f) => call("folder.members", { folder: f.id }).catch(() => null)));
  sections.push(h("section", { class: "card", id: "access" }, h("h2", {}, "Folder access"),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Folder"), h("th", {}, "Who can reach it"))),
      h("tbody", {}, (folders || []).map((f, i) => h("tr", {},
        h("td", {}, h("button", {
          type: "button", class: "ghost small", onclick: () => { S.view = "vault"; S.folder = f.id; S.selected = null; nav(); },
        }, f.name)),
        h("td", {}, access[i]
          ? access[i].members.map((m) => h("div", {}, (m.kind === "group" ? "group " : "") + m.name + " — " + (ROLE[m.role] || m.role)))
          : "your role: " + (ROLE[f.role] || f.role))))))));
  sections.push(h("section", { class: "card", id: "sync" }, h("h2", {}, "Sync health"),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Device"), h("th", {}, "State"), h("th", {}, "Last seen"))),
      h("tbody", {}, ((peers && peers.peers) || []).map((p) => h("tr", {},
        h("td", {}, p.name || p.user || p.device_id.slice(0, 8)),
        h("td", {}, p.connected ? "connected" : "not connected"),
        h("td", {}, p.last_contact_ms ? new Date(p.last_contact_ms).toLocaleString() : "—")))))));
  if (devices) sections.push(h("p", { class: "muted" }, devices.filter((d) => d.revoked).length + " revoked devices"));
  main.replaceChildren(h("h1", { class: "sr-only" }, "Admin console"), h("div", { class: "admin" }, sections));
  if (admin) {
    // A join arrives while the console is open: show it without a reload
    // (only that card, so a half-typed invite stays).
    let seen = JSON.stringify((pending || []).map((p) => p.verification_code));
    S.timers.push(setInterval(async () => {
      let now;
      try {
        now = await call("invite.pending", { kind: "user" });
      } catch (e) {
        return;
      }
      const key = JSON.stringify(now.map((p) => p.verification_code));
      if (key !== seen && $("pending-joins")) {
        seen = key;
        $("pending-joins").replaceWith(pendingSection(now));
      }
    }, 2000));
  }
}

function inviteSection() {
  const email = h("input", { type: "email", id: "invite-email", required: true });
  const name = h("input", { type: "text", id: "invite-name" });
  const groups = h("input", { type: "text", id: "invite-groups", placeholder: "e.g. ops, support" });
  const out = h("div", { id: "invite-result" });
  const form = h("form", { id: "invite-form" },
    h("div", { class: "row" },
      h("div", {}, h("label", { for: "invite-email" }, "Email"), email),
      h("div", {}, h("label", { for: "invite-name" }, "Name"), name)),
    h("label", { for: "invite-groups" }, "Groups (comma-separated)"), groups,
    h("div", { class: "actions" }, h("button", { type: "submit", id: "invite-send" }, "Invite")), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await call("invite.create", {
        email: email.value.trim(), name: name.value.trim() || null,
        groups: groups.value.split(",").map((s) => s.trim()).filter(Boolean), admin: false, expires: null, recover: false,
      });
      out.replaceChildren(h("p", {}, "Give this one-time code to " + r.email + " (they run `coffer join CODE`):"),
        h("p", { class: "code", id: "invite-code" }, r.code),
        h("button", { type: "button", class: "small ghost", onclick: () => copy(r.code, "Code") }, "Copy code"));
      email.value = "";
    } catch (e) {
      out.replaceChildren(h("p", { class: "error" }, e.message));
    }
  });
  return h("section", { class: "card" }, h("h2", {}, "Invite a person"), form);
}

function pendingSection(pending) {
  const body = pending.length
    ? h("table", { id: "pending" }, h("thead", {}, h("tr", {}, h("th", {}, "Who"), h("th", {}, "Verification code"), h("th", {}, h("span", { class: "sr-only" }, "Decide")))),
      h("tbody", {}, pending.map((p) => h("tr", {},
        h("td", {}, p.name || p.email, h("div", { class: "muted" }, p.email + " · " + p.device_name + (p.groups.length ? " · " + p.groups.join(", ") : ""))),
        h("td", { class: "vcode" }, p.verification_code),
        h("td", {},
          h("button", { type: "button", class: "small", "data-confirm": p.verification_code, onclick: () => decide("invite.confirm", p, "Admitted " + p.email) }, "Confirm"),
          " ",
          h("button", { type: "button", class: "small danger", onclick: () => decide("invite.reject", p, "Rejected") }, "Reject"))))))
    : h("p", { class: "muted" }, "No join is waiting.");
  return h("section", { class: "card", id: "pending-joins" }, h("h2", {}, "Pending joins"),
    h("p", { class: "hint" }, "Confirm only when the code matches the one on the joiner's screen."),
    body, h("button", { type: "button", class: "ghost small", id: "pending-refresh", onclick: renderAdmin }, "Refresh"));
}

async function decide(method, p, done) {
  try {
    await call(method, { kind: p.kind || "user", verification_code: p.verification_code });
    toast(done);
  } catch (e) {
    fail(e);
  }
  renderAdmin();
}

function confirmRevoke(d) {
  dialog("Revoke " + (d.name || d.device_id.slice(0, 8)) + "?",
    h("p", {}, "The device stops syncing and the keys of its folders rotate."),
    async () => {
      await call("device.revoke", { device: d.device_id });
      toast("Revoked");
      renderAdmin();
    }, "Revoke");
}

function groupsSection(groups, admin) {
  const section = h("section", { class: "card", id: "groups" }, h("h2", {}, "Groups"),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Group"), h("th", {}, "Members"))),
      h("tbody", {}, groups.map((g) => h("tr", {}, h("td", {}, g.name), h("td", {}, g.members.join(", ")))))));
  if (admin) {
    const group = h("input", { type: "text", id: "group-name", required: true });
    const user = h("input", { type: "text", id: "group-user", placeholder: "email (optional)" });
    const form = h("form", { class: "row" },
      h("div", {}, h("label", { for: "group-name" }, "Group"), group),
      h("div", {}, h("label", { for: "group-user" }, "Add user"), user),
      h("button", { type: "submit" }, "Save"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        if (!groups.some((g) => g.name === group.value.trim())) await call("group.create", { group: group.value.trim() });
        if (user.value.trim()) await call("group.add", { group: group.value.trim(), user: user.value.trim() });
        toast("Group saved");
      } catch (e) {
        fail(e);
      }
      renderAdmin();
    });
    section.append(form);
  }
  return section;
}

// ---- the activity view (the audit trail) ----------------------------------
//
// `audit.query` with the filters as they stand; the daemon decides whose
// records this session reads (an admin: the team's; anyone else: their
// own). The CSV is built here from the result and saved as a download.

const ACTIONS = ["reveal", "copy", "totp-show", "totp-copy", "autofill", "export", "backup", "history-view",
  "unlock", "unlock-failed", "lock", "invite-created", "invite-wrong-code", "join-confirmed", "join-rejected",
  "device-linked", "secret-read"];
// As `coffer audit --csv` (user_name last: it came last).
const CSV_COLUMNS = ["time", "user", "device", "device_name", "seq", "action", "folder", "folder_name", "item",
  "item_name", "field", "detail", "user_name"];
const A = { entries: [], filter: {}, asked: 0 };

// A date input's value as unix ms (the start of that day, local time), or
// null when empty or not a date.
function dayMs(value, endOfDay) {
  if (!value) return null;
  const t = new Date(value + "T00:00:00").getTime();
  if (Number.isNaN(t)) return null;
  return endOfDay ? t + 86400000 - 1 : t;
}

function activityFilter() {
  const text = (id) => ($(id) && $(id).value.trim()) || null;
  const action = text("audit-action");
  return {
    user: text("audit-user"), folder: text("audit-folder"), item: text("audit-item"),
    actions: action ? [action] : [],
    since_ms: dayMs(text("audit-since"), false), until_ms: dayMs(text("audit-until"), true),
    limit: 5000,
  };
}

async function renderActivity() {
  clearTimers();
  if (!S.team) await loadTeam().catch(() => {});
  const admin = !!(S.team && S.team.admin);
  // What was typed into a filter the page shows now (before this render,
  // or while it waited for the team) is kept, not reset to the last query's.
  const typed = (id, last) => ($(id) ? $(id).value : last) || "";
  const action = typed("audit-action", (A.filter.actions || [])[0]);
  const input = (id, label, attrs) => h("div", {}, h("label", { for: id }, label), h("input", Object.assign({ id: id, type: "text" }, attrs || {})));
  const form = h("form", { id: "audit-form", class: "row" },
    input("audit-user", "User", { placeholder: "email", value: typed("audit-user", A.filter.user) }),
    input("audit-folder", "Folder", { value: typed("audit-folder", A.filter.folder) }),
    input("audit-item", "Item", { value: typed("audit-item", A.filter.item) }),
    h("div", {}, h("label", { for: "audit-action" }, "Action"),
      h("select", { id: "audit-action" }, h("option", { value: "" }, "any"),
        ACTIONS.map((a) => h("option", { value: a, selected: action === a }, a)))),
    input("audit-since", "Since", { type: "date", value: typed("audit-since", A.since) }),
    input("audit-until", "Until", { type: "date", value: typed("audit-until", A.until) }),
    h("button", { type: "submit", id: "audit-apply" }, "Show"));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); loadActivity(); });
  const section = h("section", { class: "card", id: "activity" },
    h("h2", {}, "Activity"),
    h("p", { class: "hint" }, admin
      ? "Every device's signed record of what was revealed, copied and changed: the team's, as this device holds them."
      : "Your own records: the team's admins see everyone's."),
    form,
    h("div", { class: "toolbar" },
      h("button", { type: "button", class: "ghost", id: "audit-refresh", onclick: () => loadActivity() }, "Refresh"),
      h("button", { type: "button", class: "ghost", id: "audit-csv", onclick: exportCsv }, "Export CSV"),
      admin ? h("button", { type: "button", class: "ghost", id: "audit-verify", onclick: verifyChains }, "Verify chains") : null,
      h("span", { id: "audit-count", class: "muted", role: "status" })),
    h("div", { id: "audit-verified" }),
    h("div", { class: "scroll", role: "region", "aria-label": "Audit records", tabindex: "0" }, h("table", { id: "audit-table" },
      h("caption", { class: "sr-only" }, "Audit records, newest first"),
      h("thead", {}, h("tr", {}, ["Time", "User", "Device", "Action", "Folder", "Item", "Field"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", { id: "audit-rows" }))));
  $("main").replaceChildren(h("h1", { class: "sr-only" }, "Activity"), h("div", { class: "activity" }, section));
  await loadActivity();
}

async function loadActivity() {
  if (!$("audit-rows")) return;
  A.filter = activityFilter();
  A.since = $("audit-since").value;
  A.until = $("audit-until").value;
  // Only the latest query's answer is shown (a refresh may overtake one);
  // until it is, the table says it is busy: the rows are the last query's.
  const asked = ++A.asked;
  $("audit-table").setAttribute("aria-busy", "true");
  const answered = () => {
    if (asked === A.asked && $("audit-table")) $("audit-table").setAttribute("aria-busy", "false");
  };
  let entries;
  try {
    entries = await call("audit.query", A.filter);
  } catch (e) {
    if (asked === A.asked && $("audit-count")) $("audit-count").textContent = e.message;
    answered();
    return;
  }
  if (asked !== A.asked) return;
  try {
    showActivity(entries);
  } finally {
    answered();
  }
}

function showActivity(entries) {
  A.entries = entries;
  const rows = entries.slice().reverse().map((e) => h("tr", {
    "data-user": e.user, "data-action": e.action, "data-item": e.item_name || "",
  },
  h("td", {}, new Date(e.time_ms).toLocaleString()),
  h("td", {}, e.user_name ? e.user_name + " <" + e.user + ">" : e.user),
  h("td", {}, e.device_name || e.device.slice(0, 8)),
  h("td", {}, h("span", { class: "badge" }, e.action)),
  h("td", {}, e.folder_name || ""),
  h("td", {}, e.item_name || ""),
  h("td", {}, e.field || "")));
  if ($("audit-rows")) {
    $("audit-rows").replaceChildren(...rows);
    $("audit-count").textContent = entries.length + (entries.length === 1 ? " record" : " records");
  }
}

function csvField(s) {
  let v = s === null || s === undefined ? "" : String(s);
  // A leading =, +, - or @ would be a formula in a spreadsheet.
  if (/^[=+\-@]/.test(v)) v = "'" + v;
  return /[",\r\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v;
}

// The records shown, as `coffer audit --csv` writes them, saved by the
// browser from a blob: nothing of it is in a URL the daemon sees.
function exportCsv() {
  const lines = [CSV_COLUMNS.join(",")].concat(A.entries.map((e) => CSV_COLUMNS.map((c) =>
    csvField(c === "time" ? new Date(e.time_ms).toISOString().replace(/\.\d{3}Z$/, "Z") : e[c])).join(",")));
  download(lines.join("\n") + "\n", "coffer-audit.csv", "text/csv");
  toast(A.entries.length + " records exported");
}

async function verifyChains() {
  const out = $("audit-verified");
  try {
    const r = await call("audit.verify");
    const bad = r.chains.filter((c) => c.findings.length);
    out.replaceChildren(h("p", { class: r.clean ? "ok" : "error", id: "audit-verify-result" },
      r.clean
        ? `${r.chains.length} chains verified: no gap, fork or bad signature.`
        : bad.map((c) => `${c.user || c.device_name || c.device.slice(0, 8)}: ` +
          c.findings.map((f) => f.kind + " at " + f.seq + (f.to ? "–" + f.to : "")).join(", ")).join("; ")));
  } catch (e) {
    out.replaceChildren(h("p", { class: "error" }, e.message));
  }
}

// ---- live updates ---------------------------------------------------------

async function listen() {
  let r;
  try {
    r = await fetch("/api/events", { credentials: "same-origin", headers: { "X-Coffer-Csrf": csrf || "" } });
  } catch (e) {
    return setTimeout(listen, 2000);
  }
  if (r.status === 401) return ended("signed out or the vault locked");
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const chunk = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const data = chunk.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (data) onEvent(data);
    }
  }
  // The stream ends when the session does (a lock): see whether it lives.
  setTimeout(async () => {
    try {
      await call("status");
      listen();
    } catch (e) { /* ended() took over */ }
  }, 300);
}

let pending = null;
function onEvent(data) {
  let ev;
  try {
    ev = JSON.parse(data);
  } catch (e) {
    return;
  }
  if (!ev.type) ev.type = "sync_progress"; // "lagged": reload to be sure
  if (ev.type === "lock_state" && ev.locked) {
    return ended("the vault locked");
  }
  if (ev.type === "sync_progress" && S.view === "activity") {
    // Audit records arrive with a peer's sync: no event of their own.
    clearTimeout(pending);
    pending = setTimeout(() => loadActivity(), 300);
    return;
  }
  if (["item_changed", "folder_changed", "sync_progress"].includes(ev.type)) {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      if (S.view !== "vault") return;
      await loadVault().catch(() => {});
      renderListKeepFocus();
    }, 150);
  }
}

function renderListKeepFocus() {
  const active = document.activeElement && document.activeElement.id;
  const sidebarStale = $("folders") && $("folders").children.length !== S.folders.length + 1;
  if (sidebarStale || !$("items")) renderVault();
  else { renderList(); if (S.selected) renderDetail(); }
  if (active && $(active)) $(active).focus();
}

// ---- start ----------------------------------------------------------------

function nav() {
  $("nav-vault").setAttribute("aria-pressed", String(S.view === "vault"));
  $("nav-admin").setAttribute("aria-pressed", String(S.view === "admin"));
  $("nav-activity").setAttribute("aria-pressed", String(S.view === "activity"));
  if (S.view === "admin") renderAdmin().catch(fail);
  else if (S.view === "activity") renderActivity().catch(fail);
  else refresh();
}

async function start() {
  // All at once: a locked vault refuses the listing, and status says why.
  const listing = loadVault().then(() => null, (e) => e);
  const status = await loadStatus();
  if (status.locked) return renderLocked();
  const failed = await listing;
  if (failed) throw failed;
  S.view = "vault";
  renderVault();
  requestAnimationFrame(() => performance.mark("coffer-vault-painted"));
}

if (!csrf) {
  ended("this tab has no session");
} else {
  $("nav-vault").addEventListener("click", () => { S.view = "vault"; nav(); });
  $("nav-admin").addEventListener("click", () => { S.view = "admin"; nav(); });
  $("nav-activity").addEventListener("click", () => { S.view = "activity"; nav(); });
  $("lock").addEventListener("click", () => call("lock").then(() => ended("you locked the vault")).catch(fail));
  listen();
  start().catch(fail);
}

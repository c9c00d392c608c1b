// Coffer's content script (top frame only, no UI): when a form with a
// filled password field is submitted, the background keeps the login in
// session memory so the popup can ask "save this login?". It never fills
// anything and holds nothing itself.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement)) return;
  const password = [...form.querySelectorAll("input[type=password]")].find((i) => i.value);
  if (!password) return;
  const texts = [...form.querySelectorAll("input")].filter((i) =>
    ["text", "email", "tel", ""].includes((i.getAttribute("type") || "").toLowerCase()) && i.value);
  const user = texts.find((i) => /username|email/.test(i.getAttribute("autocomplete") || "")) ||
    texts.find((i) => i.type === "email") || texts[0];
  chrome.runtime.sendMessage({ type: "submitted", username: user ? user.value : "", password: password.value })
    .catch(() => {});
}, true);

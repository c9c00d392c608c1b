// The login page: spends the one-time token from the URL fragment (which
// the browser never sends to a server) for a session cookie, then loads
// the app. The fragment is wiped from the address bar and history first.
"use strict";
(function () {
  const message = document.getElementById("login-message");
  const params = new URLSearchParams(window.location.hash.slice(1));
  const token = params.get("token");
  history.replaceState(null, "", window.location.pathname);
  const ended = sessionStorage.getItem("coffer-ended");
  sessionStorage.removeItem("coffer-ended");
  if (!token) {
    message.textContent = ended
      ? "Your session ended (" + ended + "). Run `coffer ui` to open Coffer again."
      : "No session: run `coffer ui` in a terminal to open Coffer here.";
    return;
  }
  fetch("/api/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: token }),
    credentials: "same-origin",
  })
    .then(function (r) {
      return r.json().then(function (body) { return { ok: r.ok, body: body }; });
    })
    .then(function (res) {
      if (!res.ok || !res.body.csrf) {
        message.textContent = (res.body.error && res.body.error.message) || "Sign-in refused.";
        return;
      }
      sessionStorage.setItem("coffer-csrf", res.body.csrf);
      window.location.replace("/");
    })
    .catch(function () {
      message.textContent = "cofferd does not answer: is it running?";
    });
})();

// The login page: trade a pasted API key for a session cookie (HttpOnly: this script never sees it).
"use strict";

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  error.textContent = "";
  const response = await fetch("/api/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ api_key: document.getElementById("api-key").value.trim() }),
  }).catch((e) => ({ ok: false, json: async () => ({ detail: `gateway unreachable: ${e.message}` }) }));
  if (response.ok) {
    window.location.replace("/");
    return;
  }
  const body = await response.json().catch(() => ({}));
  error.textContent = body.detail || `login failed (${response.status})`;
});

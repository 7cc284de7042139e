// What every page of the dashboard shares: the DOM and JSON helpers, the session and the logout button.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const LOGIN = "/login";

const $ = (id) => document.getElementById(id);

async function getJSON(url, options = {}) {
  const response = await fetch(url, { cache: "no-store", ...options });
  if (response.status === 401) { // no session, or it expired, or its key was revoked
    window.location.replace(LOGIN);
    throw new Error("not logged in");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(`${url}: ${response.status} ${body.detail || ""}`);
    error.status = response.status;
    error.detail = body.detail;
    throw error;
  }
  return body;
}

function postJSON(url, body, method = "POST") {
  return getJSON(url, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

function el(tag, attrs = {}, text = null) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== null) node.textContent = text; // never innerHTML: ids and notes come from people and plants
  return node;
}

// Shows who is logged in and wires the logout button; resolves to whether the role may change things
// (``roles``), so a page knows before its first drawing whether to offer its buttons.
function startSession(roles) {
  $("logout").addEventListener("click", async () => {
    await fetch("/api/session", { method: "DELETE" }).catch(() => null);
    window.location.replace(LOGIN);
  });
  return getJSON("/api/session")
    .then((who) => { $("who").textContent = `${who.name} (${who.role})`; return roles.includes(who.role); })
    .catch(() => false);
}

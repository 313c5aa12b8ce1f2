// wsgate demo: log in with the session cookie, then open the WebSocket.
"use strict";
const $ = (id) => document.getElementById(id);
let ws = null;
let joined = null;
let ref = 0;

function log(text) {
  const li = document.createElement("li");
  li.textContent = text;
  $("log").append(li);
  li.scrollIntoView({ block: "nearest" });
}

async function refresh() {
  const r = await fetch("/me", { credentials: "same-origin" });
  if (r.ok) {
    const me = await r.json();
    $("who").textContent = `Logged in as ${me.user.username}`;
    $("session").textContent = JSON.stringify(me, null, 2);
    $("login-panel").hidden = true;
    $("session-panel").hidden = false;
    $("live-panel").hidden = false;
    connect();
  } else {
    $("who").textContent = "Not logged in";
    $("login-panel").hidden = false;
    $("session-panel").hidden = true;
    $("live-panel").hidden = true;
    if (ws) ws.close();
  }
}

function connect() {
  if (ws) return;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  ws = new WebSocket(url, "wsgate.v1");
  $("ws-state").textContent = "Connecting…";
  ws.onopen = () => { $("ws-state").textContent = "Connected"; };
  ws.onclose = (e) => {
    $("ws-state").textContent = `Disconnected (${e.code}${e.reason ? ": " + e.reason : ""})`;
    ws = null;
    joined = null;
  };
  ws.onmessage = (e) => {
    let f;
    try { f = JSON.parse(e.data); } catch { return; }
    switch (f.type) {
      case "welcome": log(`welcome, ${f.user.username} (connection ${f.conn})`); break;
      case "message": log(`[${f.room} #${f.seq}] ${f.from ?? "server"}: ${JSON.stringify(f.data)}`); break;
      case "direct": log(`direct from ${f.from}: ${JSON.stringify(f.data)}`); break;
      case "ack": if (f.users) $("presence").textContent = `In ${joined}: ${f.users.join(", ")}`; break;
      case "presence_diff": log(`${f.room}: +${f.joins.join(",")} -${f.leaves.join(",")}`); break;
      case "error": log(`error ${f.code}: ${f.message}`); break;
    }
  };
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("login-error").textContent = "";
  const body = {
    username: $("username").value,
    password: $("password").value,
    remember: $("remember").checked,
  };
  const r = await fetch("/auth", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (r.ok) {
    $("password").value = "";
    await refresh();
  } else {
    let msg = `Login failed (${r.status})`;
    try { msg = (await r.json()).message; } catch {}
    const retry = r.headers.get("Retry-After");
    $("login-error").textContent = retry ? `${msg} (retry in ${retry} s)` : msg;
  }
});

async function logout(all) {
  await fetch(all ? "/logout?all=true" : "/logout", { method: "POST", credentials: "same-origin" });
  await refresh();
}
$("logout").addEventListener("click", () => logout(false));
$("logout-all").addEventListener("click", () => logout(true));

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  joined = $("room").value;
  ws.send(JSON.stringify({ type: "join", room: joined, ref: ++ref }));
});

$("send-form").addEventListener("submit", (e) => {
  e.preventDefault();
  if (!ws || ws.readyState !== WebSocket.OPEN || !joined) return;
  ws.send(JSON.stringify({ type: "publish", room: joined, data: { text: $("message").value }, ref: ++ref }));
  $("message").value = "";
});

refresh();

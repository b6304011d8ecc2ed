// Shared helpers of the dashboard pages: REST calls with the session + CSRF token, messages, the live socket.

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function readConfig(id = "page-config") {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : {};
}

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta && meta.content) return meta.content;
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

// One call to /api/v1: JSON in, JSON out; any failure becomes an ApiError carrying the API's error envelope.
export async function api(method, path, body) {
  const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  // DRF's session authentication enforces CSRF on every unsafe method.
  if (method !== "GET") options.headers["X-CSRFToken"] = csrfToken();
  let response;
  try {
    response = await fetch(`/api/v1${path}`, options);
  } catch (error) {
    throw new ApiError(0, "network_error", "The server could not be reached. Check the connection and retry.");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (error) {
      data = null;
    }
  }
  if (!response.ok) {
    const envelope = (data && data.error) || {};
    let message = envelope.message || `The server answered ${response.status} ${response.statusText}.`;
    if (response.status === 401) message = "Your session has ended: sign in again.";
    throw new ApiError(response.status, envelope.code || `http_${response.status}`, message, envelope.details);
  }
  return data;
}

// A readable one-liner of an error, with field problems (`details`) appended.
export function describeError(error) {
  if (!(error instanceof ApiError)) return String((error && error.message) || error);
  const details = Array.isArray(error.details) ? error.details : [];
  const parts = details
    .slice(0, 5)
    .map((item) => (item && item.path ? `${item.path}: ${item.message}` : item && item.message))
    .filter(Boolean);
  return parts.length ? `${error.message} ${parts.join("; ")}` : error.message;
}

export function flash(message, kind = "error") {
  const box = document.getElementById("messages");
  if (!box) return;
  const item = document.createElement("div");
  item.className = `msg msg-${kind}`;
  item.setAttribute("role", kind === "error" ? "alert" : "status");
  const text = document.createElement("span");
  text.textContent = message;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "msg-close";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  close.addEventListener("click", () => item.remove());
  item.append(text, close);
  box.append(item);
  if (kind !== "error") setTimeout(() => item.remove(), 8000);
}

// A message that survives the next navigation (e.g. "saved" before a reload).
export function flashAfterReload(message, kind = "success") {
  try {
    sessionStorage.setItem("flowrunner.flash", JSON.stringify({ message, kind }));
  } catch (error) {
    /* storage disabled: the message is simply lost */
  }
}

function showPendingFlash() {
  try {
    const raw = sessionStorage.getItem("flowrunner.flash");
    if (!raw) return;
    sessionStorage.removeItem("flowrunner.flash");
    const { message, kind } = JSON.parse(raw);
    flash(message, kind);
  } catch (error) {
    /* ignore a malformed leftover */
  }
}

// JSON with keys sorted at every level, as the server renders it (PostgreSQL's jsonb has its own key order).
export function prettyJson(value) {
  const sorted = (item) => {
    if (Array.isArray(item)) return item.map(sorted);
    if (item && typeof item === "object") {
      return Object.fromEntries(Object.keys(item).sort().map((key) => [key, sorted(item[key])]));
    }
    return item;
  };
  return JSON.stringify(sorted(value), null, 2);
}

export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString(undefined, {
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

export function formatDuration(startIso, endIso) {
  if (!startIso) return "—";
  const start = new Date(startIso).getTime();
  const end = endIso ? new Date(endIso).getTime() : Date.now();
  const ms = Math.max(0, end - start);
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const minutes = Math.floor(ms / 60000);
  const seconds = Math.round((ms % 60000) / 1000);
  return minutes < 60 ? `${minutes}m ${seconds}s` : `${Math.floor(minutes / 60)}h ${minutes % 60}m`;
}

export function setTime(node, iso) {
  if (!node) return;
  node.dateTime = iso || "";
  node.textContent = formatTime(iso);
}

// Server-rendered times are UTC; show them in the reader's zone.
export function localizeTimes(root = document) {
  root.querySelectorAll("time[datetime]").forEach((node) => {
    if (node.dateTime) node.textContent = formatTime(node.dateTime);
  });
}

const TERMINAL = new Set(["completed", "failed", "canceled"]);
export const isTerminal = (status) => TERMINAL.has(status);

function setLiveState(state) {
  const badge = document.getElementById("live-state");
  if (!badge) return;
  badge.hidden = false;
  badge.dataset.state = state;
  badge.textContent = { live: "live", connecting: "connecting…", reconnecting: "reconnecting…" }[state] || state;
}

// The live WebSocket (/api/v1/ws, docs/asyncapi.yaml) with reconnection: exponential backoff with jitter, capped; `onOpen(send,
// reconnected)` re-subscribes (with `since`, so nothing is lost), `onFrame(frame)` gets every server frame.
export function liveSocket({ onOpen, onFrame }) {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/ws`;
  let delay = 500;
  let opened = false;
  let socket = null;
  let pinger = null;
  const send = (frame) => {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
  };
  const connect = () => {
    setLiveState(opened ? "reconnecting" : "connecting");
    socket = new WebSocket(url);
    socket.addEventListener("open", () => {
      delay = 500;
      setLiveState("live");
      const reconnected = opened;
      opened = true;
      onOpen(send, reconnected);
      // Idle proxies drop silent connections; a ping every 25 s keeps this one alive.
      pinger = setInterval(() => send({ type: "ping" }), 25000);
    });
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      onFrame(frame);
    });
    socket.addEventListener("close", () => {
      clearInterval(pinger);
      setLiveState("reconnecting");
      const wait = delay + Math.random() * delay * 0.3;
      delay = Math.min(delay * 2, 15000);
      setTimeout(connect, wait);
    });
  };
  connect();
  return { send };
}

// Two clicks for destructive buttons (no modal dialog): the first arms it for a few seconds.
export function armedClick(button, label, handler) {
  const original = button.textContent;
  let armed = null;
  button.addEventListener("click", async () => {
    if (!armed) {
      button.textContent = label;
      button.classList.add("armed");
      armed = setTimeout(() => {
        armed = null;
        button.textContent = original;
        button.classList.remove("armed");
      }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.textContent = original;
    button.classList.remove("armed");
    await handler();
  });
}

showPendingFlash();
localizeTimes();

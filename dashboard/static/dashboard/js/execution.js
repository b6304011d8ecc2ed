// One execution, live: graph node colours, progress, node runs, log stream, final document; cancel and re-run.
import {
  api,
  armedClick,
  describeError,
  flash,
  formatDuration,
  formatTime,
  isTerminal,
  liveSocket,
  prettyJson,
  readConfig,
  setTime,
} from "./common.js";

const config = readConfig();
const executionId = config.execution_id;
const $ = (id) => document.getElementById(id);
const LOG_LIMIT = 3000;

let status = config.status;
let lastSeq = 0; // the highest event seq handled: a reconnect subscribes with `since` = this
const nodeStatus = { ...config.nodes };

// --- graph -------------------------------------------------------------------------------------------------

function nodeGroup(nodeId) {
  return document.querySelector(`#graph g.node[data-node="${CSS.escape(nodeId)}"]`);
}

function paintNode(nodeId, value, detail) {
  nodeStatus[nodeId] = value;
  const group = nodeGroup(nodeId);
  if (!group) return;
  group.dataset.status = value;
  const title = group.querySelector("title");
  const type = group.querySelector(".node-type");
  if (title) title.textContent = `${nodeId} (${type ? type.textContent : ""}): ${value}${detail ? ` — ${detail}` : ""}`;
}

// A finished execution's nodes that never ran are "skipped"; while it runs they are just "pending".
function paintIdleNodes() {
  const idle = isTerminal(status.status) ? "skipped" : "pending";
  for (const [nodeId, value] of Object.entries(nodeStatus)) {
    if (value === "pending" || value === "skipped") paintNode(nodeId, idle);
  }
}

// --- status ------------------------------------------------------------------------------------------------

// Why a queued execution has not started (ExecutionStatus.waiting_reason).
const WAITING = {
  flow_concurrency: "a slot of the flow (metadata.concurrency)",
  account_concurrency: "a slot of the account (FLOWRUNNER_ACCOUNT_MAX_RUNNING)",
};

function applyStatus(next) {
  status = next;
  const badge = $("status");
  badge.dataset.status = next.status;
  badge.textContent = next.status;
  $("progress").value = next.progress;
  $("progress-text").textContent = `${Math.round(next.progress)}%`;
  $("current-node").textContent = next.current_node || "—";
  $("waiting").textContent = WAITING[next.waiting_reason] || "—";
  setTime($("started"), next.start_time);
  setTime($("ended"), next.end_time);
  $("duration").textContent = formatDuration(next.start_time, next.end_time);
  $("error").hidden = !next.error;
  $("error-text").textContent = next.error || "";
  const terminal = isTerminal(next.status);
  $("cancel").hidden = terminal;
  $("rerun").textContent = ["failed", "canceled"].includes(next.status) ? "Re-run from failure" : "Run again";
  const hasDocument = next.results !== null && next.results !== undefined;
  $("document").hidden = !hasDocument;
  $("document").textContent = hasDocument ? prettyJson(next.results) : "";
  $("document-empty").hidden = hasDocument;
  $("document-empty").textContent = terminal
    ? "No final document: the execution did not complete."
    : "Available when the execution completes.";
  paintIdleNodes();
}

// --- log ---------------------------------------------------------------------------------------------------

function logLine(frame) {
  if (frame.type === "log" && frame.log) {
    return { level: frame.log.level || "info", node: frame.node_id || frame.log.node_id, text: frame.log.message };
  }
  if (frame.type === "node" && frame.node) {
    const node = frame.node;
    const part = node.batch_index === null || node.batch_index === undefined ? "" : ` batch ${node.batch_index}`;
    const action = node.action ? ` → ${node.action}` : "";
    const error = node.error ? ` (${node.error})` : "";
    const level = ["failed", "timed_out"].includes(node.status) ? "error" : node.status === "retrying" ? "warn" : "info";
    return { level, node: node.node_id, text: `${node.status}${part}, attempt ${node.attempt}${action}${error}` };
  }
  if (frame.type === "status" && frame.status) {
    const s = frame.status;
    const text = `execution ${s.status}: ${Math.round(s.progress)}%${s.error ? ` — ${s.error}` : ""}`;
    return { level: s.status === "failed" ? "error" : "info", node: s.current_node, text };
  }
  return null;
}

function appendLog(frame) {
  const line = logLine(frame);
  if (!line) return;
  const log = $("log");
  const item = document.createElement("li");
  item.dataset.level = line.level;
  item.dataset.seq = frame.seq;
  const time = document.createElement("time");
  time.dateTime = frame.timestamp || "";
  time.textContent = frame.timestamp ? new Date(frame.timestamp).toLocaleTimeString() : "";
  const level = document.createElement("span");
  level.className = "level";
  level.textContent = line.level;
  const node = document.createElement("span");
  node.className = "node";
  node.textContent = line.node || "";
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = line.text;
  item.append(time, level, node, text);
  log.append(item);
  while (log.childElementCount > LOG_LIMIT) log.firstElementChild.remove();
  if ($("follow").checked) log.scrollTop = log.scrollHeight;
}

// --- node runs table ---------------------------------------------------------------------------------------

let refreshTimer = null;
function refreshNodeRunsSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshNodeRuns, 300);
}

function cell(label, text, className) {
  const td = document.createElement("td");
  td.dataset.label = label;
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

async function refreshNodeRuns() {
  let runs;
  try {
    runs = await api("GET", `/executions/${executionId}/nodes`);
  } catch (error) {
    $("node-empty").hidden = false;
    $("node-empty").textContent = `Could not load the node runs: ${describeError(error)}`;
    return;
  }
  const rows = runs.map((run) => {
    const tr = document.createElement("tr");
    tr.dataset.status = run.status;
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.dataset.status = run.status;
    badge.textContent = run.status;
    const statusCell = cell("Status", "");
    statusCell.append(badge);
    tr.append(
      cell("Node", run.node_id, "mono"),
      cell("Batch", run.batch_index === null ? "—" : String(run.batch_index)),
      cell("Attempt", String(run.attempt)),
      statusCell,
      cell("Action", run.action || "—"),
      cell("Duration", run.started_at ? formatDuration(run.started_at, run.finished_at) : "—"),
      cell("Worker", run.worker || "—", "mono"),
      cell("Error", run.error || "", run.error ? "error-text" : ""),
    );
    tr.title = `queued ${formatTime(run.queued_at)}`;
    return tr;
  });
  $("node-rows").replaceChildren(...rows);
  $("node-empty").hidden = rows.length > 0;
  $("node-empty").textContent = "No node has run yet.";
}

// --- live frames -------------------------------------------------------------------------------------------

function onFrame(frame) {
  if (frame.type === "error") {
    flash(frame.message || "The live connection reported an error.");
    return;
  }
  if (frame.execution_id !== executionId || typeof frame.seq !== "number") return;
  if (frame.type === "complete") {
    refreshNodeRuns();
    return;
  }
  // The snapshot after a (re)subscribe repeats the last seq: apply its status, but log each event once.
  const fresh = frame.seq > lastSeq;
  if (frame.type === "status" && frame.status && frame.seq >= lastSeq) applyStatus(frame.status);
  if (!fresh) return;
  lastSeq = frame.seq;
  if (frame.type === "node" && frame.node) {
    const node = frame.node;
    if (node.batch_index === null || node.batch_index === undefined) paintNode(node.node_id, node.status, node.error);
    refreshNodeRunsSoon();
  }
  appendLog(frame);
}

liveSocket({
  onOpen(send) {
    send({ type: "subscribe", execution_id: executionId, since: lastSeq });
  },
  onFrame,
});

// --- buttons -----------------------------------------------------------------------------------------------

armedClick($("cancel"), "Confirm cancel", async () => {
  try {
    applyStatus(await api("POST", `/executions/${executionId}/cancel`));
    flash("Execution canceled.", "success");
  } catch (error) {
    flash(`Could not cancel: ${describeError(error)}`);
  }
});

$("rerun").addEventListener("click", async () => {
  const button = $("rerun");
  button.disabled = true;
  try {
    const started = ["failed", "canceled"].includes(status.status)
      ? await api("POST", `/executions/${executionId}/retry`, {})
      : await api("POST", `/flows/${encodeURIComponent(status.flow_id)}/run`, { input: status.input || {} });
    location.assign(`/executions/${started.execution_id}`);
  } catch (error) {
    flash(`Could not start a new run: ${describeError(error)}`);
    button.disabled = false;
  }
});

$("duration").textContent = formatDuration(status.start_time, status.end_time);
refreshNodeRuns();
// While it runs, the duration keeps counting.
setInterval(() => {
  if (!isTerminal(status.status) && status.start_time) {
    $("duration").textContent = formatDuration(status.start_time, null);
  }
}, 1000);

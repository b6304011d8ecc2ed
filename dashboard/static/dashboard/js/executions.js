// Executions list: rows change live from the account subscription; a reconnect reloads the list over REST.
import { api, describeError, flash, formatTime, liveSocket, readConfig } from "./common.js";

const config = readConfig();
const tbody = document.getElementById("execution-rows");
const template = document.getElementById("row-template");
const empty = document.getElementById("empty");
const PAGE_SIZE = 50;

// The filters apply as soon as they change; the Filter button stays for browsers without JavaScript.
document.querySelectorAll("#filters select").forEach((select) => {
  select.addEventListener("change", () => select.form.submit());
});

const matches = (status) =>
  (!config.status || status.status === config.status) && (!config.flow_id || status.flow_id === config.flow_id);

// Flow names known at page load; a flow created since is looked up once (its id shows meanwhile).
const flowNames = { ...(config.flow_names || {}) };
const pendingNames = new Set();

async function lookUpFlowName(flowId) {
  if (pendingNames.has(flowId)) return;
  pendingNames.add(flowId);
  try {
    const flow = await api("GET", `/flows/${encodeURIComponent(flowId)}`);
    flowNames[flowId] = flow.name;
  } catch (error) {
    flowNames[flowId] = flowId; // deleted since: keep showing the id, and do not ask again
  }
  tbody.querySelectorAll(`tr[data-flow="${CSS.escape(flowId)}"] [data-field="flow"]`).forEach((link) => {
    link.textContent = flowNames[flowId];
  });
}

function field(row, name) {
  return row.querySelector(`[data-field="${name}"]`);
}

function fill(row, status) {
  row.dataset.id = status.id;
  row.dataset.status = status.status;
  row.dataset.flow = status.flow_id;
  const link = field(row, "link");
  link.href = `/executions/${status.id}`;
  link.textContent = status.id.slice(0, 8);
  const flow = field(row, "flow");
  flow.href = `/flows/${encodeURIComponent(status.flow_id)}`;
  flow.textContent = flowNames[status.flow_id] || status.flow_id;
  if (!(status.flow_id in flowNames)) lookUpFlowName(status.flow_id);
  const badge = field(row, "status");
  badge.dataset.status = status.status;
  badge.textContent = status.status;
  field(row, "progress").value = status.progress;
  field(row, "pct").textContent = `${Math.round(status.progress)}%`;
  field(row, "node").textContent = status.current_node || "—";
  const created = field(row, "created");
  created.dateTime = status.created_at || "";
  created.textContent = formatTime(status.created_at);
  const finished = field(row, "finished");
  finished.dateTime = status.end_time || "";
  finished.textContent = status.end_time ? formatTime(status.end_time) : "—";
}

function newRow(status) {
  const row = template.content.firstElementChild.cloneNode(true);
  fill(row, status);
  return row;
}

function upsert(status) {
  const existing = tbody.querySelector(`tr[data-id="${CSS.escape(status.id)}"]`);
  if (existing) {
    fill(existing, status);
    return;
  }
  // Only the first page shows new executions; older pages are a snapshot.
  if (!config.live || !matches(status)) return;
  tbody.prepend(newRow(status));
  while (tbody.rows.length > PAGE_SIZE) tbody.lastElementChild.remove();
  empty.hidden = true;
}

async function reload() {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (config.status) params.set("status", config.status);
  if (config.flow_id) params.set("flow_id", config.flow_id);
  try {
    const page = await api("GET", `/executions?${params}`);
    tbody.replaceChildren(...page.results.map(newRow));
    empty.hidden = page.results.length > 0;
  } catch (error) {
    flash(`Could not refresh the list: ${describeError(error)}`);
  }
}

liveSocket({
  onOpen(send, reconnected) {
    send({ type: "subscribe_account" });
    // Frames sent while the socket was down are gone for an account subscription: read the list again.
    if (reconnected && config.live) reload();
  },
  onFrame(frame) {
    if (frame.type === "status" && frame.status) upsert(frame.status);
    else if (frame.type === "error") flash(frame.message || "The live connection reported an error.");
  },
});

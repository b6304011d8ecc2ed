// The flow page's schedules, read from and changed through the REST API: listed with their next and last run,
// added (cron and time zone, or an interval), enabled, disabled and deleted.
import { api, describeError, flash, flashAfterReload, formatTime } from "./common.js";

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

function button(label, action, schedule) {
  const node = document.createElement("button");
  node.type = "button";
  node.className = "btn btn-small";
  node.dataset.action = action;
  node.dataset.enabled = String(schedule.enabled);
  node.textContent = label;
  return node;
}

function row(schedule) {
  const tr = document.createElement("tr");
  tr.dataset.schedule = schedule.id;
  if (!schedule.enabled) tr.className = "muted";
  tr.append(
    cell(schedule.cron ? `${schedule.cron} (${schedule.timezone})` : `every ${schedule.interval}`, "mono"),
    cell(schedule.next_run_at ? formatTime(schedule.next_run_at) : "disabled"),
  );
  const last = document.createElement("td");
  if (schedule.last_execution_id) {
    const link = document.createElement("a");
    link.href = `/executions/${encodeURIComponent(schedule.last_execution_id)}`;
    link.textContent = formatTime(schedule.last_run_at);
    last.append(link);
  } else {
    last.textContent = "—";
  }
  const actions = document.createElement("td");
  actions.className = "actions";
  actions.append(button(schedule.enabled ? "Disable" : "Enable", "toggle", schedule), button("Delete", "delete", schedule));
  tr.append(last, actions);
  return tr;
}

async function load(flowPath, body) {
  try {
    const page = await api("GET", `${flowPath}/schedules?limit=100`);
    body.replaceChildren(...page.results.map(row));
    if (!page.results.length) {
      const empty = document.createElement("tr");
      empty.append(cell("No schedules.", "muted"));
      body.replaceChildren(empty);
    }
  } catch (failure) {
    body.replaceChildren();
    flash(`Could not load the schedules: ${describeError(failure)}`);
  }
}

export function scheduleControls(flowPath) {
  const table = document.getElementById("schedules");
  const form = document.getElementById("schedule-form");
  if (!table || !form) return;
  const when = document.getElementById("schedule-when");
  const zone = document.getElementById("schedule-timezone");
  const error = document.getElementById("schedule-error");
  load(flowPath, table.tBodies[0]);

  table.addEventListener("click", async (event) => {
    const target = event.target.closest("button[data-action]");
    const tr = target && target.closest("tr[data-schedule]");
    if (!tr) return;
    const path = `/schedules/${encodeURIComponent(tr.dataset.schedule)}`;
    target.disabled = true;
    try {
      if (target.dataset.action === "delete") {
        await api("DELETE", path);
        flashAfterReload("Schedule deleted.");
      } else {
        const enabled = target.dataset.enabled !== "true";
        await api("PATCH", path, { enabled });
        flashAfterReload(enabled ? "Schedule enabled." : "Schedule disabled.");
      }
      location.reload();
    } catch (failure) {
      flash(`Could not change the schedule: ${describeError(failure)}`);
      target.disabled = false;
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = when.value.trim();
    // Five space-separated fields are a cron expression; anything else is taken as an interval.
    const body = text.split(/\s+/).length === 5 ? { cron: text, timezone: zone.value.trim() || "UTC" } : { interval: text };
    try {
      await api("POST", `${flowPath}/schedules`, body);
      flashAfterReload("Schedule added.");
      location.reload();
    } catch (failure) {
      error.textContent = describeError(failure);
      error.hidden = false;
    }
  });
}

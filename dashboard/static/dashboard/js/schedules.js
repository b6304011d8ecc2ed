// The flow page's schedules: add one (cron or interval), enable or disable it, delete it, through the REST API.
import { api, describeError, flash, flashAfterReload } from "./common.js";

export function scheduleControls(flowPath) {
  const table = document.getElementById("schedules");
  const form = document.getElementById("schedule-form");
  if (!table || !form) return;
  const when = document.getElementById("schedule-when");
  const zone = document.getElementById("schedule-timezone");
  const error = document.getElementById("schedule-error");

  table.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    const row = button && button.closest("tr[data-schedule]");
    if (!row) return;
    const path = `/schedules/${encodeURIComponent(row.dataset.schedule)}`;
    button.disabled = true;
    try {
      if (button.dataset.action === "delete") {
        await api("DELETE", path);
        flashAfterReload("Schedule deleted.");
      } else {
        const enabled = button.dataset.enabled !== "true";
        await api("PATCH", path, { enabled });
        flashAfterReload(enabled ? "Schedule enabled." : "Schedule disabled.");
      }
      location.reload();
    } catch (failure) {
      flash(`Could not change the schedule: ${describeError(failure)}`);
      button.disabled = false;
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

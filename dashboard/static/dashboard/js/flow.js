// One flow: edit its YAML (a save is a new version; problems shown at their lines) and run it with JSON input.
import { ApiError, api, describeError, flash, flashAfterReload, readConfig } from "./common.js";
import { lineEditor } from "./editor.js";
import { scheduleControls } from "./schedules.js";

const config = readConfig();
const flowPath = `/flows/${encodeURIComponent(config.flow_id)}`;
const editor = lineEditor(document.querySelector("[data-editor]"));
scheduleControls(flowPath);
const saveButton = document.getElementById("save");

saveButton.addEventListener("click", async () => {
  saveButton.disabled = true;
  try {
    const flow = await api("PUT", flowPath, { content: editor.value });
    flashAfterReload(`Saved: version ${flow.version} (#${flow.version_number}) is now current.`);
    location.reload();
  } catch (error) {
    if (error instanceof ApiError && error.status === 400 && Array.isArray(error.details)) {
      editor.showProblems(error.details);
      flash(`${error.message} See the marked lines.`);
    } else {
      flash(`Could not save: ${describeError(error)}`);
    }
    saveButton.disabled = false;
  }
});

const runForm = document.getElementById("run");
const runInput = document.getElementById("run-input");
const runError = document.getElementById("run-error");
const runButton = document.getElementById("run-button");

function inputError(message) {
  runError.textContent = message;
  runError.hidden = !message;
  runInput.classList.toggle("invalid", Boolean(message));
  runInput.setAttribute("aria-invalid", message ? "true" : "false");
}

runInput.addEventListener("input", () => inputError(""));

runForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  // Checked here so a typo never becomes a request (nor a run with the wrong input).
  let input = {};
  const text = runInput.value.trim();
  if (text) {
    try {
      input = JSON.parse(text);
    } catch (error) {
      inputError(`Invalid JSON: ${error.message}`);
      runInput.focus();
      return;
    }
  }
  if (input === null || typeof input !== "object" || Array.isArray(input)) {
    inputError("The input must be a JSON object, e.g. {\"name\": \"value\"}.");
    runInput.focus();
    return;
  }
  inputError("");
  runButton.disabled = true;
  try {
    const started = await api("POST", `${flowPath}/run`, { input });
    location.assign(`/executions/${started.execution_id}`);
  } catch (error) {
    flash(`Could not start the run: ${describeError(error)}`);
    runButton.disabled = false;
  }
});

// Flows list: upload a new flow (typed or from a file); validation problems are shown at their lines.
import { ApiError, api, describeError, flash, flashAfterReload } from "./common.js";
import { lineEditor } from "./editor.js";

const editor = lineEditor(document.querySelector("#upload [data-editor]"));
const form = document.getElementById("upload");
const button = document.getElementById("create");

document.getElementById("flow-file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  try {
    editor.value = await file.text();
    editor.clearProblems();
  } catch (error) {
    flash(`Could not read ${file.name}: ${error.message || error}`);
  }
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!editor.value.trim()) {
    editor.showProblems([{ path: "", line: null, message: "Write or choose the flow's YAML first." }]);
    editor.focus();
    return;
  }
  const body = { content: editor.value };
  const name = document.getElementById("flow-name").value.trim();
  if (name) body.name = name;
  button.disabled = true;
  try {
    const flow = await api("POST", "/flows", body);
    flashAfterReload(`Flow “${flow.name}” created.`);
    location.assign(`/flows/${encodeURIComponent(flow.id)}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 400 && Array.isArray(error.details)) {
      editor.showProblems(error.details);
      flash(`${error.message} See the marked lines.`);
    } else {
      flash(`Could not create the flow: ${describeError(error)}`);
    }
    button.disabled = false;
  }
});

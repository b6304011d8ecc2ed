// A plain textarea with a line-number gutter whose lines can carry validation problems (from `error.details`).

export function lineEditor(root) {
  const textarea = root.querySelector("textarea");
  const gutter = root.querySelector(".gutter");
  const backdrop = root.querySelector(".backdrop-inner");
  const list = document.getElementById(`${textarea.id}-problems`);
  let marks = new Map(); // line → messages

  function renderGutter() {
    const count = textarea.value.split("\n").length;
    const fragment = document.createDocumentFragment();
    for (let line = 1; line <= count; line += 1) {
      const number = document.createElement("span");
      number.textContent = String(line);
      if (marks.has(line)) {
        number.className = "err";
        number.title = marks.get(line).join("\n");
      }
      fragment.append(number, "\n");
    }
    gutter.replaceChildren(fragment);
    // Wide error bands behind the text, one per marked line (the textarea never wraps, so line N sits at
    // (N-1) line-heights: CSS fixes the line height in px).
    const bands = [...marks.keys()].map((line) => {
      const band = document.createElement("div");
      band.className = "band";
      band.style.top = `calc(${line - 1} * var(--lh))`;
      return band;
    });
    backdrop.replaceChildren(...bands);
    syncScroll();
  }

  function syncScroll() {
    gutter.scrollTop = textarea.scrollTop;
    backdrop.style.transform = `translate(${-textarea.scrollLeft}px, ${-textarea.scrollTop}px)`;
  }

  function goToLine(line, column) {
    const lines = textarea.value.split("\n");
    const index = Math.max(0, Math.min(line, lines.length) - 1);
    let start = 0;
    for (let i = 0; i < index; i += 1) start += lines[i].length + 1;
    const offset = column ? Math.min(column - 1, lines[index].length) : 0;
    textarea.focus();
    textarea.setSelectionRange(start + offset, start + lines[index].length);
    const lineHeight = parseFloat(getComputedStyle(textarea).lineHeight) || 20;
    textarea.scrollTop = Math.max(0, index * lineHeight - textarea.clientHeight / 3);
    syncScroll();
  }

  // Problems are `{path, line, column, message}`; one without a line is still listed, just not in the gutter.
  function showProblems(problems) {
    marks = new Map();
    list.replaceChildren();
    for (const problem of problems || []) {
      const line = Number.isInteger(problem.line) ? problem.line : null;
      if (line !== null) marks.set(line, [...(marks.get(line) || []), problem.message]);
      const item = document.createElement("li");
      const where = document.createElement(line !== null ? "button" : "span");
      where.className = "where";
      where.textContent = line !== null ? `line ${line}${problem.column ? `:${problem.column}` : ""}` : "—";
      if (line !== null) {
        where.type = "button";
        where.addEventListener("click", () => goToLine(line, problem.column));
      }
      const text = document.createElement("span");
      text.textContent = `${problem.path ? `${problem.path}: ` : ""}${problem.message}`;
      item.append(where, text);
      list.append(item);
    }
    list.hidden = list.childElementCount === 0;
    root.classList.toggle("has-problems", marks.size > 0);
    renderGutter();
  }

  textarea.addEventListener("input", renderGutter);
  textarea.addEventListener("scroll", syncScroll);
  // Tab indents (YAML wants spaces) instead of leaving the field; Escape then Tab still leaves it.
  let escaped = false;
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Escape") escaped = true;
    if (event.key !== "Tab" || escaped || event.shiftKey) {
      if (event.key === "Tab") escaped = false;
      return;
    }
    event.preventDefault();
    textarea.setRangeText("  ", textarea.selectionStart, textarea.selectionEnd, "end");
    renderGutter();
  });
  renderGutter();

  return {
    get value() {
      return textarea.value;
    },
    set value(text) {
      textarea.value = text;
      renderGutter();
    },
    showProblems,
    clearProblems: () => showProblems([]),
    focus: () => textarea.focus(),
  };
}

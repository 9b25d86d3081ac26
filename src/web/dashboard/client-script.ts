/**
 * The dashboard's only script, inlined under the CSP nonce: confirmations before destructive
 * actions, "select all" on the DLQ, and live updates from the SSE stream. It writes only
 * textContent and class names, never markup.
 */
export const CLIENT_SCRIPT = `
(() => {
  document.addEventListener("submit", (event) => {
    const question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });
  document.addEventListener("change", (event) => {
    const box = event.target;
    if (!box.matches || !box.matches("input[data-select-all]")) return;
    for (const item of document.querySelectorAll("input[name=id]")) item.checked = box.checked;
  });
  const url = document.body.getAttribute("data-live");
  const status = document.getElementById("live");
  if (!url || !window.EventSource) return;
  const source = new EventSource(url);
  source.addEventListener("open", () => { status.textContent = "live"; status.classList.add("on"); });
  source.addEventListener("error", () => { status.textContent = "reconnecting"; status.classList.remove("on"); });
  source.addEventListener("update", (event) => {
    const data = JSON.parse(event.data);
    for (const element of document.querySelectorAll("[data-queue][data-field]")) {
      const queue = data.queues[element.getAttribute("data-queue")];
      if (!queue) continue;
      const text = queue[element.getAttribute("data-field")];
      if (text !== undefined && element.textContent !== text) element.textContent = text;
    }
    for (const element of document.querySelectorAll("[data-job]")) {
      const state = data.jobs[element.getAttribute("data-job")];
      if (state === undefined || element.textContent === state) continue;
      element.textContent = state;
      element.className = "badge s-" + state;
    }
  });
})();
`;

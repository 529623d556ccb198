// Live logs: one server-sent event stream carries every service's lines;
// each goes to its service's log box. Without JavaScript the page still
// shows the last lines at load time.
"use strict";
const boxes = new Map();
document.querySelectorAll("pre.loglines[data-service]").forEach((pre) => {
  boxes.set(pre.dataset.service, { pre, fresh: true });
});
if (boxes.size > 0) {
  const source = new EventSource("/api/v1/logs");
  source.onmessage = (ev) => {
    const line = JSON.parse(ev.data);
    const box = boxes.get(line.service);
    if (!box) return;
    if (box.fresh) { box.pre.textContent = ""; box.fresh = false; }
    box.pre.textContent += line.text + "\n";
    const lines = box.pre.textContent.split("\n");
    if (lines.length > 200) box.pre.textContent = lines.slice(-200).join("\n");
    box.pre.scrollTop = box.pre.scrollHeight;
  };
}

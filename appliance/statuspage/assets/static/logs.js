// Live logs: each service's log box follows its server-sent event stream.
// Without JavaScript the page still shows the last lines at load time.
"use strict";
document.querySelectorAll("pre.loglines[data-stream]").forEach((pre) => {
  const source = new EventSource(pre.dataset.stream);
  let first = true;
  source.onmessage = (ev) => {
    if (first) { pre.textContent = ""; first = false; }
    const line = JSON.parse(ev.data);
    pre.textContent += line.text + "\n";
    const lines = pre.textContent.split("\n");
    if (lines.length > 200) pre.textContent = lines.slice(-200).join("\n");
    pre.scrollTop = pre.scrollHeight;
  };
});

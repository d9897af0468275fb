// The console's only script, and optional: the overview refreshes itself when asked to.
// Everything else works without JavaScript (filters, search, confirmations are plain forms).
(function () {
  "use strict";
  var box = document.querySelector("input[data-autorefresh]");
  if (!box) { return; }
  var key = "orchestrator-console-autorefresh";
  var seconds = parseInt(box.getAttribute("data-autorefresh"), 10) || 15;
  var timer = null;
  function arm() {
    if (timer) { clearTimeout(timer); timer = null; }
    if (box.checked) { timer = setTimeout(function () { window.location.reload(); }, seconds * 1000); }
  }
  try { box.checked = window.localStorage.getItem(key) === "1"; } catch (e) { /* storage off */ }
  box.addEventListener("change", function () {
    try { window.localStorage.setItem(key, box.checked ? "1" : "0"); } catch (e) { /* storage off */ }
    arm();
  });
  arm();
})();

// The live session page. When the pushed status changes (halted by a rule, stopped elsewhere, re-armed), refresh
// the control card so its buttons match the session's real state. A static file, not an inline script: the
// Content-Security-Policy allows scripts from 'self' only.
(function () {
  "use strict";
  let last = null;
  document.body.addEventListener("htmx:wsAfterMessage", function () {
    const el = document.getElementById("session-status");
    const now = el ? el.textContent.trim() : null;
    if (last !== null && now !== last) { htmx.trigger(document.body, "mm:statuschange"); }
    last = now;
  });
})();

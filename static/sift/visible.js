// The page coming back into view, as an event of its own (`sift:visible` on document), so an
// hx-trigger can wait for it without a filter expression: htmx would need eval for that, which
// the Content-Security-Policy forbids.
document.addEventListener("visibilitychange", function () {
  "use strict";
  if (document.visibilityState === "visible") {
    document.dispatchEvent(new Event("sift:visible"));
  }
});

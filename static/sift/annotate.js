// Keyboard-first labeling: hotkeys answer, Space skips, Backspace / Ctrl+Z undo, Enter submits
// (multi-label). Also records how long each item was on screen.
(function () {
  "use strict";
  let shownAt = performance.now();

  function workspace() { return document.getElementById("workspace"); }

  function secondsOnItem() {
    return ((performance.now() - shownAt) / 1000).toFixed(2);
  }

  function typingInField(target) {
    if (!(target instanceof HTMLElement)) return false;
    if (target.isContentEditable) return true;
    const tag = target.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT") return true;
    return tag === "INPUT" && !["checkbox", "radio", "button", "submit"].includes(target.type);
  }

  function click(selector) {
    const element = workspace() && workspace().querySelector(selector);
    if (element) { element.click(); return true; }
    return false;
  }

  document.addEventListener("keydown", function (event) {
    const ws = workspace();
    // A held key must not skip, undo or submit item after item.
    if (!ws || typingInField(event.target) || event.altKey || event.repeat) return;
    const multi = ws.dataset.multiLabel === "true";
    const key = event.key;
    if ((event.ctrlKey || event.metaKey) && key.toLowerCase() === "z") {
      event.preventDefault();
      click("[data-action=undo]");
      return;
    }
    if (event.ctrlKey || event.metaKey) return;
    if (key === "Backspace") { event.preventDefault(); click("[data-action=undo]"); return; }
    if (key === " ") { event.preventDefault(); click("[data-action=skip]"); return; }
    if (key === "Enter" && multi) { event.preventDefault(); click("[data-action=submit]"); return; }
    const target = ws.querySelector('[data-hotkey="' + CSS.escape(key) + '"]');
    if (!target) return;
    event.preventDefault();
    if (multi) {
      const box = target.querySelector("input[type=checkbox]");
      if (box) box.checked = !box.checked;
    } else {
      target.click();
    }
  });

  // Every submission carries the time the item was on screen.
  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.elt && event.detail.elt.id === "answer-form") {
      event.detail.parameters["seconds"] = secondsOnItem();
    }
  });
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form.id === "answer-form" && form.elements.seconds) form.elements.seconds.value = secondsOnItem();
  });

  // On this page every swap brings a new item into view.
  document.addEventListener("htmx:afterSwap", function () { shownAt = performance.now(); });
})();

// Keyboard-first labeling: hotkeys answer, Space skips, Backspace / Ctrl+Z undo, Enter submits
// (multi-label), ? lists the keys. Also records how long each item was on screen and tells
// screen readers when a new item arrives.
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

  function keysDialog() { return document.getElementById("keys-dialog"); }

  function showKeys() {
    const dialog = keysDialog();
    if (dialog && !dialog.open) dialog.showModal();
  }

  document.addEventListener("click", function (event) {
    if (event.target instanceof Element && event.target.closest("[data-action=keys]")) showKeys();
  });

  document.addEventListener("keydown", function (event) {
    const ws = workspace();
    // A held key must not skip, undo or submit item after item.
    if (!ws || typingInField(event.target) || event.altKey || event.repeat) return;
    // While the key list is open, keys belong to it (Escape closes it).
    if (keysDialog() && keysDialog().open) return;
    if (event.key === "?") { event.preventDefault(); showKeys(); return; }
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

  // What a screen reader says when the workspace changes: the new item, or why there is none.
  function announce() {
    const region = document.getElementById("announcer");
    const ws = workspace();
    if (!region || !ws) return;
    const text = ws.querySelector("article.item-text");
    const done = ws.querySelector(".done h2");
    const notice = ws.querySelector(".errors, .notice");
    const parts = [];
    if (notice) parts.push(notice.textContent.trim());
    if (text) parts.push("New item: " + text.textContent.trim().slice(0, 200));
    else if (done) parts.push(done.textContent.trim());
    region.textContent = parts.join(" ");
  }

  // On this page every swap brings a new item into view.
  document.addEventListener("htmx:afterSwap", function () {
    shownAt = performance.now();
    announce();
  });
})();

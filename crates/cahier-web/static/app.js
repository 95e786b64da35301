// Cahier's only script. Pages work without it; it adds autosave, live preview, keyboard
// shortcuts and a few conveniences. Plain JavaScript, no build step.
"use strict";

(function () {
  const csrf = document.body.dataset.csrf || "";

  // Colour dots: set from data attributes (inline styles are forbidden by our CSP).
  for (const dot of document.querySelectorAll("[data-color]")) {
    const c = dot.dataset.color;
    if (/^[0-9a-fA-F]{6}$/.test(c)) dot.style.backgroundColor = "#" + c;
  }

  // Selects that submit their form on change (language, team switch).
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
  for (const el of document.querySelectorAll(".js-hide")) el.hidden = true;

  // Confirmation before destructive actions.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }

  // Keyboard shortcuts: n new, / search, ? help. Ignored while typing in a field.
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "?") {
      const dialog = document.getElementById("shortcuts");
      if (dialog && dialog.showModal) { dialog.showModal(); event.preventDefault(); }
      return;
    }
    const el = document.querySelector('[data-shortcut="' + CSS.escape(event.key) + '"]');
    if (!el) return;
    event.preventDefault();
    if (el.tagName === "INPUT") el.focus(); else el.click();
  });

  const form = document.querySelector("form[data-autosave]");
  if (!form) return;

  // Autosave: never lose a keystroke. Saves after a pause in typing, on blur, on Ctrl+S, and
  // warns before leaving with unsaved input. The base field holds the version our text is
  // based on, so concurrent edits by others merge on the server instead of being overwritten.
  const state = document.getElementById("save-state");
  const base = document.getElementById("base-heads");
  const body = document.getElementById("body");
  const preview = document.getElementById("preview");
  const contentType = document.getElementById("content-type");
  const saveButton = document.getElementById("save-button");
  let dirty = false;
  let saving = false;
  let again = false;
  let timer = null;
  let previewTimer = null;

  function show(kind, extra) {
    if (!state) return;
    state.textContent = state.dataset[kind] + (extra ? " " + extra : "");
    state.dataset.state = kind;
  }

  async function save() {
    clearTimeout(timer);
    if (!dirty) return;
    if (saving) { again = true; return; }
    saving = true;
    dirty = false;
    show("saving");
    const data = new URLSearchParams(new FormData(form));
    let failed = false;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        headers: { "Accept": "application/json", "X-CSRF-Token": csrf },
        body: data,
        credentials: "same-origin",
      });
      const result = await response.json().catch(() => null);
      // Only our JSON answer means saved. An ended session answers with a redirect to the
      // sign-in page, which fetch follows to a 200 HTML page: that is a failure too.
      if (!response.ok || response.redirected || !result || typeof result.changed !== "boolean") {
        failed = true;
        dirty = true;
        show("failed", (result && result.description) || "");
      } else {
        if (result.changed) base.value = result.base;
        if (result.merged) show("merged");
        else if (dirty) show("unsaved"); // typed while this save was on its way
        else show("saved", result.saved_at || "");
      }
    } catch (error) {
      failed = true;
      dirty = true;
      show("failed");
    } finally {
      saving = false;
      if (again || dirty) { again = false; schedule(failed ? 4000 : 1500); }
    }
  }

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(save, delay);
  }

  function changed() {
    dirty = true;
    show("unsaved");
    schedule(1500);
  }

  async function refreshPreview() {
    if (!preview || !body) return;
    const data = new URLSearchParams({ body: body.value, content_type: contentType ? contentType.value : "2" });
    try {
      const response = await fetch(form.action.replace(/\/save$/, "/preview"), {
        method: "POST",
        headers: { "Accept": "application/json", "X-CSRF-Token": csrf },
        body: data,
        credentials: "same-origin",
      });
      if (response.ok) preview.innerHTML = (await response.json()).html;
    } catch (error) { /* the preview is a convenience; the saved page renders on reload */ }
  }

  form.addEventListener("input", () => {
    changed();
    clearTimeout(previewTimer);
    previewTimer = setTimeout(refreshPreview, 400);
  });
  // Text fields report every edit through "input"; their "change" on blur would mark text
  // already saved as unsaved again: a needless save, in flight when a click on a link leaves
  // the page, so the browser asks "leave?" although nothing is lost.
  form.addEventListener("change", (event) => {
    if (!event.target.matches("textarea, input:not([type]), input[type=text]")) changed();
  });
  form.addEventListener("focusout", () => { if (dirty) save(); });
  form.addEventListener("submit", (event) => { event.preventDefault(); dirty = true; save(); });
  if (saveButton) saveButton.addEventListener("click", (event) => { event.preventDefault(); dirty = true; save(); });
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "s") { event.preventDefault(); dirty = true; save(); }
  });
  window.addEventListener("beforeunload", (event) => {
    if (dirty || saving) { event.preventDefault(); event.returnValue = state ? state.dataset.leave : ""; }
  });
})();

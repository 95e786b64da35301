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

// Attachments: the upload form sends with a progress bar, files dropped anywhere on an entry's
// page are attached, and an image pasted (or dropped) into the body is attached and linked
// from the text as Markdown at the cursor. Without JavaScript the form posts as usual.
(function () {
  const uploadForm = document.getElementById("upload-form");
  if (!uploadForm || !window.FormData || !window.XMLHttpRequest) return;
  const csrf = document.body.dataset.csrf || "";
  const progress = document.getElementById("upload-progress");
  const status = document.getElementById("upload-state");
  const body = document.getElementById("body");

  function say(kind, extra) {
    if (!status) return;
    status.textContent = status.dataset[kind] + (extra ? " " + extra : "");
    status.dataset.state = kind;
  }

  // Sends files; resolves with the server's list of new uploads ({id, real_name, hash, url}).
  function send(files, comment) {
    const data = new FormData();
    for (const file of files) data.append("file", file, file.name);
    if (comment) data.append("comment", comment);
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", uploadForm.action);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable && progress) progress.value = Math.round((100 * event.loaded) / event.total);
      });
      xhr.addEventListener("load", () => {
        if (progress) progress.hidden = true;
        let result = null;
        try { result = JSON.parse(xhr.responseText); } catch (error) { result = null; }
        if (xhr.status >= 200 && xhr.status < 300 && result && Array.isArray(result.uploads)) {
          say("done");
          // Attaching is a change of the entry: when it was written on the version the editor
          // is based on, move the base past it, so the next autosave is not taken for a
          // concurrent edit by someone else.
          const base = document.getElementById("base-heads");
          if (base && result.heads && result.heads_before === base.value) base.value = result.heads;
          resolve(result.uploads);
        } else {
          const why = (result && result.description) || String(xhr.status);
          say("failed", why);
          reject(new Error(why));
        }
      });
      xhr.addEventListener("error", () => {
        if (progress) progress.hidden = true;
        say("failed");
        reject(new Error("network"));
      });
      if (progress) { progress.value = 0; progress.hidden = false; }
      say("uploading");
      xhr.send(data);
    });
  }

  function showList() {
    // The list is rendered by the server: reload on it (the browser asks first if the text
    // has unsaved changes).
    window.location.hash = "attachments";
    window.location.reload();
  }

  uploadForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = uploadForm.querySelector("input[type=file]");
    const comment = uploadForm.querySelector("input[name=comment]");
    if (!input || input.files.length === 0) return;
    send(Array.from(input.files), comment ? comment.value : "").then(showList, () => {});
  });

  function markdownFor(upload) {
    const name = upload.real_name.replace(/[[\]\\]/g, "");
    return "![" + name + "](" + upload.url + ")";
  }

  // Inserts text at the body's cursor and tells autosave about it.
  function insertInBody(text) {
    if (!body) return;
    const start = body.selectionStart;
    const end = body.selectionEnd;
    body.value = body.value.slice(0, start) + text + body.value.slice(end);
    body.selectionStart = body.selectionEnd = start + text.length;
    body.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function attachImagesToBody(files) {
    send(files, "").then((uploads) => {
      insertInBody(uploads.map(markdownFor).join("\n"));
    }, () => {});
  }

  const hasFiles = (event) => event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files");
  document.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    document.body.classList.add("dropping");
  });
  document.addEventListener("dragleave", (event) => {
    if (event.target === document.documentElement || event.target === document.body) document.body.classList.remove("dropping");
  });
  document.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    document.body.classList.remove("dropping");
    const files = Array.from(event.dataTransfer.files);
    if (files.length === 0) return;
    if (body && event.target === body && files.every((f) => f.type.startsWith("image/"))) {
      attachImagesToBody(files);
    } else {
      send(files, "").then(showList, () => {});
    }
  });

  if (body) {
    body.addEventListener("paste", (event) => {
      const items = event.clipboardData ? Array.from(event.clipboardData.files || []) : [];
      const images = items.filter((f) => f.type.startsWith("image/"));
      if (images.length === 0) return;
      event.preventDefault();
      const stamp = new Date().toISOString().replace(/[:.]/g, "-");
      const named = images.map((f, i) => {
        const ext = (f.type.split("/")[1] || "png").replace(/[^a-z0-9]/g, "");
        return new File([f], "pasted-" + stamp + (i ? "-" + i : "") + "." + ext, { type: f.type });
      });
      attachImagesToBody(named);
    });
  }
})();

// Exports page: while a job runs, poll its JSON status and update the rows in place; when a
// job is done, its download link appears. Without JavaScript a <noscript> refresh does it.
(function () {
  const jobs = document.querySelector("table[data-poll]");
  if (jobs) {
    const poll = () => {
      fetch(jobs.dataset.poll, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
        .then((list) => {
          let running = false;
          for (const job of list) {
            const row = jobs.querySelector('tr[data-job="' + job.id + '"]');
            if (!row) continue;
            const bar = row.querySelector(".job-progress progress");
            const count = row.querySelector(".job-progress span");
            if (bar) { bar.max = job.total; bar.value = job.done; }
            if (count) count.textContent = job.done + "/" + job.total;
            const state = row.querySelector(".job-state");
            const cell = row.querySelector(".job-download");
            if (job.state === "done") {
              if (state) state.textContent = jobs.dataset.stateDone + (job.note ? ": " + job.note : "");
              if (cell && !cell.querySelector("a")) {
                const link = document.createElement("a");
                link.href = "/exports/" + job.id + "/download";
                link.textContent = jobs.dataset.download;
                cell.appendChild(link);
              }
            } else if (job.state === "failed") {
              if (state) state.textContent = jobs.dataset.stateFailed + (job.error ? ": " + job.error : "");
            } else {
              running = true;
              if (state && job.state === "running") state.textContent = jobs.dataset.stateRunning;
            }
          }
          if (running) window.setTimeout(poll, 1000);
        })
        .catch(() => window.setTimeout(poll, 5000));
    };
    window.setTimeout(poll, 500);
  }
})();

(function () {
  // Experiment picker (booking and stock forms): search-as-you-type over the experiments the
  // user may read (an ARIA combobox with a listbox). Without JavaScript, the input keeps its
  // list of recent experiments and accepts an experiment's number.
  for (const picker of document.querySelectorAll("[data-experiment-picker]")) {
    const input = picker.querySelector("input");
    const list = picker.querySelector("[role=listbox]");
    const status = picker.querySelector("[aria-live]");
    if (!input || !list) continue;
    input.removeAttribute("list");
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-controls", list.id);
    input.setAttribute("aria-expanded", "false");
    let active = -1;
    let timer = null;
    let asked = 0;
    const options = () => Array.from(list.querySelectorAll("[role=option]"));
    const close = () => {
      list.hidden = true;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
      active = -1;
    };
    const choose = (option) => {
      input.value = option.dataset.value;
      close();
      input.dispatchEvent(new Event("change", { bubbles: true }));
    };
    const highlight = (index) => {
      const all = options();
      if (all.length === 0) return;
      active = (index + all.length) % all.length;
      all.forEach((o, i) => o.setAttribute("aria-selected", i === active ? "true" : "false"));
      input.setAttribute("aria-activedescendant", all[active].id);
      all[active].scrollIntoView({ block: "nearest" });
    };
    const search = async () => {
      const text = input.value.trim();
      const ticket = ++asked;
      try {
        const response = await fetch("/calendar/experiments?q=" + encodeURIComponent(text), {
          headers: { Accept: "application/json" },
          credentials: "same-origin",
        });
        if (!response.ok || ticket !== asked) return;
        const rows = await response.json();
        list.textContent = "";
        rows.forEach((row, i) => {
          const li = document.createElement("li");
          li.setAttribute("role", "option");
          li.id = list.id + "-" + i;
          li.dataset.value = row.label;
          li.textContent = row.label;
          li.addEventListener("mousedown", (event) => {
            event.preventDefault();
            choose(li);
          });
          list.appendChild(li);
        });
        list.hidden = rows.length === 0;
        input.setAttribute("aria-expanded", rows.length > 0 ? "true" : "false");
        active = -1;
        if (status) status.textContent = rows.length === 0 ? picker.dataset.none : rows.length + " " + picker.dataset.count;
      } catch (_) {
        close();
      }
    };
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(search, 150);
    });
    input.addEventListener("focus", () => {
      if (input.value.trim() === "") search();
    });
    input.addEventListener("blur", () => setTimeout(close, 100));
    input.addEventListener("keydown", (event) => {
      if (list.hidden) {
        if (event.key === "ArrowDown") search();
        return;
      }
      if (event.key === "ArrowDown") { event.preventDefault(); highlight(active + 1); }
      else if (event.key === "ArrowUp") { event.preventDefault(); highlight(active - 1); }
      else if (event.key === "Enter" && active >= 0) { event.preventDefault(); choose(options()[active]); }
      else if (event.key === "Escape") { close(); }
    });
  }
})();

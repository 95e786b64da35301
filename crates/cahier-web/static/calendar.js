// Booking calendar: click-and-drag on the week grid selects a slot, fills the booking form
// (the same one a phone uses) and submits it. Without this script the form works alone.
(function () {
  "use strict";
  const grid = document.getElementById("week-grid");
  const form = document.getElementById("booking-form");
  document.querySelectorAll("input[data-select-all]").forEach(function (input) {
    input.addEventListener("focus", function () { input.select(); });
  });
  if (!grid || !form || !grid.hasAttribute("data-bookable")) return;
  const hint = document.getElementById("drag-hint");
  if (hint) hint.hidden = false;
  const start = form.querySelector("[name=start]");
  const end = form.querySelector("[name=end]");
  const title = form.querySelector("[name=title]");
  let anchor = null;
  let current = null;

  function column(td) { return Array.prototype.indexOf.call(td.parentNode.children, td); }
  function cellAt(target) {
    const td = target && target.closest ? target.closest("td[data-start]") : null;
    return td && grid.contains(td) ? td : null;
  }
  function selected() {
    if (!anchor || !current) return [];
    const col = column(anchor);
    const rows = Array.prototype.slice.call(grid.tBodies[0].rows);
    const a = rows.indexOf(anchor.parentNode);
    const b = rows.indexOf(current.parentNode);
    const [lo, hi] = a <= b ? [a, b] : [b, a];
    return rows.slice(lo, hi + 1).map(function (row) { return row.children[col]; });
  }
  function paint() {
    grid.querySelectorAll("td.selecting").forEach(function (td) { td.classList.remove("selecting"); });
    selected().forEach(function (td) { td.classList.add("selecting"); });
  }
  // "2026-12-01T09:00" plus one hour, in UTC like every time on this page.
  function plusHour(value) {
    const t = new Date(value + ":00Z");
    t.setUTCHours(t.getUTCHours() + 1);
    return t.toISOString().slice(0, 16);
  }
  grid.addEventListener("pointerdown", function (event) {
    const td = cellAt(event.target);
    if (!td || event.button !== 0) return;
    event.preventDefault();
    anchor = current = td;
    paint();
  });
  grid.addEventListener("pointerover", function (event) {
    if (!anchor) return;
    const td = cellAt(event.target);
    if (td && column(td) === column(anchor)) { current = td; paint(); }
  });
  document.addEventListener("pointerup", function () {
    const cells = selected();
    anchor = current = null;
    if (!cells.length) return;
    start.value = cells[0].dataset.start;
    end.value = plusHour(cells[cells.length - 1].dataset.start);
    if (!title.value.trim()) { title.focus(); return; }
    form.requestSubmit();
  });
})();

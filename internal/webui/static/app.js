// Herald operator UI: the small layer on top of pages that work without
// it. Live updates of the overview over Server-Sent Events, and a
// "select all" box on the dead-letter list. Served from 'self' only; the
// Content-Security-Policy forbids inline script.
"use strict";
document.documentElement.classList.add("js");

document.addEventListener("DOMContentLoaded", function () {
  var live = document.getElementById("live");
  if (live && live.dataset.stream && window.EventSource) {
    var source = new EventSource(live.dataset.stream);
    // The server renders the part with html/template, escaping everything
    // it did not write itself.
    source.addEventListener("overview", function (e) {
      live.innerHTML = e.data;
      live.dataset.updated = String(Date.now());
    });
  }

  var all = document.getElementById("select-all");
  if (all) {
    var boxes = function () {
      return document.querySelectorAll('#selection input[type="checkbox"][name="id"]');
    };
    all.addEventListener("change", function () {
      boxes().forEach(function (b) { b.checked = all.checked; });
    });
  }
});

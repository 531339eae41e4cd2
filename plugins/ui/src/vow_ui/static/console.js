// vow console: live updates (server-sent events) and actions without a reload.
// Everything shown comes from the server already escaped; this script only moves it into place.
"use strict";
(function () {
  function fmt(s) {
    if (s < 10) return s.toFixed(1) + "s";
    if (s < 60) return Math.floor(s) + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  }
  function tick() {
    document.querySelectorAll("[data-since]").forEach(function (el) {
      el.textContent = "running " + fmt(Math.max(0, Date.now() / 1000 - parseFloat(el.dataset.since)));
    });
  }
  function note(text, ok) {
    var el = document.getElementById("note");
    if (!el) return;
    el.textContent = text;
    el.className = "shown" + (ok ? "" : " bad");
  }

  var live = document.getElementById("live");
  if (live && live.dataset.live && window.EventSource) {
    var source = new EventSource(live.dataset.live);
    source.addEventListener("update", function (event) {
      // Keep what the user is typing into a value box across the update.
      var typed = {}, focused = null;
      live.querySelectorAll("form[data-key] input[name=value]").forEach(function (input) {
        typed[input.form.dataset.key] = input.value;
        if (document.activeElement === input) focused = input.form.dataset.key;
      });
      live.innerHTML = event.data;
      live.querySelectorAll("form[data-key] input[name=value]").forEach(function (input) {
        var key = input.form.dataset.key;
        if (key in typed) input.value = typed[key];
        if (key === focused) input.focus();
      });
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
      tick();
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("act")) return;
    event.preventDefault();
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    var action = (event.submitter && event.submitter.getAttribute("formaction")) || form.getAttribute("action");
    fetch(action, {
      method: "POST", body: new URLSearchParams(new FormData(form)), credentials: "same-origin",
      headers: {"Accept": "application/json"}
    }).then(function (response) {
      return response.json().catch(function () { return {ok: false, note: "the console answered " + response.status}; });
    }).then(function (data) { note(data.note, data.ok); },
             function (error) { note("could not reach the console: " + error, false); });
  });

  tick();
  setInterval(tick, 1000);
})();

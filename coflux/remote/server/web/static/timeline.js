// Coflux web UI: a run page's timeline moved in the browser, on the scale the
// server drew it with (``web/graph.py``): by each live update, and between
// updates by the page's own clock. Loaded before ``app.js``, which calls it.
(function () {
  "use strict";

  // How many times something happened on the page (tests and curious people read it).
  function count(name) {
    var root = document.documentElement;
    root.setAttribute(name, String(+(root.getAttribute(name) || 0) + 1));
  }

  // ``1.234`` → ``1.23 s``, ``754`` → ``12 m 34 s``: as the server's ``duration``.
  function duration(seconds) {
    if (seconds < 1) return Math.round(seconds * 1000) + " ms";
    if (seconds < 60) return seconds.toFixed(2) + " s";
    var minutes = Math.floor(seconds / 60), rest = Math.floor(seconds) % 60;
    if (minutes < 60) return minutes + " m " + rest + " s";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " m";
  }

  // Time to % of the timeline's width, as ``web.graph._Scale`` maps it: idle gaps
  // longer than the gap minimum and a quarter of the busy time drawn narrow.
  function timeScale(intervals, gapMin, gapWidth) {
    var merged = [];
    intervals.slice().sort(function (a, b) { return a[0] - b[0] || a[1] - b[1]; })
      .forEach(function (iv) {
        var last = merged[merged.length - 1];
        if (last && iv[0] <= last[1]) last[1] = Math.max(last[1], iv[1]);
        else merged.push([iv[0], iv[1]]);
      });
    var busy = 0;
    merged.forEach(function (m) { busy += m[1] - m[0]; });
    busy = busy || 0.001;
    var pieces = [];
    merged.forEach(function (m, i) {
      if (i) {
        var start = merged[i - 1][1];
        pieces.push([start, m[0], m[0] - start > Math.max(gapMin, busy / 4)]);
      }
      pieces.push([m[0], m[1], false]);
    });
    var real = 0, long = 0;
    pieces.forEach(function (p) { if (p[2]) long++; else real += p[1] - p[0]; });
    var unit = (100 - gapWidth * long) / Math.max(real, 0.001), at = 0, offsets = [], breaks = [];
    pieces.forEach(function (p) {
      offsets.push(at);
      if (p[2]) breaks.push({ left: at, seconds: p[1] - p[0] });
      at += p[2] ? gapWidth : (p[1] - p[0]) * unit;
    });
    var scale = function (t) {
      for (var i = 0; i < pieces.length; i++) {
        var p = pieces[i];
        if (t <= p[1]) {
          if (p[2]) return offsets[i] + gapWidth * (t - p[0]) / Math.max(p[1] - p[0], 0.001);
          return offsets[i] + Math.max(t - p[0], 0) * unit;
        }
      }
      return 100;
    };
    scale.breaks = breaks;
    return scale;
  }

  // The timeline's bars, moved to where the run is now: moved executions take
  // their new state and times, running ones grow to the server's now, and the
  // whole scale stretches. The busy intervals the page was drawn with end at its
  // draw time in a run still going; stretched to now, they cover every
  // execution drawn (a new one would have changed the run's shape: a redraw).
  function patchTimeline(body, moved) {
    var section = body.querySelector(".timeline[data-busy]");
    if (!section) return;
    var now = moved.now + 1.0;  // the server's clock: ``now`` is a second behind it
    moved.steps.forEach(function (s) {
      var row = section.querySelector('.row[data-execution="' + s.id + ":" + s.attempts + '"]');
      if (!row) return;
      if (s.started_at != null) row.setAttribute("data-started", String(s.started_at));
      if (s.finished_at != null) row.setAttribute("data-finished", String(s.finished_at));
      row.querySelector(".bar").setAttribute("class", "bar " + s.state);
      row.setAttribute("data-state", s.state);
    });
    setClock(section, now);
    layoutTimeline(section, now);
    count("data-timeline-patches");
  }

  // The server's clock as the page last heard it (a drawn timeline's
  // ``data-now``, then each update's ``now``), run on by the page's own clock.
  function setClock(section, now) {
    section.setAttribute("data-clock", String(now));
    section.coflux_clock_at = performance.now();
  }
  function serverNow(section) {
    if (section.coflux_clock_at === undefined) setClock(section, +section.getAttribute("data-now"));
    return +section.getAttribute("data-clock") + (performance.now() - section.coflux_clock_at) / 1000;
  }

  // Every bar and figure of the timeline at the server's time ``now``.
  function layoutTimeline(section, now) {
    var drawnAt = +section.getAttribute("data-now");
    var intervals = JSON.parse(section.getAttribute("data-busy")).map(function (iv) {
      return [iv[0], iv[1] >= drawnAt - 0.002 ? Math.max(iv[1], now) : iv[1]];
    });
    var rows = section.querySelectorAll(".row[data-execution]"), times = [];
    rows.forEach(function (row) {
      var created = +row.getAttribute("data-created");
      var started = row.getAttribute("data-started"), finished = row.getAttribute("data-finished");
      var end = finished ? +finished : Math.max(now, created);
      var from = started ? +started : end;
      times.push([created, from, end]);
      intervals.push([created, Math.max(end, created + 0.001)]);
    });
    var scale = timeScale(intervals, +section.getAttribute("data-gap-min"),
      +section.getAttribute("data-gap-width"));
    rows.forEach(function (row, i) {
      var t = times[i], x0 = scale(t[0]), x1 = scale(t[1]), x2 = scale(t[2]);
      var wait = row.querySelector(".wait"), bar = row.querySelector(".bar");
      wait.style.left = x0.toFixed(3) + "%";
      wait.style.width = Math.max(x1 - x0, 0).toFixed(3) + "%";
      bar.style.left = x1.toFixed(3) + "%";
      bar.style.width = Math.max(x2 - x1, 0.4).toFixed(3) + "%";
      var state = bar.getAttribute("class").replace("bar ", "");
      var track = row.querySelector(".track");
      track.setAttribute("title", track.getAttribute("data-target") + " " + row.getAttribute("data-execution") +
        ": " + state + ", waited " + duration(Math.max(t[1] - t[0], 0)) + ", ran " + duration(Math.max(t[2] - t[1], 0)));
      row.querySelector(".took").lastChild.textContent = duration(Math.max(t[2] - t[1], 0));
      row.querySelector(".state-name").textContent = state + ", ";
    });
    var first = Infinity, last = -Infinity;
    intervals.forEach(function (iv) { first = Math.min(first, iv[0]); last = Math.max(last, iv[1]); });
    var span = section.querySelector(".meta .span");
    if (span && rows.length) span.textContent = duration(Math.max(last - first, 0.001));
    var axis = section.querySelector(".row.breaks .track");
    if (axis) {
      axis.innerHTML = "";
      scale.breaks.forEach(function (g) {
        var gap = document.createElement("span");
        gap.className = "gap";
        gap.style.left = g.left.toFixed(3) + "%";
        gap.style.width = section.getAttribute("data-gap-width") + "%";
        gap.title = duration(g.seconds) + " with nothing running";
        gap.textContent = duration(g.seconds) + " idle";
        axis.appendChild(gap);
      });
    }
  }

  // Between updates the bars of unfinished executions grow with the clock (a
  // run whose tasks print nothing sends no update for minutes); the ticking
  // stops once the run has ended.
  var ticking = null;
  function tick() {
    var runBody = document.getElementById("run-body");
    var section = runBody && runBody.querySelector(".timeline[data-busy]");
    if (!section || runBody.getAttribute("data-active") !== "1") { stopTicking(); return; }
    if (!section.querySelector('.row[data-execution][data-finished=""]')) return;
    layoutTimeline(section, serverNow(section));
    count("data-ticks");
  }
  function startTicking() {
    if (ticking) return;
    ticking = setInterval(function () { window.requestAnimationFrame(tick); }, 250);
    document.documentElement.setAttribute("data-ticking", "1");
  }
  function stopTicking() {
    if (ticking) clearInterval(ticking);
    ticking = null;
    document.documentElement.setAttribute("data-ticking", "0");
  }

  window.CofluxTimeline = { patch: patchTimeline, start: startTicking };
})();

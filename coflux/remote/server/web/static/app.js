// Coflux web UI: live updates of a run page, and the buttons that call the API.
(function () {
  "use strict";

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) throw new Error(data.detail || ("HTTP " + response.status));
        return data;
      });
    });
  }

  // A message shown next to what it is about (``near``), scrolled into view.
  function say(text, isError, near) {
    var box = null;
    if (near) {
      box = near.querySelector(".form-message") || near.parentNode.querySelector("#step-message");
      if (!box) {
        box = document.createElement("div");
        box.className = "form-message";
        box.setAttribute("role", "alert");
        near.appendChild(box);
      }
    }
    box = box || document.getElementById("message");
    if (!box) return;
    box.textContent = text;
    box.className = (box.classList.contains("form-message") ? "form-message " : "") +
      "notice" + (isError ? " error" : "");
    box.hidden = false;
    if (box.scrollIntoView) box.scrollIntoView({ block: "nearest" });
  }

  // The environment selector in the header: go to the same page in another environment.
  document.querySelectorAll("select[data-navigate]").forEach(function (select) {
    select.addEventListener("change", function () {
      var url = new URL(window.location.href);
      url.searchParams.set("env", select.value);
      window.location.href = url.toString();
    });
  });

  // Sections of a fresh body replace those of the page only where they differ,
  // so an open <details>, a scroll position or a focused control survives an update.
  function apply(body, fresh) {
    body.setAttribute("data-active", fresh.getAttribute("data-active"));
    body.setAttribute("data-since", fresh.getAttribute("data-since"));
    body.setAttribute("data-known", fresh.getAttribute("data-known"));
    var old = body.children, next = fresh.children;
    if (old.length !== next.length) { body.innerHTML = fresh.innerHTML; return; }
    for (var i = 0; i < next.length; i++) {
      if (old[i].innerHTML === next[i].innerHTML) continue;
      if (old[i].classList.contains("grid") && old[i].children.length === next[i].children.length) {
        patchGrid(old[i], next[i]);
      } else {
        old[i].replaceWith(next[i].cloneNode(true));
      }
    }
  }
  function patchGrid(old, next) {
    for (var c = 0; c < next.children.length; c++) {
      var a = old.children[c].children, b = next.children[c].children;
      if (a.length !== b.length) { old.children[c].innerHTML = next.children[c].innerHTML; continue; }
      for (var j = 0; j < b.length; j++) {
        if (a[j].innerHTML === b[j].innerHTML) continue;
        // The log panel keeps what its form holds now; the rest is the server's.
        a[j].replaceWith(b[j].cloneNode(true));
      }
    }
    bindGraph();
  }

  // How many times the page was patched or redrawn (tests and curious people read it).
  function count(name) {
    var root = document.documentElement;
    root.setAttribute(name, String(+(root.getAttribute(name) || 0) + 1));
  }

  // Whether a moved step shows another state than its graph node does (a node
  // inside a group: than its timeline row).
  function movedFrom(body, s) {
    var node = body.querySelector('a.node[data-step="' + s.id + '"]:not(.group)');
    var extra = (s.reused ? ", reused" : "") + (s.attempts > 1 ? ", " + s.attempts + " attempts" : "");
    if (node) return node.querySelector("text.label").textContent !== s.state + extra;
    var row = body.querySelector('.timeline .row[data-execution="' + s.id + ":" + s.attempts + '"]');
    return !row || !row.querySelector(".bar").classList.contains(s.state);
  }

  // What moved, patched into the page in place: node states, group counts, the
  // run's state, new log lines. False when the server must draw the body (the
  // run's shape changed, a failure's traceback, the chosen step, the end).
  function patch(body, moved) {
    if (moved.structure || moved.failed || !moved.active) return false;
    var selected = body.querySelector("a.node.selected");
    var chosen = selected && selected.getAttribute("data-step");
    for (var k = 0; k < moved.steps.length; k++) {
      // Its executions and values: the server draws them.
      if (moved.steps[k].id === chosen && movedFrom(body, moved.steps[k])) return false;
    }
    for (var i = 0; i < moved.steps.length; i++) {
      var s = moved.steps[i];
      var node = body.querySelector('a.node[data-step="' + s.id + '"]:not(.group)');
      if (!node) continue;  // inside a group: its counts come below
      var extra = (s.reused ? ", reused" : "") + (s.attempts > 1 ? ", " + s.attempts + " attempts" : "");
      // Looks overlap, so a move may be one the page shows already.
      if (node.querySelector("text.label").textContent === s.state + extra) continue;
      node.querySelector("rect.bar").setAttribute("class", "bar " + s.state);
      node.querySelector("text.label").textContent = s.state + extra;
      node.setAttribute("aria-label", "Step " + s.id + " " + node.getAttribute("data-target") + ": " +
        s.state + extra);
    }
    moved.groups.forEach(function (g) {
      var node = body.querySelector('a.node.group[data-group="' + g.key + '"]');
      if (!node) return;
      var label = g.label.length > 32 ? g.label.slice(0, 31) + "…" : g.label;
      node.querySelector("rect.bar").setAttribute("class", "bar " + g.state);
      node.querySelector("text.label").textContent = label + " · expand";
      var summary = "Group of " + g.size + " calls of " + node.getAttribute("data-target") + ": " + g.label;
      node.setAttribute("data-summary", summary);
      node.querySelector("title").textContent = summary + ". Expand";
    });
    window.CofluxTimeline.patch(body, moved);
    if (moved.run_state) {
      var badge = body.querySelector("h1 .state");
      badge.textContent = moved.run_state;
      badge.setAttribute("class", "state " + moved.run_state);
    }
    var panel = document.getElementById("logs-panel");
    if (panel && !panel.hasAttribute("data-cut") && moved.logs.trim()) {
      var empty = panel.querySelector(".no-logs");
      if (empty) empty.remove();
      panel.querySelector(".logs").insertAdjacentHTML("beforeend", moved.logs);
    }
    if (panel) panel.setAttribute("data-last-log", String(moved.last_log));
    return true;
  }

  // A run page follows its run while anything in it is active: server-sent
  // events say when it moved; without them (a proxy that buffers), it polls.
  var body = document.getElementById("run-body");
  var live = null;
  if (body) {
    var timer = null, source = null, heard = false, fetching = false, again = false;
    var redraw = function () {
      var url = new URL(window.location.href);
      return fetch(body.getAttribute("data-live") + url.search, { cache: "no-store" })
        .then(function (response) { return response.text(); })
        .then(function (html) {
          var holder = document.createElement("div");
          holder.innerHTML = html;
          if (holder.firstElementChild) apply(body, holder.firstElementChild);
          count("data-redraws");
        });
    };
    var update = function () {
      var url = new URL(window.location.href);
      url.searchParams.set("moved_since", body.getAttribute("data-since"));
      url.searchParams.set("known", body.getAttribute("data-known"));
      var panel = document.getElementById("logs-panel");
      url.searchParams.set("after_log", panel ? panel.getAttribute("data-last-log") || "0" : "0");
      // A panel cut at its limit appends nothing: the server needn't read lines for it.
      if (!panel || panel.hasAttribute("data-cut")) url.searchParams.set("logs", "0");
      var asked = performance.now(), answered = 0;
      return fetch(body.getAttribute("data-changes") + url.search, { cache: "no-store" })
        .then(function (response) { return response.json(); })
        .then(function (moved) {
          answered = performance.now();
          var since = String(moved.now);
          if (patch(body, moved)) {
            body.setAttribute("data-since", since);
            // Where the last update's time went: fetching what moved, and applying it.
            var root = document.documentElement;
            root.setAttribute("data-update-fetch-ms", (answered - asked).toFixed(1));
            root.setAttribute("data-update-apply-ms", (performance.now() - answered).toFixed(1));
            count("data-patches");
            return null;
          }
          // Drawn again, the page knows the executions there are now.
          body.setAttribute("data-known", String(moved.executions));
          return redraw();
        });
    };
    var refresh = function (full) {
      if (fetching) { again = true; return; }
      fetching = true;
      (full ? redraw() : update())
        .catch(function () { /* the server may be restarting: the next event tries again */ })
        .finally(function () {
          fetching = false;
          if (again) { again = false; refresh(); }
        });
    };
    var poll = function () {
      if (body.getAttribute("data-active") !== "1") return;
      refresh();
      timer = setTimeout(poll, 1000);
    };
    var follow = function () {
      if (body.getAttribute("data-active") !== "1") return;
      window.CofluxTimeline.start();
      if (!window.EventSource || body.hasAttribute("data-no-events")) { poll(); return; }
      heard = false;
      source = new EventSource(body.getAttribute("data-events"));
      document.documentElement.setAttribute("data-live", "events");
      source.addEventListener("hello", function () { heard = true; });
      source.addEventListener("change", function () { heard = true; refresh(); });
      source.addEventListener("end", function () {
        source.close(); source = null; refresh(true);
        document.documentElement.setAttribute("data-live", "ended");
      });
      source.onerror = function () {
        if (source) source.close();
        source = null;
        document.documentElement.setAttribute("data-live", "polling");
        poll();
      };
      // Nothing in 3 s: a proxy holds the stream back. Poll instead.
      setTimeout(function () {
        if (!heard && source) {
          source.close(); source = null;
          document.documentElement.setAttribute("data-live", "polling");
          poll();
        }
      }, 3000);
    };
    follow();
    live = function () {
      body.setAttribute("data-active", "1");
      if (timer) clearTimeout(timer);
      if (source) { source.close(); source = null; }
      refresh(true);
      follow();
    };
    window.cofluxLive = live;
  }

  // The log filters fetch the log panel alone, and keep the choice in the URL.
  document.addEventListener("submit", function (event) {
    var form = event.target.closest("[data-log-filters]");
    if (!form) return;
    event.preventDefault();
    var panel = document.getElementById("logs-panel");
    var url = new URL(window.location.href);
    ["level", "log_step", "grep", "since"].forEach(function (name) { url.searchParams.delete(name); });
    new FormData(form).forEach(function (value, name) {
      if (value && name !== "env" && name !== "step") url.searchParams.set(name, value);
    });
    fetch(panel.getAttribute("data-logs") + url.search, { cache: "no-store" })
      .then(function (response) {
        return response.text().then(function (text) {
          if (!response.ok) throw new Error(JSON.parse(text).detail || ("HTTP " + response.status));
          return text;
        });
      })
      .then(function (html) {
        var holder = document.createElement("div");
        holder.innerHTML = html;
        panel.replaceWith(holder.firstElementChild);
        window.history.replaceState(null, "", url.toString());
      })
      .catch(function (error) { say(error.message, true, form); });
  });

  // The graph: zoom with the buttons, + and −, or the wheel; pan by dragging or with the arrows.
  function bindGraph() {
    var view = document.querySelector(".graph-view");
    if (!view || view.getAttribute("data-bound")) return;
    view.setAttribute("data-bound", "1");
    var svg = view.querySelector("svg");
    var width = +svg.getAttribute("data-width"), height = +svg.getAttribute("data-height");
    // Fitted to the view at first (a phone sees the whole graph), down to half
    // size, where names stay readable; after that, the reader's own zoom.
    var stored = sessionStorage.getItem("coflux-zoom");
    var scale = stored ? +stored : Math.max(Math.min(1, view.clientWidth / width), 0.5);
    var draw = function () {
      svg.setAttribute("width", String(Math.max(width * scale, 40)));
      svg.setAttribute("height", String(Math.max(height * scale, 40)));
      view.setAttribute("data-scale", scale.toFixed(2));
      sessionStorage.setItem("coflux-zoom", String(scale));
    };
    var zoom = function (factor) { scale = Math.min(Math.max(scale * factor, 0.1), 4); draw(); };
    draw();
    document.querySelectorAll("[data-zoom]").forEach(function (button) {
      button.addEventListener("click", function () {
        var how = button.getAttribute("data-zoom");
        if (how === "in") zoom(1.25);
        else if (how === "out") zoom(0.8);
        else { scale = Math.min(1, view.clientWidth / width); draw(); }
      });
    });
    view.addEventListener("wheel", function (event) {
      if (!event.ctrlKey && !event.metaKey) return;
      event.preventDefault();
      zoom(event.deltaY < 0 ? 1.1 : 0.9);
    }, { passive: false });
    view.addEventListener("keydown", function (event) {
      var step = 60;
      if (event.key === "+" || event.key === "=") zoom(1.25);
      else if (event.key === "-") zoom(0.8);
      else if (event.target !== view) return;
      else if (event.key === "ArrowRight") view.scrollLeft += step;
      else if (event.key === "ArrowLeft") view.scrollLeft -= step;
      else if (event.key === "ArrowDown") view.scrollTop += step;
      else if (event.key === "ArrowUp") view.scrollTop -= step;
      else return;
      event.preventDefault();
    });
    var drag = null;
    view.addEventListener("pointerdown", function (event) {
      if (event.target.closest("a")) return;
      drag = { x: event.clientX, y: event.clientY, left: view.scrollLeft, top: view.scrollTop };
      view.classList.add("dragging");
    });
    window.addEventListener("pointermove", function (event) {
      if (!drag) return;
      view.scrollLeft = drag.left - (event.clientX - drag.x);
      view.scrollTop = drag.top - (event.clientY - drag.y);
    });
    window.addEventListener("pointerup", function () { drag = null; view.classList.remove("dragging"); });
  }
  bindGraph();

  // The timeline's zoom widens its rows; they scroll sideways.
  document.addEventListener("input", function (event) {
    if (!event.target.matches("[data-timeline-zoom]")) return;
    var rows = event.target.closest(".timeline").querySelector(".timeline-rows");
    rows.style.width = (event.target.value * 100) + "%";
  });

  // The re-run button says why it is off when no agent serves the chosen environment.
  document.addEventListener("change", function (event) {
    if (event.target.id !== "rerun-env") return;
    var option = event.target.selectedOptions[0];
    var button = document.querySelector('[data-action="rerun"]');
    var reason = document.getElementById("rerun-reason");
    var none = option.getAttribute("data-agents") !== "1";
    button.disabled = none;
    reason.hidden = !none;
    reason.querySelector(".env-name").textContent = option.value;
  });

  // A launch form's arguments, one typed field per parameter; null (with each
  // problem shown under its field) when one doesn't parse. Trailing fields left
  // at their default are left out, so the run shows them as defaults.
  function collect(form) {
    var values = [], ok = true, fields = form.querySelectorAll(".field");
    fields.forEach(function (field) {
      var kind = field.getAttribute("data-kind");
      var input = field.querySelector("input, textarea, select");
      var error = field.querySelector(".field-error");
      var text = kind === "bool" ? null : input.value.trim();
      var problem = null, value;
      if (kind === "bool") value = input.checked;
      else if (text === "") {
        if (field.getAttribute("data-required") === "1") problem = "required";
        else value = undefined;
      } else if (kind === "int") {
        if (!/^-?\d+$/.test(text)) problem = "a whole number, e.g. 42";
        else value = parseInt(text, 10);
      } else if (kind === "float") {
        value = Number(text);
        if (!isFinite(value)) problem = "a number, e.g. 0.5";
      } else if (kind === "str") value = input.value;
      else {
        try { value = JSON.parse(text); }
        catch (e) { problem = "JSON, e.g. [1, 2] or {\"a\": 1}: " + e.message; }
      }
      error.textContent = problem ? "Expected " + problem + "." : "";
      error.hidden = !problem;
      input.setAttribute("aria-invalid", problem ? "true" : "false");
      if (problem) ok = false;
      values.push({ value: value, field: field });
    });
    if (!ok) { form.querySelector("[aria-invalid=true]").focus(); return null; }
    // Drop trailing arguments left at their default (or empty).
    while (values.length) {
      var last = values[values.length - 1];
      var fallback = last.field.getAttribute("data-default");
      if (last.value === undefined ||
          (fallback !== null && JSON.stringify(last.value) === fallback)) values.pop();
      else break;
    }
    for (var i = 0; i < values.length; i++) {
      if (values[i].value === undefined) {
        var error = values[i].field.querySelector(".field-error");
        error.textContent = "Give a value: a later argument is set, and this default can't be sent from here.";
        error.hidden = false;
        values[i].field.querySelector("input, textarea").focus();
        return null;
      }
    }
    var out = [];
    values.forEach(function (v) {
      // *args: its JSON list is spread into the arguments.
      if (v.field.hasAttribute("data-variadic") && Array.isArray(v.value)) out.push.apply(out, v.value);
      else out.push(v.value);
    });
    return out;
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-action]");
    if (!target) return;
    var action = target.getAttribute("data-action");
    if (action === "load-value") {
      var holder = target.closest("[data-src]");
      target.disabled = true;
      target.textContent = "Loading…";
      fetch(holder.getAttribute("data-src"), { cache: "no-store" })
        .then(function (response) { return response.text(); })
        .then(function (html) { holder.outerHTML = html; })
        .catch(function (error) { target.textContent = "Could not load: " + error.message; });
    } else if (action === "rerun") {
      var environment = document.getElementById("rerun-env").value;
      post(target.getAttribute("data-url"), { environment: environment })
        .then(function (data) {
          say("Re-running as " + data.execution_id + " in " + environment, false, target.parentNode);
          var url = new URL(window.location.href);
          url.searchParams.set("env", environment);
          window.history.replaceState(null, "", url.toString());
          var current = document.querySelector("select[data-navigate]");
          if (current) current.value = environment;
          if (window.cofluxLive) window.cofluxLive();
        })
        .catch(function (error) { say(error.message, true, target.parentNode); });
    } else if (action === "cancel") {
      post(target.getAttribute("data-url"), { step: null })
        .then(function () { say("Cancelled"); if (window.cofluxLive) window.cofluxLive(); })
        .catch(function (error) { say(error.message, true); });
    } else if (action === "submit") {
      var form = target.closest("form");
      var args = collect(form);
      if (args === null) return;
      post(form.getAttribute("data-url"), {
        environment: form.getAttribute("data-env"),
        repository: form.getAttribute("data-repository"),
        target: form.getAttribute("data-target"),
        arguments: args.map(function (value) {
          return { format: "json", size: JSON.stringify(value).length, data: value };
        }),
      })
        .then(function (data) { window.location.href = data.url; })
        .catch(function (error) { say(error.message, true, form); });
    }
  });
})();

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

  function say(text, isError) {
    var box = document.getElementById("message");
    if (!box) return;
    box.textContent = text;
    box.className = "notice" + (isError ? " error" : "");
    box.hidden = false;
  }

  // The environment selector in the header: go to the same page in another environment.
  document.querySelectorAll("select[data-navigate]").forEach(function (select) {
    select.addEventListener("change", function () {
      var url = new URL(window.location.href);
      url.searchParams.set("env", select.value);
      window.location.href = url.toString();
    });
  });

  // A run page refreshes its body while anything in it is still active.
  var body = document.getElementById("run-body");
  if (body) {
    var timer = null;
    var poll = function () {
      if (body.getAttribute("data-active") !== "1") return;
      fetch(body.getAttribute("data-live") + window.location.search, { cache: "no-store" })
        .then(function (response) { return response.text(); })
        .then(function (html) {
          var holder = document.createElement("div");
          holder.innerHTML = html;
          var fresh = holder.firstElementChild;
          if (fresh) {
            body.innerHTML = fresh.innerHTML;
            body.setAttribute("data-active", fresh.getAttribute("data-active"));
          }
        })
        .catch(function () { /* the server may be restarting: try again */ })
        .finally(function () { timer = setTimeout(poll, 700); });
    };
    timer = setTimeout(poll, 700);
    window.cofluxLive = function () {
      body.setAttribute("data-active", "1");
      if (timer) clearTimeout(timer);
      poll();
    };
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-action]");
    if (!target) return;
    var action = target.getAttribute("data-action");
    if (action === "rerun") {
      var environment = document.getElementById("rerun-env").value;
      post(target.getAttribute("data-url"), { environment: environment })
        .then(function (data) {
          say("Re-running as " + data.execution_id + " in " + environment);
          var url = new URL(window.location.href);
          url.searchParams.set("env", environment);
          window.history.replaceState(null, "", url.toString());
          var current = document.querySelector("select[data-navigate]");
          if (current) current.value = environment;
          if (window.cofluxLive) window.cofluxLive();
        })
        .catch(function (error) { say(error.message, true); });
    } else if (action === "cancel") {
      post(target.getAttribute("data-url"), { step: null })
        .then(function () { say("Cancelled"); if (window.cofluxLive) window.cofluxLive(); })
        .catch(function (error) { say(error.message, true); });
    } else if (action === "submit") {
      var form = target.closest("form");
      var text = form.querySelector("textarea").value.trim() || "[]";
      var args;
      try {
        args = JSON.parse(text);
        if (!Array.isArray(args)) throw new Error("arguments must be a JSON list, e.g. [1, \"a\"]");
      } catch (error) {
        say("Invalid arguments: " + error.message, true);
        return;
      }
      post(form.getAttribute("data-url"), {
        environment: form.getAttribute("data-env"),
        repository: form.getAttribute("data-repository"),
        target: form.getAttribute("data-target"),
        arguments: args.map(function (value) {
          return { format: "json", size: JSON.stringify(value).length, data: value };
        }),
      })
        .then(function (data) { window.location.href = data.url; })
        .catch(function (error) { say(error.message, true); });
    }
  });
})();

// synkronus portal: small enhancements on top of pages that work without script.
// Dates in the viewer's time zone, busy states, upload and download progress.
(function () {
  "use strict";

  var dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

  // The server writes every instant in UTC inside <time datetime>; show it locally.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d.getTime())) { return; }
      t.title = t.textContent;
      t.textContent = dateFormat.format(d);
      t.setAttribute("data-local", "");
    });
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    root.querySelectorAll(".tz").forEach(function (el) { el.textContent = zone ? "your time zone (" + zone + ")" : "your time zone"; });
  }

  function human(n) {
    var units = ["B", "KiB", "MiB", "GiB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  function busy(form, on) {
    form.querySelectorAll("button").forEach(function (b) { b.disabled = on; });
    if (on) { form.setAttribute("aria-busy", "true"); } else { form.removeAttribute("aria-busy"); }
  }

  function fileName(disposition) {
    var m = /filename\*=UTF-8''([^;]+)/i.exec(disposition || "") || /filename="?([^";]+)"?/i.exec(disposition || "");
    return m ? decodeURIComponent(m[1]) : "";
  }

  // An export is fetched by script so that the page can show how much has arrived; the
  // form still downloads directly without script.
  function download(form) {
    var status = form.querySelector(".download-status");
    var bar = form.querySelector(".download-progress");
    var url = form.action + "?" + new URLSearchParams(new FormData(form)).toString();
    busy(form, true);
    status.classList.remove("error");
    status.textContent = "Preparing the export…";
    bar.hidden = false;
    bar.removeAttribute("value");
    fetch(url, { credentials: "same-origin" }).then(function (res) {
      var type = res.headers.get("Content-Type") || "";
      if (res.redirected && type.indexOf("text/html") === 0) {
        window.location.assign(res.url); // the session ended: the sign-in form
        return null;
      }
      if (!res.ok || type.indexOf("text/html") === 0) {
        return res.text().then(function (text) {
          var doc = new DOMParser().parseFromString(text, "text/html");
          var msg = doc.querySelector(".error-message, .problem-detail");
          throw new Error(msg ? msg.textContent.trim() : "The export failed (" + res.status + ").");
        });
      }
      var total = Number(res.headers.get("Content-Length")) || 0;
      var name = fileName(res.headers.get("Content-Disposition")) || "export.zip";
      var reader = res.body.getReader(), chunks = [], got = 0;
      if (total) { bar.max = total; }
      function pump() {
        return reader.read().then(function (r) {
          if (r.done) { return; }
          chunks.push(r.value);
          got += r.value.length;
          if (total) { bar.value = got; }
          status.textContent = "Received " + human(got) + (total ? " of " + human(total) : "") + "…";
          return pump();
        });
      }
      return pump().then(function () {
        var a = document.createElement("a");
        a.href = URL.createObjectURL(new Blob(chunks, { type: type || "application/octet-stream" }));
        a.download = name;
        document.body.appendChild(a);
        a.click();
        setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 10000);
        status.textContent = "Downloaded " + name + " (" + human(got) + ").";
      });
    }).catch(function (err) {
      status.textContent = err.message;
      status.classList.add("error");
    }).finally(function () {
      busy(form, false);
      bar.hidden = true;
    });
  }

  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (form.hasAttribute("data-download")) {
      e.preventDefault();
      download(form);
    } else if (!window.htmx) {
      form.setAttribute("aria-busy", "true"); // htmx marks its own requests
    }
  });

  document.addEventListener("htmx:beforeRequest", function (e) {
    if (e.target.tagName === "FORM") { busy(e.target, true); }
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    if (e.target.tagName === "FORM" && document.contains(e.target)) { busy(e.target, false); }
  });
  document.addEventListener("htmx:xhr:progress", function (e) {
    var bar = e.target.querySelector && e.target.querySelector(".upload-progress");
    if (bar && e.detail.lengthComputable) {
      bar.hidden = false;
      bar.value = Math.round(100 * e.detail.loaded / e.detail.total);
    }
  });
  // After a page replaced in place, move focus to what changed, as a page load would.
  document.addEventListener("htmx:afterSettle", function (e) {
    if (!e.detail.boosted) { return; }
    var target = document.querySelector("main [role=alert]") || document.getElementById("content");
    if (target) {
      if (!target.hasAttribute("tabindex")) { target.setAttribute("tabindex", "-1"); }
      target.focus({ preventScroll: true });
    }
  });
  document.addEventListener("htmx:load", function (e) { localTimes(e.target); });
  document.addEventListener("DOMContentLoaded", function () { localTimes(document.body); });
  if (document.readyState !== "loading") { localTimes(document.body); }
})();

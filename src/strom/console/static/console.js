// strom console: live regions and confirmations. No framework, no build step.
// Each element with data-live="URL" is replaced every few seconds by a fresh fragment.
(function () {
  "use strict";
  var footer = document.querySelector("footer");
  var match = footer && /every ([0-9.]+)s/.exec(footer.textContent);
  var interval = Math.max(500, (match ? parseFloat(match[1]) : 5) * 1000);

  function refresh(region) {
    if (document.hidden) { return; }
    var focused = document.activeElement;
    if (focused && region.contains(focused) && focused.tagName === "INPUT") { return; }
    fetch(region.getAttribute("data-live"), {credentials: "same-origin",
                                             headers: {"Accept": "text/html"}})
      .then(function (response) {
        if (response.redirected && /\/login/.test(response.url)) {
          window.location.reload();
          return null;
        }
        return response.text();
      })
      .then(function (text) {
        if (text !== null && text !== undefined) {
          region.innerHTML = text;
          region.setAttribute("data-updated", String(Date.now()));
        }
      })
      .catch(function () { region.classList.add("stale"); });
  }

  function start() {
    var regions = document.querySelectorAll("[data-live]");
    Array.prototype.forEach.call(regions, function (region) {
      setInterval(function () { refresh(region); }, interval);
    });
    document.addEventListener("submit", function (event) {
      var form = event.target;
      var question = form.getAttribute && form.getAttribute("data-confirm");
      if (question && !window.confirm(question)) { event.preventDefault(); }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());

/* Coupons console: live job progress. The page works without this script (it then
   refreshes itself); with it, the progress bar and counts update in place once a second,
   and the page reloads when the job finishes so its buttons match its new state, or when
   the session has ended so that the sign-in page says so. */
(function () {
  "use strict";
  var bar = document.querySelector("[role=progressbar][data-progress-url]");
  if (!bar) { return; }
  var url = bar.getAttribute("data-progress-url");
  var fill = bar.querySelector("span");
  var finished = ["SUCCEEDED", "FAILED", "CANCELLED"];

  function show(job) {
    var total = job.total || 0;
    var pct = total ? Math.floor((100 * job.processed) / total) : (finished.indexOf(job.state) >= 0 ? 100 : 0);
    bar.setAttribute("aria-valuenow", String(pct));
    bar.setAttribute("aria-valuetext", pct + "% (" + job.processed + " of " + total + ")");
    if (fill) { fill.style.width = pct + "%"; }
    document.querySelectorAll("[data-field]").forEach(function (el) {
      var name = el.getAttribute("data-field");
      if (Object.prototype.hasOwnProperty.call(job, name)) { el.textContent = String(job[name]); }
    });
    return finished.indexOf(job.state) >= 0;
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        // Sent to the sign-in page (the session ended, or the person was disabled): the
        // page reloads into it, rather than showing frozen progress and stale buttons.
        if (r.redirected) { return null; }
        if (!r.ok) { throw new Error(String(r.status)); }
        return r.json();
      })
      .then(function (job) {
        if (job === null || show(job)) { window.location.reload(); } else { window.setTimeout(poll, 1000); }
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }

  var initial = bar.getAttribute("data-state");
  if (finished.indexOf(initial) < 0) { window.setTimeout(poll, 500); }
})();

// Times in the reader's time zone: each <time class="local" datetime="ISO 8601"> the server
// rendered in UTC (app/services/display.py `when`, "2025-03-01 08:00") is rewritten as the
// same text in the browser's own zone, its title naming the zone. `localText` is that
// rule's one copy here; tests/web/test_reading_browser.py checks it against the filter.
// Without JavaScript the page keeps UTC and says so.
(function () {
  function pad(number) {
    return String(number).padStart(2, "0");
  }

  function localText(iso, seconds) {
    const moment = new Date(iso);
    const text = moment.getFullYear() + "-" + pad(moment.getMonth() + 1) + "-" +
      pad(moment.getDate()) + " " + pad(moment.getHours()) + ":" + pad(moment.getMinutes());
    return seconds ? text + ":" + pad(moment.getSeconds()) : text;
  }

  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";

  function localise(root) {
    (root || document).querySelectorAll("time.local").forEach((element) => {
      const iso = element.getAttribute("datetime");
      if (!iso || element.dataset.localised === iso) return;
      element.textContent = localText(iso, element.hasAttribute("data-seconds"));
      element.title = zone;
      element.dataset.localised = iso;
    });
    (root || document).querySelectorAll(".time-zone").forEach((element) => {
      element.textContent = "in your browser's time zone, " + zone;
    });
  }

  window.triageTimes = { localise, localText, zone };
  localise(document);
})();

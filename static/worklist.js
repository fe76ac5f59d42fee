// The worklist page, live: its rows are re-fetched every second as the server renders them
// (GET /worklist/rows, the same template as the page), so a study stored by another client
// or by the PACS appears without a reload, and there is no second copy of any display rule
// here. The status buttons PATCH the API instead of posting their form. Without JavaScript
// the page and its buttons work as plain HTML.
(function () {
  const live = document.getElementById("worklist-live");
  const problem = document.getElementById("worklist-error");
  const PERIOD_MS = 1000;
  let last = null;  // the fragment as last fetched
  let asked = 0;  // refreshes asked for: an older answer never overwrites a newer one
  let timer = null;

  function say(message) {
    problem.textContent = message;
    problem.hidden = !message;
  }

  // The view the page shows (filters, page): the rows fragment takes the same query.
  function query() {
    const rows = document.getElementById("worklist-rows");
    return rows && rows.dataset.query ? "?" + rows.dataset.query : "";
  }

  async function refresh() {
    const number = ++asked;
    const response = await fetch("/worklist/rows" + query(), { headers: { Accept: "text/html" } });
    if (number !== asked) return;
    if (response.status === 401) {
      say("Your session has ended: reload the page to log in again.");
      return;
    }
    if (!response.ok) {
      say("The worklist could not be updated (the server answered " + response.status + "); retrying.");
      return;
    }
    const html = await response.text();
    if (number !== asked) return;
    say("");
    if (html !== last) {  // untouched while nothing changed: a click is never lost
      live.innerHTML = html;
      last = html;
    }
  }

  // One request at a time, the next a period after the last answer; paused while hidden.
  async function poll() {
    timer = null;
    if (!document.hidden) {
      try {
        await refresh();
      } catch (err) {
        say("The server could not be reached; retrying.");
      }
    }
    timer = setTimeout(poll, PERIOD_MS);
  }

  async function setStatus(form, status) {
    const id = form.closest("tr").dataset.entry;
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const response = await fetch("/worklist/entries/" + encodeURIComponent(id), {
        method: "PATCH",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ status }),
      });
      if (!response.ok) {
        const data = await response.json().catch(() => ({}));
        throw new Error(data.detail || "The status could not be changed.");
      }
      say("");
      await refresh();  // show the change, and who made it, at once
    } catch (err) {
      say(err instanceof TypeError ? "The server could not be reached. Try again." : err.message);
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  live.addEventListener("submit", (event) => {
    const form = event.target.closest(".status-form");
    if (!form || !event.submitter) return;
    event.preventDefault();
    setStatus(form, event.submitter.value);
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer !== null) {
      clearTimeout(timer);
      poll();
    }
  });
  timer = setTimeout(poll, PERIOD_MS);
})();

// The worklist page, live: its rows are re-fetched every second as the server renders them
// (GET /worklist/rows, the same template as the page), so a study stored by another client
// or by the PACS appears without a reload, and there is no second copy of any display rule
// here. The status and read buttons call the API instead of posting their forms. The
// keyboard: j / k move between studies (the row keeps its focus across refreshes), Enter
// opens the focused study, p / n / i record its read. Without JavaScript the page and its
// buttons work as plain HTML.
(function () {
  const live = document.getElementById("worklist-live");
  const problem = document.getElementById("worklist-error");
  const reading = window.triageReading;
  const PERIOD_MS = 1000;
  let last = null;  // the fragment as last fetched
  let asked = 0;  // refreshes asked for: an older answer never overwrites a newer one
  let timer = null;
  let selected = null;  // the entry id of the study the keyboard is on

  function say(message) {
    problem.textContent = message;
    problem.hidden = !message;
  }

  // The view the page shows (filters, order, page): the rows fragment takes the same query.
  function query() {
    const rows = document.getElementById("worklist-rows");
    return rows && rows.dataset.query ? "?" + rows.dataset.query : "";
  }

  function rows() {
    return Array.from(live.querySelectorAll("tr.entry"));
  }

  // One row is the list's tab stop (roving tabindex): the selected one, else the first.
  function select(row, focus) {
    rows().forEach((each) => {
      each.classList.toggle("selected", each === row);
      each.tabIndex = each === row ? 0 : -1;
    });
    if (!row) return;
    selected = row.dataset.entry;
    if (focus) {
      row.focus();
      row.scrollIntoView({ block: "nearest" });
    }
  }

  function restore(focus) {
    const row = selected && document.getElementById("entry-" + selected);
    select(row || rows()[0] || null, focus && Boolean(row));
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
      const focused = live.contains(document.activeElement);
      live.innerHTML = html;
      last = html;
      window.triageTimes.localise(live);
      restore(focused);
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

  // A status or read button's call; the buttons wait for it, the row shows it at once.
  async function send(form, call) {
    const row = form.closest("tr");
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await call(row.dataset.entry);
      say("");
      select(row, false);
      await refresh();  // show the change, and who made it, at once
    } catch (err) {
      say(err instanceof TypeError ? "The server could not be reached. Try again." : err.message);
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  async function patchStatus(id, status) {
    const response = await fetch("/worklist/entries/" + encodeURIComponent(id), {
      method: "PATCH",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ status }),
    });
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      throw new Error(data.detail || "The status could not be changed.");
    }
  }

  live.addEventListener("submit", (event) => {
    if (!event.submitter) return;
    const value = event.submitter.value;
    if (event.target.closest(".status-form")) {
      event.preventDefault();
      send(event.target, (id) => patchStatus(id, value));
    } else if (event.target.closest(".read-form")) {
      event.preventDefault();
      send(event.target, (id) => reading.putRead(id, value));
    }
  });
  live.addEventListener("focusin", (event) => {
    const row = event.target.closest("tr.entry");
    if (row && row.dataset.entry !== selected) select(row, false);
  });

  document.addEventListener("keydown", (event) => {
    if (!reading.isShortcut(event)) return;
    const all = rows();
    const current = selected && document.getElementById("entry-" + selected);
    const at = current ? all.indexOf(current) : -1;
    if (event.key === "j" || event.key === "k") {
      // The first key press takes the keyboard to the list, on the study it was on.
      const into = current && !live.contains(document.activeElement);
      const step = event.key === "j" ? 1 : -1;
      const next = into ? at : Math.min(Math.max(at + step, 0), all.length - 1);
      if (all[next]) select(all[next], true);
      event.preventDefault();
    } else if (event.key === "Enter" && current && document.activeElement === current) {
      window.location.assign(current.dataset.open);
      event.preventDefault();
    } else if (current && live.contains(document.activeElement)) {
      const button = reading.readButton(current, event.key);
      if (button) {
        send(button.form, (id) => reading.putRead(id, button.value));
        event.preventDefault();
      }
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer !== null) {
      clearTimeout(timer);
      poll();
    }
  });
  // The study view's way back: this list, with its filters, order and page.
  window.sessionStorage.setItem("triage.worklist", window.location.pathname + window.location.search);
  restore(false);
  timer = setTimeout(poll, PERIOD_MS);
  document.documentElement.dataset.keys = "ready";  // the shortcuts listen from now on
})();

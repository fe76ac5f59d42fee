// A study opened for reading: p / n / i record the read (the same API call as the list),
// h shows or hides the heatmap over each film (drawn by the server when first asked), Esc
// goes back to the list as it was left. Without JavaScript the read buttons post their form and there is
// no heatmap.
(function () {
  const reading = window.triageReading;
  const form = document.querySelector("#read form.read-form");
  const value = document.getElementById("read-value");
  const problem = document.getElementById("study-error");
  // Back to the list as the reader left it: its filters, order and page (worklist.js keeps
  // its address for the tab).
  const back = document.getElementById("back");
  const list = window.sessionStorage.getItem("triage.worklist");
  if (list && list.startsWith("/worklist")) back.setAttribute("href", list);

  function say(message) {
    problem.textContent = message;
    problem.hidden = !message;
  }

  async function read(button) {
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const entry = await reading.putRead(form.dataset.entry, button.value);
      buttons.forEach((b) => {
        const chosen = b === button;
        b.classList.toggle("current", chosen);
        b.setAttribute("aria-pressed", chosen ? "true" : "false");
      });
      const words = button.firstChild.textContent.trim().toLowerCase();
      value.textContent = "Read " + words + " by " + entry.read.read_by + ", ";
      const time = document.createElement("time");
      time.className = "local";
      time.setAttribute("datetime", entry.read.read_at);
      value.appendChild(time);
      value.appendChild(document.createTextNode("."));
      window.triageTimes.localise(value);
      say("");
    } catch (err) {
      say(err instanceof TypeError ? "The server could not be reached. Try again." : err.message);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  async function toggle(figure) {
    const overlay = figure.querySelector("img.film-overlay");
    const button = figure.querySelector("button.heatmap-toggle");
    const note = figure.querySelector(".heatmap-note");
    if (!overlay) return;
    const show = overlay.hidden;
    if (show && !overlay.src) {
      note.textContent = "Drawing the heatmap…";
      const response = await fetch(overlay.dataset.src, { headers: { Accept: "image/png" } });
      if (!response.ok) {
        const data = await response.json().catch(() => ({}));
        note.textContent = data.detail || "No heatmap for this film.";
        return;
      }
      note.textContent = response.headers.get("X-Heatmap-Warning") || "";
      overlay.src = URL.createObjectURL(await response.blob());
    }
    overlay.hidden = !show;
    button.setAttribute("aria-pressed", show ? "true" : "false");
    button.textContent = show ? "Hide heatmap (h)" : "Show heatmap (h)";
  }

  const figures = Array.from(document.querySelectorAll("figure.film-figure"));
  figures.forEach((figure) => {
    const button = figure.querySelector("button.heatmap-toggle");
    if (!button) return;
    button.hidden = false;
    button.addEventListener("click", () => toggle(figure));
  });

  form.addEventListener("submit", (event) => {
    if (!event.submitter) return;
    event.preventDefault();
    read(event.submitter);
  });

  document.addEventListener("keydown", (event) => {
    if (!reading.isShortcut(event)) return;
    const button = reading.readButton(form, event.key);
    if (button) {
      read(button);
      event.preventDefault();
    } else if (event.key === "h") {
      figures.forEach(toggle);
      event.preventDefault();
    } else if (event.key === "Escape") {
      window.location.assign(back.getAttribute("href"));
      event.preventDefault();
    }
  });
  document.documentElement.dataset.keys = "ready";  // the shortcuts listen from now on
})();

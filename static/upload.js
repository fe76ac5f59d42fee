// Progressive enhancement of the upload form: preview, drag and drop, and JSON calls without
// leaving the page. One film goes to /predict; several (or a folder) go to /predict/batch a
// few at a time, with a progress bar, into a worklist sorted by triage score, with a CSV of
// exactly what the table shows. Without JavaScript the form posts to / instead.
(function () {
  const form = document.getElementById("upload-form");
  const input = document.getElementById("file");
  const folder = document.getElementById("folder");
  const zone = document.getElementById("drop-zone");
  const preview = document.getElementById("preview");
  const button = document.getElementById("submit");
  const result = document.getElementById("result");
  const outcome = document.getElementById("outcome");
  const error = document.getElementById("error");
  const worklist = document.getElementById("worklist");
  const progress = document.getElementById("progress");
  const progressText = document.getElementById("progress-text");
  const tbody = document.querySelector("#worklist-table tbody");
  const csvLink = document.getElementById("csv");
  const heatSwitch = document.getElementById("show-heatmap");
  const GROUP = 4; // files per request: small enough for a smooth progress bar
  let shownFile = null; // the film the result shows: the heatmap switch asks for its map

  function chosenFiles() {
    return [...input.files, ...(folder ? folder.files : [])];
  }

  function showPreview(files) {
    if (preview.src) URL.revokeObjectURL(preview.src);
    const count = document.getElementById("chosen");
    if (files.length === 1 && files[0].type.startsWith("image/")) {
      preview.src = URL.createObjectURL(files[0]);
      preview.hidden = false;
    } else {
      preview.hidden = true;
    }
    count.textContent = files.length > 1 ? `${files.length} files chosen` : (files[0] ? files[0].name : "");
    zone.classList.toggle("has-image", files.length > 0);
  }

  input.addEventListener("change", () => showPreview(chosenFiles()));
  const opacity = document.getElementById("opacity");
  opacity.addEventListener("input", () => {
    document.getElementById("heat-overlay").style.opacity = opacity.value / 100;
  });
  if (folder) folder.addEventListener("change", () => showPreview(chosenFiles()));
  ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  }));
  ["dragleave", "drop"].forEach((type) => zone.addEventListener(type, () => {
    zone.classList.remove("dragging");
  }));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      if (folder) folder.value = "";
      showPreview(chosenFiles());
    }
  });

  function showError(message) {
    result.hidden = false;
    outcome.hidden = true;
    error.hidden = false;
    error.textContent = message;
  }

  // Each reason as its sentence, the code on hover (templates/index.html does the same).
  function reasonSpans(codes, sentences) {
    return (codes || []).flatMap((code, i) => {
      const span = document.createElement("span");
      span.className = "reason";
      span.dataset.code = code;
      span.title = "reason code: " + code;
      span.textContent = sentences[i] || code;
      return [span, " "];
    });
  }

  // Warnings in plain words (app/services/plain.py), the technical text on hover.
  function noteSpans(notes) {
    return (notes || []).flatMap((note) => {
      const span = document.createElement("span");
      span.className = "note-text";
      if (note.technical) span.title = note.technical;
      span.textContent = note.text;
      return [span, " "];
    });
  }

  // The API's own words and numbers: display rules live in one place, on the server
  // (app/services/triage.py). The decision colours the badge, the score and the bar; the
  // bar's mark is the operating point, 50 for every model. A film the model cannot judge
  // (needs_human_look) has no score and no probability: the page shows the reasons instead.
  function showResult(data, filename) {
    worklist.hidden = true;
    const look = data.decision === "needs_human_look";
    document.getElementById("file-name").textContent = filename || "";
    document.getElementById("scored").hidden = look;
    document.getElementById("look-note").hidden = !look;
    document.getElementById("reasons").replaceChildren(
      ...reasonSpans(data.reasons, data.reasons_text || []));
    const decision = document.getElementById("decision");
    decision.textContent = data.decision_text;
    decision.className = "decision " + data.decision;
    const score = document.getElementById("triage-score");
    score.textContent = data.triage_score_text || "";
    score.className = data.decision;
    const fill = document.getElementById("bar-fill");
    fill.setAttribute("width", ((data.triage_score || 0) * 100).toFixed(1));
    fill.setAttribute("class", "bar-fill " + data.decision);
    document.getElementById("probability").textContent = data.probability_text || "";
    document.getElementById("threshold").textContent = (data.threshold * 100).toFixed(1) + "%";
    document.getElementById("operating-point").textContent = data.operating_point.text;
    document.getElementById("probability-note").textContent = data.probability_note +
      ` The triage score is this probability rescaled so that the model's operating point ` +
      `(${(data.threshold * 100).toFixed(1)}%) sits at 50, the same for every model.`;
    document.getElementById("image-info").textContent =
      `${data.image.width}×${data.image.height} ${data.image.format} (${data.image.mode})`;
    document.getElementById("elapsed").textContent = Math.round(data.elapsed_ms) + " ms";
    const notes = data.warnings_text || [];
    const warnings = document.getElementById("warnings");
    warnings.replaceChildren(...noteSpans(notes));
    warnings.hidden = notes.length === 0;
    const technical = notes.filter((n) => n.technical).map((n) => {
      const item = document.createElement("li");
      item.textContent = n.technical;
      return item;
    });
    document.getElementById("technical-notes").replaceChildren(...technical);
    const d = data.image.dicom;
    document.getElementById("dicom-facts").textContent = d ? `DICOM: ${d.modality}` +
      (d.view_position ? `, ${d.view_position}` : "") + (d.body_part ? `, ${d.body_part}` : "") +
      (d.study_date ? `, study date ${d.study_date}` : "") + `; ${d.window}.` : "";
    document.getElementById("technical").hidden = !d && technical.length === 0;
    document.getElementById("heatmap-switch").hidden = look;
    heatSwitch.checked = Boolean(data.heatmap);
    document.getElementById("heatmap-status").textContent = "";
    showHeatmap(data);
    result.hidden = false;
    error.hidden = true;
    outcome.hidden = false;
  }

  // The heatmap of the film shown, or none (hidden).
  function showHeatmap(data) {
    const heatmap = document.getElementById("heatmap");
    heatmap.hidden = !data.heatmap;
    if (data.heatmap) {
      document.getElementById("heat-film").src = data.heatmap.film;
      document.getElementById("heat-overlay").src = data.heatmap.overlay;
      document.getElementById("heat-note").textContent = data.heatmap.note;
      const heatWarning = document.getElementById("heat-warning");
      heatWarning.textContent = data.heatmap.warning || "";
      heatWarning.hidden = !data.heatmap.warning;
    }
  }

  // The model the page was opened for (?model=NAME); empty: the server's default.
  function withModel(url) {
    const model = form.dataset.model;
    if (!model) return url;
    return url + (url.includes("?") ? "&" : "?") + "model=" + encodeURIComponent(model);
  }

  async function post(url, body) {
    const response = await fetch(withModel(url), { method: "POST", body, headers: { Accept: "application/json" } });
    const data = await response.json();
    if (!response.ok) {
      const error = new Error(data.detail || "The upload failed.");
      error.code = data.error;
      throw error;
    }
    return data;
  }

  function oneFile(file) {
    const body = new FormData();
    body.append("file", file);
    return body;
  }

  // One Score button: the film is scored without a heatmap (it costs far more than the
  // score); the switch on the result asks for the map of the same film when turned on.
  async function scoreOne(file) {
    shownFile = file;
    return await post("/predict", oneFile(file));
  }

  // The heatmap has its own small budget on the server: when it is full, the switch says
  // so and turns itself off; the result stays as it is.
  heatSwitch.addEventListener("change", async () => {
    const status = document.getElementById("heatmap-status");
    if (!heatSwitch.checked || !shownFile) {
      document.getElementById("heatmap").hidden = true;
      return;
    }
    const file = shownFile;
    heatSwitch.disabled = true;
    status.textContent = "Drawing the heatmap…";
    try {
      const data = await post("/predict?explain=true", oneFile(file));
      if (file !== shownFile || !heatSwitch.checked) return; // another film since
      status.textContent = data.heatmap ? "" : "No heatmap for this film.";
      showHeatmap(data);
    } catch (err) {
      heatSwitch.checked = false;
      status.textContent = err.code === "busy" ? "The server is drawing other heatmaps; " +
        "try again in a moment." : (err instanceof TypeError ?
        "The server could not be reached. Try again." : err.message);
    } finally {
      heatSwitch.disabled = false;
    }
  });

  // The server's rule (app/services/batch.py): judged films by highest probability,
  // upload order breaking ties; then films that need a human look (not assessable), then
  // files not scored, each in upload order.
  function groupOf(e) {
    if (e.error) return "error";
    return e.assessable === false ? "look" : "scored";
  }

  function worklistOrder(entries) {
    const scored = entries.filter((e) => groupOf(e) === "scored")
      .sort((a, b) => b.probability - a.probability || a.index - b.index);
    return scored.concat(entries.filter((e) => groupOf(e) === "look"),
      entries.filter((e) => groupOf(e) === "error"));
  }

  // The server's rule (app/services/display.py csv_cell, OWASP CSV injection): a cell or
  // any separator-split part of it that could start a formula gets a leading ', and a cell
  // with a separator, a quote or a line break is quoted.
  function csvCell(text) {
    let value = String(text);
    if (value.split(/[,;\t]/).some((part) => /^[=+\-@\t\r]/.test(part))) value = "'" + value;
    return /[,;\t"\r\n]/.test(value) ? '"' + value.replace(/"/g, '""') + '"' : value;
  }

  function worklistCsv(rows) {
    const groups = { scored: "scored", look: form.dataset.lookText, error: "not scored" };
    const lines = [["rank", "file", "decision", "triage_score", "probability", "flagged",
      "warnings", "error", "group", "reasons", "operating_point"].join(",")];
    rows.forEach((e, i) => {
      const group = groupOf(e);
      const scored = group === "scored";
      lines.push([scored ? i + 1 : "", e.filename, e.decision_text || "not scored",
        e.triage_score_text || "", scored ? e.probability.toFixed(6) : "",
        group === "error" ? "" : (e.flagged ? "yes" : "no"),
        e.warnings.join("; "), e.error ? e.error.detail : "", groups[group],
        (e.reasons || []).join(" "), e.operating_point || ""].map(csvCell).join(","));
    });
    return lines.join("\n") + "\n";
  }

  // The server's words (app/services/triage.py summary_text): "5 files: 2 scored, 1 flagged;
  // 3 not scored."
  function summaryText(entries) {
    const count = (group) => entries.filter((e) => groupOf(e) === group).length;
    const scored = count("scored");
    const flagged = entries.filter((e) => groupOf(e) === "scored" && e.flagged).length;
    const look = count("look");
    const failed = count("error");
    let text = `${entries.length} file${entries.length === 1 ? "" : "s"}: ${scored} scored, ${flagged} flagged`;
    if (look) text += `; ${look} ${look === 1 ? "needs" : "need"} a human look`;
    if (failed) text += `; ${failed} not scored`;
    return text + ".";
  }

  // For tests/web/test_browser.py, which holds these rules to the server's output.
  window.triageWorklist = { order: worklistOrder, csv: worklistCsv, summary: summaryText };

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function showWorklist(entries) {
    const rows = worklistOrder(entries);
    tbody.replaceChildren();
    rows.forEach((e, i) => {
      const look = groupOf(e) === "look";
      if (look && (i === 0 || groupOf(rows[i - 1]) !== "look")) {
        const header = document.createElement("tr");
        header.className = "group";
        const th = document.createElement("th");
        th.colSpan = 6;
        const text = form.dataset.lookText;
        th.textContent = `${text.charAt(0).toUpperCase()}${text.slice(1)}: ${form.dataset.notAssessable}`;
        header.appendChild(th);
        tbody.appendChild(header);
      }
      const tr = document.createElement("tr");
      const kind = e.decision || "not_scored";
      tr.className = kind;
      cell(tr, groupOf(e) === "scored" ? String(i + 1) : "");
      const film = cell(tr, "");
      if (e.thumbnail) {
        const img = document.createElement("img");
        img.src = e.thumbnail;
        img.alt = "Thumbnail of " + e.filename;
        img.className = "thumb";
        film.appendChild(img);
      }
      cell(tr, e.filename, "name");
      const score = cell(tr, e.triage_score_text || "–", "score");
      if (e.probability_text) {
        score.title = "model output (for ML engineers): probability " + e.probability_text;
      }
      cell(tr, e.decision_text || "not scored", "decision-cell " + kind);
      const notes = cell(tr, e.error ? e.error.detail : "", e.error ? "error" : "note");
      if (!e.error) {
        notes.replaceChildren(...reasonSpans(e.reasons, e.reasons_text || []),
          ...noteSpans(e.warnings_text));
      }
      tbody.appendChild(tr);
    });
    if (csvLink.href) URL.revokeObjectURL(csvLink.href);
    csvLink.href = URL.createObjectURL(new Blob([worklistCsv(rows)], { type: "text/csv" }));
    csvLink.hidden = false;
  }

  async function scoreMany(files) {
    result.hidden = true;
    worklist.hidden = false;
    csvLink.hidden = true;
    tbody.replaceChildren();
    progress.max = files.length;
    progress.value = 0;
    const entries = [];
    for (let start = 0; start < files.length; start += GROUP) {
      const body = new FormData();
      files.slice(start, start + GROUP).forEach((f) => body.append("files", f, f.webkitRelativePath || f.name));
      progressText.textContent = `Scoring ${Math.min(start + GROUP, files.length)} of ${files.length}…`;
      const data = await post("/predict/batch?thumbnails=true", body);
      data.results.forEach((e) => entries.push({ ...e, index: e.index + start }));
      progress.value = entries.length;
    }
    progressText.textContent = summaryText(entries);
    showWorklist(entries);
  }

  // "Add to worklist": the files scored and stored (POST /worklist/films), a few at a time,
  // then a link to the worklist, where they now are in priority order.
  async function addToWorklist(files) {
    const added = document.getElementById("added");
    const adder = document.getElementById("add-to-worklist");
    added.hidden = false;
    adder.disabled = true;
    let stored = 0;
    try {
      for (let start = 0; start < files.length; start += GROUP) {
        added.textContent = `Adding ${Math.min(start + GROUP, files.length)} of ${files.length}…`;
        const body = new FormData();
        files.slice(start, start + GROUP).forEach((f) => body.append("files", f, f.webkitRelativePath || f.name));
        stored += (await post("/worklist/films", body)).stored;
      }
      const link = document.createElement("a");
      link.href = "/worklist";
      link.textContent = "Open the worklist";
      added.replaceChildren(`${stored} of ${files.length} ${files.length === 1 ? "film" : "films"} on the worklist. `, link);
    } catch (err) {
      added.textContent = err instanceof TypeError ? "The server could not be reached. Try again." : err.message;
    } finally {
      adder.disabled = false;
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const files = chosenFiles();
    if (!files.length) { showError("Choose an X-ray first."); return; }
    if (event.submitter && event.submitter.id === "add-to-worklist") {
      await addToWorklist(files);
      return;
    }
    button.disabled = true;
    button.textContent = "Scoring…";
    try {
      if (files.length === 1) {
        showResult(await scoreOne(files[0]), files[0].name);
      } else {
        await scoreMany(files);
      }
    } catch (err) {
      worklist.hidden = true;
      showError(err instanceof TypeError ? "The server could not be reached. Try again." : err.message);
    } finally {
      button.disabled = false;
      button.textContent = "Score";
    }
  });
})();

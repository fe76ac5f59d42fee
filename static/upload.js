// Progressive enhancement of the upload form: preview, drag and drop, and a JSON call to
// /predict without leaving the page. Without JavaScript the form posts to / instead.
(function () {
  const form = document.getElementById("upload-form");
  const input = document.getElementById("file");
  const zone = document.getElementById("drop-zone");
  const preview = document.getElementById("preview");
  const button = document.getElementById("submit");
  const result = document.getElementById("result");
  const outcome = document.getElementById("outcome");
  const error = document.getElementById("error");

  function showPreview(file) {
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    zone.classList.add("has-image");
  }

  input.addEventListener("change", () => { if (input.files[0]) showPreview(input.files[0]); });
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
      showPreview(input.files[0]);
    }
  });

  function showError(message) {
    result.hidden = false;
    outcome.hidden = true;
    error.hidden = false;
    error.textContent = message;
  }

  // The API's own text and label: display rules live in one place, on the server.
  function showResult(data) {
    document.getElementById("probability").textContent = data.probability_text;
    const label = document.getElementById("label");
    label.textContent = data.label;
    label.className = "label " + (data.label === form.dataset.positiveClass ? "positive" : "negative");
    document.getElementById("bar-fill").setAttribute("width", (data.probability * 100).toFixed(1));
    document.getElementById("bar-threshold").setAttribute("x", (data.threshold * 100).toFixed(1));
    document.getElementById("threshold").textContent = (data.threshold * 100).toFixed(0) + "%";
    document.getElementById("image-info").textContent =
      `${data.image.width}×${data.image.height} ${data.image.format} (${data.image.mode})`;
    document.getElementById("elapsed").textContent = Math.round(data.elapsed_ms) + " ms";
    result.hidden = false;
    error.hidden = true;
    outcome.hidden = false;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!input.files[0]) { showError("Choose an X-ray first."); return; }
    const body = new FormData();
    body.append("file", input.files[0]);
    button.disabled = true;
    button.textContent = "Estimating…";
    try {
      const response = await fetch("/predict", {
        method: "POST", body, headers: { Accept: "application/json" } });
      const data = await response.json();
      if (response.ok) showResult(data); else showError(data.detail || "The upload failed.");
    } catch (err) {
      showError("The server could not be reached. Try again.");
    } finally {
      button.disabled = false;
      button.textContent = "Estimate probability";
    }
  });
})();

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

  // Never print "100.0%" or "0.0%": the model is never certain.
  function percent(p) {
    if (p > 0.999) return ">99.9%";
    if (p < 0.001) return "<0.1%";
    return (p * 100).toFixed(1) + "%";
  }

  function showResult(data) {
    const pct = data.probability * 100;
    document.getElementById("probability").textContent = percent(data.probability);
    const label = document.getElementById("label");
    label.textContent = data.label;
    label.className = "label " + (data.probability >= data.threshold ? "positive" : "negative");
    document.getElementById("bar-fill").style.width = pct.toFixed(1) + "%";
    document.getElementById("bar-threshold").style.left = (data.threshold * 100).toFixed(1) + "%";
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
      const response = await fetch("/predict", { method: "POST", body });
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

// What the worklist and the study view share: a read sent to the API (PUT
// /worklist/entries/{id}/read, the same call a RIS makes), the copy buttons of Study
// Instance UIDs, and which key presses are the reader's shortcuts (never while typing, never
// with a modifier). Loaded before worklist.js and study.js.
(function () {
  async function putRead(entryId, finding) {
    const response = await fetch("/worklist/entries/" + encodeURIComponent(entryId) + "/read", {
      method: "PUT",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ finding }),
    });
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      throw new Error(data.detail || "The read could not be kept (the server answered " +
                      response.status + ").");
    }
    return response.json();
  }

  // A shortcut only when nobody is typing and no modifier is held.
  function isShortcut(event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) return false;
    const target = event.target;
    return !(target && (target.isContentEditable ||
                        /^(INPUT|SELECT|TEXTAREA)$/.test(target.tagName)));
  }

  // The read button of `finding`'s key (its data-key, from app/services/worklist.py
  // READ_ACTIONS) inside `scope`, or null.
  function readButton(scope, key) {
    return scope ? scope.querySelector('button.read-button[data-key="' + key + '"]') : null;
  }

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return;
    }
    const area = document.createElement("textarea");  // plain http on a hospital network
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button.copy-uid");
    if (!button) return;
    try {
      await copyText(button.dataset.uid);
      button.textContent = "copied";
    } catch (err) {
      button.textContent = "select and copy";
    }
    setTimeout(() => { button.textContent = "copy"; }, 1500);  // the label back, later
  });

  window.triageReading = { putRead, isShortcut, readButton };
})();

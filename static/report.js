// The report's long sections are collapsed <details> (templates/report.html): a link to one,
// or to something inside one (/report#card-robustness, /report?model=NAME#card), opens it
// and brings it into view. Without JavaScript the link lands on the section's closed summary.
(function () {
  function openTarget() {
    const id = decodeURIComponent(location.hash.slice(1));
    const target = id && document.getElementById(id);
    if (!target) return;
    for (let node = target; node; node = node.parentElement) {
      if (node.tagName === "DETAILS") node.open = true;
    }
    target.scrollIntoView();
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
})();

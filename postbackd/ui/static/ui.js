// postbackd web UI: small progressive enhancements. Every page works without this file.
"use strict";

// Ask before actions marked data-confirm (bulk retry, sending a real test postback).
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  const message = (button && button.dataset.confirm) || event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});

// Workbench: Ctrl/Cmd+Enter in a text box renders; choosing a template loads its source
// (unless the source shown was edited: then Render decides, as without script).
const bench = document.getElementById("bench");
if (bench) {
  const source = document.getElementById("w-source");
  const initial = source ? source.value : "";
  bench.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      document.getElementById("render").click();
    }
  });
  const select = bench.querySelector("select[data-reload]");
  if (select) select.addEventListener("change", () => {
    if (source && source.value !== initial) return;
    const params = new URLSearchParams({ template: select.value });
    for (const name of ["sample", "customer"]) {
      const field = bench.elements[name];
      if (field && field.value) params.set(name, field.value);
    }
    window.location.assign("/ui/workbench?" + params.toString());
  });
  const problem = document.querySelector(".listing .mark-error");
  if (problem) problem.scrollIntoView({ block: "center" });
}

// Delivery page: while the delivery is pending or in flight, refresh its live regions
// (state, actions, attempts) every 1.5 s for up to 5 minutes.
const main = document.querySelector("main[data-live]");
if (main) {
  let rounds = 0;
  const refresh = async () => {
    rounds += 1;
    try {
      const answer = await fetch(window.location.href, { headers: { Accept: "text/html" } });
      if (!answer.ok) return;
      const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
      for (const region of document.querySelectorAll("[data-region]")) {
        const next = fresh.getElementById(region.id);
        if (next && next.innerHTML !== region.innerHTML && !region.contains(document.activeElement)) {
          region.innerHTML = next.innerHTML;
        }
      }
      if (!fresh.querySelector("main[data-live]")) return;
    } catch (error) {
      return;
    }
    if (rounds < 200) window.setTimeout(refresh, 1500);
  };
  window.setTimeout(refresh, 1500);
}

// Refreshes the console's dashboard in place: fetches the fragment and swaps the section's
// contents, so the page keeps its scroll position. It waits while the tab is hidden and while
// focus is inside the dashboard (a keyboard user on a quick action keeps their place).
(function () {
  "use strict";
  const root = document.getElementById("kz-dashboard");
  if (!root || !window.fetch) return;
  const url = root.dataset.refreshUrl;
  const every = Number(root.dataset.refreshSeconds || 30) * 1000;

  async function refresh() {
    if (document.hidden || root.contains(document.activeElement)) return;
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      // Signed out meanwhile: the login page has no dashboard, so nothing is swapped.
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = response.ok && page.getElementById("kz-dashboard");
      if (!fresh) throw new Error("no dashboard in the answer");
      root.replaceChildren(...fresh.childNodes);
      root.removeAttribute("data-stale");
    } catch (error) {
      root.setAttribute("data-stale", "");  // the stylesheet dims the figures: they are old
    }
  }

  setInterval(refresh, every);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) refresh();
  });
})();

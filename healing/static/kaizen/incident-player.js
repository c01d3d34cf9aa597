// Plays the incident's session recording with rrweb-player (served from node_modules, no CDN).
const holder = document.getElementById("incident-player");
const events = JSON.parse(document.getElementById("incident-recording").textContent);
const { default: Player } = await import(holder.dataset.player);
const width = Math.min(holder.clientWidth || 640, 1024);
new Player({
  target: holder,
  // The controller bar below the replay takes ~80 px of its own.
  props: { events, width, height: Math.round(width * 0.6), autoPlay: false },
});

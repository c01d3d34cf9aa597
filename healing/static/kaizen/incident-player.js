// Plays the incident's session recording with rrweb-player (served from node_modules, no CDN).
const holder = document.getElementById("incident-player");
const events = JSON.parse(document.getElementById("incident-recording").textContent);
const { default: Player } = await import(holder.dataset.player);
new Player({
  target: holder,
  props: { events, width: Math.min(holder.clientWidth || 640, 1024), height: 480, autoPlay: false },
});

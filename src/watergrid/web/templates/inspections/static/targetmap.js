/* Targets of a campaign on a Leaflet map; with pick enabled a click fills the add-target
 * form's longitude and latitude (in the map's datum, which the form sends along). */
(function () {
  "use strict";
  var el = document.getElementById("target-map");
  if (!el) { return; }
  var cfg = JSON.parse(document.getElementById("target-map-config").textContent);
  var str = JSON.parse(document.getElementById("target-map-strings").textContent);
  if (typeof L === "undefined") { el.textContent = "—"; el.setAttribute("data-ready", "0"); return; }

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  var map = L.map(el, { zoomSnap: 0.25, minZoom: 9, maxZoom: 18 });
  map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
  if (cfg.tiles && cfg.tiles.url) {
    L.tileLayer(cfg.tiles.url, { attribution: cfg.tiles.attribution || "", maxZoom: 18 }).addTo(map);
  } else {
    el.classList.add("wg-no-tiles");
  }
  var outlines = L.geoJSON(cfg.outlines, {
    style: { color: "#2f6aa8", weight: 1, fillColor: "#2f6aa8", fillOpacity: 0.04 },
    onEachFeature: function (f, layer) {
      layer.bindTooltip(esc(f.properties.code + " " + f.properties.name), { sticky: true });
    }
  }).addTo(map);
  var bounds = outlines.getBounds();
  var group = L.featureGroup().addTo(map);
  (cfg.markers || []).forEach(function (m) {
    var icon = L.divIcon({ className: "", html: '<i class="wg-marker ' + m.status + '"></i>', iconSize: [14, 14] });
    L.marker([m.lat, m.lon], { icon: icon, title: m.name })
      .bindPopup('<strong>' + esc(m.name) + '</strong> <span class="code-badge">' + esc(m.code) + '</span><br>' +
        esc(str[m.status] || "") + '<br><a href="/inspections/targets/' + m.id + '">' + esc(m.code) + ' →</a>')
      .addTo(group);
  });
  if (group.getLayers().length) { bounds = group.getBounds().pad(0.1); }
  if (bounds && bounds.isValid()) { map.fitBounds(bounds); } else { map.setView([22.77, 113.93], 12); }

  if (cfg.pick) {
    var lon = document.getElementById("pick-lon"), lat = document.getElementById("pick-lat");
    var picked = null;
    map.on("click", function (e) {
      if (!lon || !lat) { return; }
      lon.value = e.latlng.lng.toFixed(6);
      lat.value = e.latlng.lat.toFixed(6);
      var icon = L.divIcon({ className: "", html: '<i class="wg-marker pick"></i>', iconSize: [18, 18] });
      if (picked) { picked.setLatLng(e.latlng); } else { picked = L.marker(e.latlng, { icon: icon }).addTo(map); }
      picked.bindTooltip(str.picked).openTooltip();
      var box = document.getElementById("add-target");
      if (box) { box.open = true; }
    });
  }
  el.setAttribute("data-ready", "1");
  el.setAttribute("data-markers", String(group.getLayers().length));
})();

/* The online application form: a map to place the project, the phone's position, and a
 * submit by fetch so that a refused application keeps every field and chosen file on the
 * page; on success the applicant's page (with the number and query code) opens. */
(function () {
  "use strict";
  var form = document.getElementById("apply-form");
  if (!form) { return; }
  var cfg = JSON.parse(document.getElementById("apply-config").textContent);
  var S = JSON.parse(document.getElementById("apply-strings").textContent);
  var banner = document.getElementById("apply-banner");
  var button = document.getElementById("apply-btn");
  var lon = document.getElementById("pick-lon"), lat = document.getElementById("pick-lat");
  var datum = document.getElementById("pick-datum");
  var map = null, marker = null;

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function place(latlng, fromMap) {
    lon.value = latlng.lng.toFixed(6);
    lat.value = latlng.lat.toFixed(6);
    if (fromMap) { datum.value = cfg.datum; }
    if (!map) { return; }
    if (marker) { marker.setLatLng(latlng); } else {
      marker = L.marker(latlng, { icon: L.divIcon({ className: "", html: '<i class="wg-marker pick"></i>', iconSize: [18, 18] }) }).addTo(map);
    }
  }

  var el = document.getElementById("pick-map");
  if (el && typeof L !== "undefined") {
    map = L.map(el, { zoomSnap: 0.25, minZoom: 9, maxZoom: 18 });
    map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
    if (cfg.tiles && cfg.tiles.url) { L.tileLayer(cfg.tiles.url, { attribution: cfg.tiles.attribution || "", maxZoom: 18 }).addTo(map); }
    else { el.classList.add("wg-no-tiles"); }
    if (cfg.outline) {
      var o = L.geoJSON(cfg.outline, { style: { color: "#c8102e", weight: 2, fillOpacity: 0.03 } }).addTo(map);
      map.fitBounds(o.getBounds());
    } else { map.setView([22.77, 113.93], 12); }
    map.on("click", function (e) { place(e.latlng, true); });
    if (lon.value && lat.value) { place(L.latLng(parseFloat(lat.value), parseFloat(lon.value)), false); }
    el.setAttribute("data-ready", "1");
  }

  document.getElementById("gps-btn").addEventListener("click", function () {
    if (!navigator.geolocation) { return; }
    navigator.geolocation.getCurrentPosition(function (p) {
      datum.value = "wgs84";
      lon.value = p.coords.longitude.toFixed(6);
      lat.value = p.coords.latitude.toFixed(6);
      if (map && cfg.datum === "wgs84") { place(L.latLng(p.coords.latitude, p.coords.longitude), false); map.setView([p.coords.latitude, p.coords.longitude], 15); }
    }, function () { banner.innerHTML = '<div class="banner info">' + esc(S.gpsFail) + "</div>"; }, { enableHighAccuracy: true, timeout: 15000 });
  });

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    button.disabled = true;
    button.textContent = S.sending;
    fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (resp) { return resp.json().then(function (d) { return { ok: resp.ok, data: d }; }); })
      .then(function (r) {
        if (r.ok) {
          var f = document.getElementById("receipt-form");
          f.elements.number.value = r.data.number;
          f.elements.token.value = r.data.access_token;
          f.submit();
          return;
        }
        var err = r.data.error || {};
        var items = (err.fields || []).map(function (x) { return "<li>" + esc(x.message_zh || x.message) + "</li>"; }).join("");
        banner.innerHTML = '<div class="banner err"><strong>' + esc(err.message_zh || err.message) + "</strong>" + (items ? "<ul>" + items + "</ul>" : "") + "</div>";
        banner.scrollIntoView({ behavior: "smooth" });
        form.setAttribute("data-state", "rejected");
      })
      .catch(function () { banner.innerHTML = '<div class="banner err">' + esc(S.offline) + "</div>"; })
      .then(function () { button.disabled = false; button.textContent = S.submit; });
  });
})();

/* watergrid maps: the district map (/map) and the small outline maps on grid and zone cards.
 * Plain Leaflet, no build step. Configuration comes from JSON <script> blocks the server
 * renders; every text shown comes from the page's language catalog through them. */
(function () {
  "use strict";

  var PANES = ["wg-district", "wg-subdistrict", "wg-grid", "wg-zone"];
  // Pale fills that tell the six subdistricts apart without hiding a basemap.
  var PALETTE = ["#dcebd5", "#d8e4f2", "#f4e3cf", "#e8dcf0", "#d3ece8", "#f1ecc8"];
  var STYLE = {
    district: { color: "#4a4a4a", weight: 2, fill: false, interactive: false },
    subdistrict: { color: "#7d7d7d", weight: 1.5, fillOpacity: 0.55 },
    grid: { color: "#2f6aa8", weight: 1, fillColor: "#2f6aa8", fillOpacity: 0.03 },
    mine: { color: "#c8102e", weight: 3, fillColor: "#ffd23f", fillOpacity: 0.5 },
    zone: { color: "#c8102e", weight: 2.5, dashArray: "7 5", fillColor: "#c8102e", fillOpacity: 0.1 },
    main: { color: "#c8102e", weight: 3, fillColor: "#ffd23f", fillOpacity: 0.35 }
  };

  function readJSON(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function esc(text) {
    return String(text == null ? "" : text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function extend(a, b) {
    var out = {};
    [a, b].forEach(function (o) { for (var k in o) { if (o.hasOwnProperty(k)) { out[k] = o[k]; } } });
    return out;
  }

  function baseMap(el, tiles, options) {
    var map = L.map(el, extend({ zoomSnap: 0.25, minZoom: 9, maxZoom: 18 }, options || {}));
    map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
    if (tiles && tiles.url) {
      L.tileLayer(tiles.url, { attribution: tiles.attribution || "", maxZoom: 18 }).addTo(map);
      el.classList.add("wg-has-tiles");
    } else {
      el.classList.add("wg-no-tiles");
    }
    // Fixed panes keep zones above grids above subdistricts whatever is toggled.
    PANES.forEach(function (name, i) {
      map.createPane(name).style.zIndex = String(402 + 2 * i);
    });
    return map;
  }

  // Label density follows the zoom: subdistrict names far out, grid codes closer,
  // grid names closest; zone names always.
  function zoomClasses(map, el) {
    function apply() {
      var z = map.getZoom();
      el.classList.toggle("wg-z-far", z < 12);
      el.classList.toggle("wg-z-mid", z >= 12 && z < 14);
      el.classList.toggle("wg-z-near", z >= 14);
    }
    map.on("zoomend", apply);
    apply();
  }

  // Labels that would overlap are hidden, the less important ones first: the user's own
  // grid, then zones, subdistricts, grid codes. Re-run whenever the zoom or layers change.
  var PRIORITY = ["wg-label-mine", "wg-label-main", "wg-label-zone", "wg-label-subdistrict", "wg-label-grid"];

  function rank(el) {
    for (var i = 0; i < PRIORITY.length; i++) { if (el.classList.contains(PRIORITY[i])) { return i; } }
    return PRIORITY.length;
  }

  function declutter(map) {
    var els = Array.prototype.slice.call(map.getContainer().querySelectorAll(".leaflet-tooltip.wg-label"));
    els.forEach(function (el) { el.classList.remove("wg-hidden"); });
    els.sort(function (a, b) { return rank(a) - rank(b); });
    var kept = [];
    els.forEach(function (el) {
      var r = el.getBoundingClientRect();
      if (!r.width || !r.height) { return; }
      var hit = kept.some(function (k) {
        return r.left < k.right && r.right > k.left && r.top < k.bottom && r.bottom > k.top;
      });
      if (hit) { el.classList.add("wg-hidden"); } else { kept.push(r); }
    });
  }

  function keepTidy(map) {
    var run = function () { declutter(map); };
    map.on("zoomend overlayadd overlayremove", run);
    run();
  }

  function label(kind, code, name) {
    if (kind === "grid") {
      return '<span class="code">' + esc(code) + '</span><span class="nm">' + esc(name) + "</span>";
    }
    return esc(name);
  }

  function districtMap(el) {
    var cfg = readJSON("wg-map-config");
    var s = readJSON("wg-map-strings");
    var status = document.getElementById("map-status");
    var mine = {};
    (cfg.mine || []).forEach(function (c) { mine[c] = true; });
    var mayOpen = {};
    (cfg.mayOpen || []).forEach(function (c) { mayOpen[c] = true; });

    var map = baseMap(el, cfg.tiles);
    map.setView([22.77, 113.93], 12);
    zoomClasses(map, el);

    function name(p) { return s.lang === "en" && p.name_en ? p.name_en : p.name_zh; }

    function popup(p, names, gridCounts) {
      var html = '<div class="wg-popup"><div class="kind">' + esc(s.kind[p.kind]) + "</div>" +
        "<strong>" + esc(name(p)) + "</strong> <span class=\"code\">" + esc(p.code) + "</span>";
      if (p.kind === "grid" && p.parent_code && names[p.parent_code]) {
        html += '<div class="meta">' + esc(s.parent) + esc(s.colon) + esc(names[p.parent_code]) + "</div>";
      }
      if (p.kind === "subdistrict") {
        html += '<div class="meta">' + esc(s.grids) + esc(s.colon) + (gridCounts[p.code] || 0) + "</div>";
      }
      if (p.synthetic) { html += '<div class="meta synthetic">' + esc(s.synthetic) + "</div>"; }
      if (p.kind === "grid" || p.kind === "zone") {
        if (mayOpen[p.code]) {
          var base = (p.kind === "grid" ? "/grids/" : "/zones/") + encodeURIComponent(p.code);
          html += '<div class="links"><a href="' + base + '">' +
            esc(p.kind === "grid" ? s.openGrid : s.openZone) + "</a>";
          if (p.kind === "zone") {
            html += '<a href="' + base + '/service-card">' + esc(s.serviceCard) + "</a>";
          }
          html += "</div>";
        } else {
          html += '<div class="meta">' + esc(s.outOfScope) + "</div>";
        }
      }
      return html + "</div>";
    }

    fetch(cfg.geojson, { credentials: "same-origin", headers: { Accept: "application/geo+json, application/json" } })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(function (fc) {
        var byKind = { district: [], subdistrict: [], grid: [], zone: [] };
        var names = {};
        var gridCounts = {};
        fc.features.forEach(function (f) {
          var p = f.properties;
          if (byKind[p.kind]) { byKind[p.kind].push(f); }
          names[p.code] = name(p);
          if (p.kind === "grid" && p.parent_code) {
            gridCounts[p.parent_code] = (gridCounts[p.parent_code] || 0) + 1;
          }
        });

        var district = L.geoJSON(byKind.district, {
          pane: "wg-district",
          style: function () { return extend(STYLE.district, { className: "wg-district" }); }
        }).addTo(map);

        var colour = {};
        byKind.subdistrict.forEach(function (f, i) { colour[f.properties.code] = PALETTE[i % PALETTE.length]; });

        function layer(kind) {
          return L.geoJSON(byKind[kind], {
            pane: "wg-" + kind,
            style: function (f) {
              var p = f.properties;
              if (kind === "subdistrict") {
                return extend(STYLE.subdistrict, { fillColor: colour[p.code], className: "wg-subdistrict" });
              }
              if (kind === "grid" && mine[p.code]) {
                return extend(STYLE.mine, { className: "wg-grid wg-mine" });
              }
              return extend(STYLE[kind], { className: "wg-" + kind });
            },
            onEachFeature: function (f, lyr) {
              var p = f.properties;
              lyr.bindPopup(popup(p, names, gridCounts), { maxWidth: 260 });
              var cls = "wg-label wg-label-" + kind + (mine[p.code] ? " wg-label-mine" : "");
              if (kind === "zone") {
                // Zone names sit under the dashed outline, off the centre where the
                // subdistrict and grid labels are.
                var b = lyr.getBounds();
                labels[kind].push(L.tooltip({ permanent: true, direction: "bottom", offset: [0, 2], className: cls, interactive: false })
                  .setLatLng([b.getSouth(), b.getCenter().lng])
                  .setContent(label(kind, p.code, name(p))));
              } else {
                lyr.bindTooltip(label(kind, p.code, name(p)), { permanent: true, direction: "center", className: cls });
              }
            }
          });
        }
        var labels = { subdistrict: [], grid: [], zone: [] };

        var layers = { subdistrict: layer("subdistrict"), grid: layer("grid"), zone: layer("zone") };
        var overlays = {};
        ["subdistrict", "grid", "zone"].forEach(function (k) {
          // Outlines and their free-standing labels toggle together.
          var group = L.layerGroup([layers[k]].concat(labels[k])).addTo(map);
          overlays['<span class="ctl ctl-' + k + '"></span>' + esc(s.layers[k])] = group;
        });
        L.control.layers(null, overlays, { collapsed: window.innerWidth < 640, position: "topright" }).addTo(map);

        var all = district.getLayers().length ? district.getBounds() : layers.grid.getBounds();
        if (all.isValid()) { map.fitBounds(all, { padding: [8, 8], animate: false }); }
        map.setMinZoom(Math.max(9, map.getZoom() - 2));

        var own = [];
        layers.grid.eachLayer(function (l) { if (mine[l.feature.properties.code]) { own.push(l); l.bringToFront(); } });
        if (own.length) {
          var Mine = L.Control.extend({
            onAdd: function () {
              var b = L.DomUtil.create("button", "wg-mine-btn");
              b.type = "button";
              b.textContent = s.myGrid;
              L.DomEvent.disableClickPropagation(b);
              L.DomEvent.on(b, "click", function () {
                map.fitBounds(L.featureGroup(own).getBounds(), { padding: [30, 30] });
              });
              return b;
            }
          });
          new Mine({ position: "topleft" }).addTo(map);
        }

        el.dataset.subdistricts = String(layers.subdistrict.getLayers().length);
        el.dataset.grids = String(layers.grid.getLayers().length);
        el.dataset.zones = String(layers.zone.getLayers().length);
        el.dataset.mine = (cfg.mine || []).join(",");
        keepTidy(map);
        el.dataset.zoom = String(map.getZoom());
        el.dataset.ready = "1";
        if (status) { status.textContent = s.ready; }
      })
      .catch(function (err) {
        el.dataset.ready = "error";
        if (status) { status.textContent = s.failed + s.open + err.message + s.close; status.classList.add("alert"); }
      });
  }

  // A small map of one area (grid or zone card) with its neighbours for context.
  function areaMap(el) {
    var cfg = JSON.parse(document.getElementById(el.dataset.config).textContent);
    var map = baseMap(el, cfg.tiles, {
      scrollWheelZoom: false,
      dragging: !L.Browser.mobile,
      tap: false,
      zoomControl: true
    });
    zoomClasses(map, el);
    var main = [];
    var context = [];
    cfg.features.features.forEach(function (f) {
      (f.properties.role === "main" ? main : context).push(f);
    });
    function styleOf(f) {
      var p = f.properties;
      if (p.role === "main") {
        return extend(STYLE.main, { className: "wg-main wg-" + p.kind, dashArray: p.kind === "zone" ? STYLE.zone.dashArray : null });
      }
      return extend(STYLE[p.kind] || STYLE.grid, { className: "wg-context wg-" + p.kind, fillOpacity: 0.05 });
    }
    function add(list) {
      return L.geoJSON(list, {
        pane: "wg-" + (list.length ? list[0].properties.kind : "grid"),
        style: styleOf,
        onEachFeature: function (f, lyr) {
          var p = f.properties;
          lyr.bindTooltip(label(p.kind, p.code, p.name), {
            permanent: true,
            direction: "center",
            className: "wg-label wg-label-" + p.kind + (p.role === "main" ? " wg-label-main" : "")
          });
        }
      }).addTo(map);
    }
    // Group by kind so each lands in its pane.
    var kinds = {};
    context.concat(main).forEach(function (f) {
      var k = f.properties.kind;
      (kinds[k] = kinds[k] || []).push(f);
    });
    Object.keys(kinds).forEach(function (k) { add(kinds[k]); });
    var focus = L.geoJSON(main.length ? main : context);
    if (focus.getBounds().isValid()) { map.fitBounds(focus.getBounds(), { padding: [12, 12], animate: false }); }
    keepTidy(map);
    el.dataset.ready = "1";
  }

  function start() {
    if (typeof L === "undefined") {
      document.querySelectorAll(".wg-map").forEach(function (el) { el.dataset.ready = "error"; });
      return;
    }
    document.querySelectorAll('[data-role="district-map"]').forEach(districtMap);
    document.querySelectorAll('[data-role="area-map"]').forEach(areaMap);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

/* Work-order pages: the report form's map pin, category picker, counter and photo uploads;
 * the order map; forms that must not be sent twice. Plain scripts, no build step. Every
 * text comes from the page (JSON blocks or data attributes rendered through the catalogs).
 * The pages work without this file; it makes them quicker and kinder on a phone. */
(function () {
  "use strict";

  document.documentElement.classList.add("js");
  var EN = (document.documentElement.lang || "").indexOf("en") === 0;

  function readJSON(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function each(sel, fn, root) {
    Array.prototype.forEach.call((root || document).querySelectorAll(sel), fn);
  }

  function fill(template, values) {
    return String(template).replace(/\{(\w+)\}/g, function (m, k) {
      return values.hasOwnProperty(k) ? values[k] : m;
    });
  }

  function baseMap(el, tiles, options) {
    var map = L.map(el, Object.assign({ zoomSnap: 0.25, minZoom: 9, maxZoom: 19 }, options || {}));
    map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
    if (tiles && tiles.url) {
      L.tileLayer(tiles.url, { attribution: tiles.attribution || "", maxZoom: 19 }).addTo(map);
    } else {
      el.classList.add("wg-no-tiles");
    }
    return map;
  }

  var OUTLINE = {
    district: { color: "#4a4a4a", weight: 2.5, fill: false },
    subdistrict: { color: "#7d7d7d", weight: 1.2, fillColor: "#dcebd5", fillOpacity: 0.35 },
    grid: { color: "#2f6aa8", weight: 0.8, fill: false, dashArray: "3 3" },
    focus: { color: "#c8102e", weight: 3, dashArray: "7 5", fillColor: "#c8102e", fillOpacity: 0.06 }
  };

  // ---- the report form's map: tap (or GPS) sets the point, the server says where it is ----
  function reportMap(el) {
    var cfg = readJSON("wg-report-map");
    var s = readJSON("wg-report-strings");
    var form = el.closest("form");
    var lonIn = form.querySelector("input[name=lon]");
    var latIn = form.querySelector("input[name=lat]");
    var where = form.querySelector("[data-where]");
    var map = baseMap(el, cfg.tiles, { tap: true });
    var name = function (p) { return cfg.lang === "en" && p.name_en ? p.name_en : p.name_zh; };

    var outlines = L.geoJSON(cfg.outlines, {
      interactive: false,
      style: function (f) { return OUTLINE[f.properties.kind] || OUTLINE.grid; },
      onEachFeature: function (f, layer) {
        var k = f.properties.kind;
        if (k === "subdistrict" || k === "grid") {
          layer.bindTooltip(name(f.properties), {
            permanent: true, direction: "center", interactive: false,
            className: "wo-label wo-label-" + k
          });
        }
      }
    }).addTo(map);
    var focus = cfg.focus ? L.geoJSON(cfg.focus, { interactive: false, style: OUTLINE.focus }).addTo(map) : null;

    // Labels that would overlap are hidden, grid names before subdistrict names, so that
    // long (English) names never print over each other.
    function declutter() {
      var labels = Array.prototype.slice.call(el.querySelectorAll(".wo-label"));
      labels.forEach(function (l) { l.style.visibility = ""; });
      labels.sort(function (a, b) {
        return (a.classList.contains("wo-label-grid") ? 1 : 0) - (b.classList.contains("wo-label-grid") ? 1 : 0);
      });
      var kept = [];
      labels.forEach(function (l) {
        var r = l.getBoundingClientRect();
        if (!r.width) { return; }
        var hit = kept.some(function (k) {
          return r.left < k.right && r.right > k.left && r.top < k.bottom && r.bottom > k.top;
        });
        if (hit) { l.style.visibility = "hidden"; } else { kept.push(r); }
      });
    }
    function zoomClass() {
      var z = map.getZoom();
      el.classList.toggle("wo-far", z < 14);
      el.classList.toggle("wo-near", z >= 14);
      declutter();
    }
    map.on("zoomend", zoomClass);

    var marker = null;
    function pin(lat, lon) {
      if (marker) { marker.setLatLng([lat, lon]); } else { marker = L.marker([lat, lon], { keyboard: false }).addTo(map); }
    }
    function say(text, cls) {
      where.textContent = text;
      where.classList.remove("where-ok", "where-bad");
      if (cls) { where.classList.add(cls); }
    }

    var asked = 0;
    function setPoint(lat, lon, given) {
      var ticket = ++asked;
      var direct = given === "map" && cfg.datum === "wgs84";
      if (direct) {
        // Without a shifted basemap the tapped point is the stored point: keep it at once.
        lonIn.value = lon.toFixed(7);
        latIn.value = lat.toFixed(7);
        pin(lat, lon);
      } else {
        lonIn.value = "";
        latIn.value = "";
        if (given === "map") { pin(lat, lon); }
      }
      el.dataset.inside = "";
      say(s.checking, null);
      var stale = form.querySelector('[data-error-for="location"]');
      if (stale) { stale.remove(); }
      var url = "/report/where?" + new URLSearchParams({ lon: lon, lat: lat, given: given, lang: cfg.lang });
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
        .then(function (j) {
          if (ticket !== asked) { return; }
          lonIn.value = j.wgs84[0];
          latIn.value = j.wgs84[1];
          pin(j.map[1], j.map[0]);
          if (given === "wgs84") { map.setView([j.map[1], j.map[0]], Math.max(map.getZoom(), 16)); }
          el.dataset.inside = j.inside ? "1" : "0";
          if (j.grid) { el.dataset.grid = j.grid; }
          say(j.text, j.inside ? "where-ok" : "where-bad");
        })
        .catch(function () {
          if (ticket !== asked) { return; }
          say(s.whereFailed, direct ? null : "where-bad");
        });
    }

    map.on("click", function (e) { setPoint(e.latlng.lat, e.latlng.lng, "map"); });

    var btn = form.querySelector("[data-locate]");
    if (btn) {
      btn.addEventListener("click", function () {
        if (!navigator.geolocation) { say(s.geoUnsupported, "where-bad"); return; }
        say(s.locating, null);
        navigator.geolocation.getCurrentPosition(
          function (pos) { setPoint(pos.coords.latitude, pos.coords.longitude, "wgs84"); },
          function () { say(s.geoFailed, "where-bad"); },
          { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 }
        );
      });
    }

    var bounds = focus ? focus.getBounds() : outlines.getBounds();
    if (bounds.isValid()) { map.fitBounds(bounds, { padding: [6, 6], animate: false }); }
    map.setMinZoom(Math.max(9, map.getZoom() - 2));
    if (cfg.point) {
      // A point kept from the last try: close up when it is good, otherwise the whole
      // district with the stray pin in view, so a better spot is one tap away.
      var at = L.latLng(cfg.point[1], cfg.point[0]);
      pin(at.lat, at.lng);
      var inside = cfg.where && cfg.where.inside;
      el.dataset.inside = inside ? "1" : "0";
      if (inside) {
        map.setView(at, Math.max(map.getZoom(), 15), { animate: false });
      } else {
        map.fitBounds(outlines.getBounds().extend(at), { padding: [36, 36], animate: false });
      }
    }
    zoomClass();
    el.dataset.ready = "1";
  }

  // ---- one order on a small map ----
  function orderMap(el) {
    var cfg = JSON.parse(document.getElementById(el.dataset.config).textContent);
    var map = baseMap(el, cfg.tiles, { scrollWheelZoom: false });
    var area = L.geoJSON(cfg.features, { interactive: false, style: OUTLINE.focus }).addTo(map);
    var at = [cfg.point[1], cfg.point[0]];
    L.marker(at, { keyboard: false }).addTo(map);
    var b = area.getBounds();
    if (b.isValid()) { map.fitBounds(b.extend(at), { padding: [12, 12], animate: false }); } else { map.setView(at, 16); }
    el.dataset.ready = "1";
  }

  // ---- category picker: show the choice on the closed group, open its questions ----
  function categories(form) {
    var radios = form.querySelectorAll("input[name=category_code]");
    function show() {
      var chosen = form.querySelector("input[name=category_code]:checked");
      each("details.group", function (d) {
        var picked = chosen && d.contains(chosen);
        d.querySelector("[data-chosen]").textContent = picked ? chosen.closest("label").querySelector(".option-name").textContent : "";
      }, form);
      each(".attr-block", function (b) {
        b.classList.toggle("shown", !!chosen && b.dataset.for === chosen.value);
      }, form);
      return chosen;
    }
    Array.prototype.forEach.call(radios, function (r) {
      r.addEventListener("change", function () {
        var chosen = show();
        var group = chosen && chosen.closest("details");
        var block = chosen && form.querySelector('.attr-block[data-for="' + chosen.value + '"]');
        // Fold the list away so the next step is in reach of the thumb.
        if (group) { group.open = false; }
        (block || form.querySelector("#step-location")).scrollIntoView({ block: "start", behavior: "smooth" });
      });
    });
    show();
  }

  // ---- characters left ----
  function counter(area) {
    var out = document.querySelector('[data-counter-for="' + area.id + '"]');
    if (!out) { return; }
    var max = Number(area.dataset.counter);
    var tpl = out.dataset.template;
    function update() {
      // Characters as the server counts them (code points, not UTF-16 units).
      var n = Array.from(area.value).length;
      out.textContent = fill(tpl, { n: n, max: max });
      out.classList.toggle("over", n > max);
    }
    area.addEventListener("input", update);
    update();
  }

  // ---- photos: upload each when chosen; the form then carries only the keys ----
  function photos(box) {
    var input = box.querySelector("[data-photo-input]");
    var list = box.querySelector("[data-thumbs]");
    var status = box.querySelector("[data-photo-status]");
    var max = Number(box.dataset.max);
    // The files travel by key now; sending them with the form as well would double them.
    input.removeAttribute("name");

    function count() { return list.querySelectorAll(".thumb").length; }
    function refresh() { box.classList.toggle("full", count() >= max); }
    function bind(li) {
      var x = li.querySelector("[data-remove]");
      if (x) { x.addEventListener("click", function () { li.remove(); status.textContent = ""; refresh(); }); }
    }
    each(".thumb", bind, list);

    function upload(file) {
      var li = document.createElement("li");
      li.className = "thumb uploading";
      var img = document.createElement("img");
      img.alt = "";
      img.src = URL.createObjectURL(file);
      li.appendChild(img);
      list.appendChild(li);
      var body = new FormData();
      body.append("file", file, file.name);
      fetch("/api/v1/attachments", { method: "POST", body: body, credentials: "same-origin" })
        .then(function (r) {
          return r.json().then(function (j) { return { ok: r.ok, j: j }; });
        })
        .then(function (res) {
          if (!res.ok) {
            var e = res.j && res.j.error;
            throw new Error(e ? (EN ? e.message : e.message_zh) : box.dataset.msgFailed);
          }
          var hidden = document.createElement("input");
          hidden.type = "hidden";
          hidden.name = "attachment_keys";
          hidden.value = res.j.key;
          li.appendChild(hidden);
          li.dataset.key = res.j.key;
          var x = document.createElement("button");
          x.type = "button";
          x.className = "thumb-x";
          x.setAttribute("data-remove", "");
          x.setAttribute("aria-label", box.dataset.msgRemove);
          x.textContent = "×";
          li.appendChild(x);
          li.classList.remove("uploading");
          bind(li);
        })
        .catch(function (err) {
          li.remove();
          status.textContent = err && err.message && err.message.indexOf("HTTP") !== 0 && err.message !== "Failed to fetch"
            ? err.message : box.dataset.msgFailed;
        })
        .then(refresh);
    }

    input.addEventListener("change", function () {
      status.textContent = "";
      var files = Array.prototype.slice.call(input.files || []);
      input.value = "";
      files.forEach(function (f) {
        if (count() >= max) { status.textContent = box.dataset.msgTooMany; return; }
        upload(f);
      });
      refresh();
    });

    var form = box.closest("form");
    if (form) {
      form.addEventListener("submit", function (e) {
        if (list.querySelector(".uploading")) {
          e.preventDefault();
          e.stopImmediatePropagation();
          status.textContent = box.dataset.msgUploading;
        }
      }, true);
    }
    refresh();
  }

  // ---- a second tap on a slow connection must not send the form twice ----
  function once(form) {
    var sending = false;
    form.addEventListener("submit", function (e) {
      if (e.defaultPrevented) { return; }
      if (sending) { e.preventDefault(); return; }
      sending = true;
      var btn = form.querySelector("[data-submit], button[type=submit]");
      if (btn) {
        btn.classList.add("busy");
        btn.dataset.label = btn.textContent;
        if (form.dataset.busy) { btn.textContent = form.dataset.busy; }
      }
    });
    // Coming back with the Back button restores the page as it was left: make it usable.
    window.addEventListener("pageshow", function () {
      sending = false;
      var btn = form.querySelector(".busy");
      if (btn) {
        btn.classList.remove("busy");
        if (btn.dataset.label) { btn.textContent = btn.dataset.label; }
      }
    });
  }

  // A refused action comes back as a fresh page: bring its panel, with the reason, into view.
  function showRefusal() {
    var box = document.querySelector("details.act .error-box, .desk-item .error-box");
    if (box) { box.closest("details, .desk-item").scrollIntoView({ block: "start" }); }
  }

  function start() {
    showRefusal();
    each("form[data-once]", once);
    each("[data-photos]", photos);
    each("textarea[data-counter]", counter);
    var report = document.getElementById("report-form");
    if (report) { categories(report); }
    if (typeof L !== "undefined") {
      each('[data-role="report-map"]', reportMap);
      each('[data-role="order-map"]', orderMap);
    } else {
      each(".wg-map", function (el) { el.dataset.ready = "error"; });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

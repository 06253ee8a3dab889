/* The phone inspection form. Whatever is typed or photographed is kept on the phone as a
 * draft (fields in localStorage, photos in IndexedDB) until the server confirms the visit, so
 * a dropped connection, a failed submit or a reload loses nothing. The draft carries its own
 * client_key: a retry after a timeout whose request did arrive gets the stored visit back
 * instead of a second one. Plain form posting still works without this script. */
(function () {
  "use strict";
  var form = document.getElementById("inspect-form");
  if (!form) { return; }
  var cfg = JSON.parse(document.getElementById("inspect-config").textContent);
  var S = JSON.parse(document.getElementById("inspect-strings").textContent);
  var banner = document.getElementById("status-banner");
  var button = document.getElementById("submit-btn");
  var progress = document.getElementById("progress");
  var draftNote = document.getElementById("draft-note");
  var submitStatus = document.getElementById("submit-status");
  var KEY = cfg.draftKey;
  var MAX_SIDE = 2048;
  var memoryPhotos = null; // used when IndexedDB is unavailable (private mode)
  var lastFailureWasNetwork = false;
  var sending = false;

  function fmt(text, values) {
    return String(text).replace(/\{(\w+)\}/g, function (_, k) { return values[k] != null ? values[k] : ""; });
  }

  function show(kind, html) {
    banner.innerHTML = html ? '<div class="banner ' + kind + '">' + html + "</div>" : "";
  }

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  // -- IndexedDB: one record per draft, the list of photos ------------------------------
  function idb() {
    return new Promise(function (resolve, reject) {
      if (!window.indexedDB) { reject(new Error("no indexedDB")); return; }
      var req = indexedDB.open("wg-inspections", 1);
      req.onupgradeneeded = function () { req.result.createObjectStore("photos"); };
      req.onsuccess = function () { resolve(req.result); };
      req.onerror = function () { reject(req.error); };
    });
  }

  function idbDo(mode, fn) {
    return idb().then(function (db) {
      return new Promise(function (resolve, reject) {
        var tx = db.transaction("photos", mode);
        var out = fn(tx.objectStore("photos"));
        tx.oncomplete = function () { resolve(out && out.result); };
        tx.onerror = function () { reject(tx.error); };
      });
    });
  }

  function loadPhotos() {
    if (memoryPhotos) { return Promise.resolve(memoryPhotos); }
    return idbDo("readonly", function (st) { return st.get(KEY); })
      .then(function (v) { return v || []; })
      .catch(function () { memoryPhotos = []; return memoryPhotos; });
  }

  function savePhotos(list) {
    if (memoryPhotos) { memoryPhotos = list; return Promise.resolve(); }
    return idbDo("readwrite", function (st) { st.put(list, KEY); })
      .catch(function () { memoryPhotos = list; });
  }

  function clearPhotos() {
    memoryPhotos = memoryPhotos ? [] : null;
    return idbDo("readwrite", function (st) { st.delete(KEY); }).catch(function () {});
  }

  // -- the draft of the fields ----------------------------------------------------------
  function fields() {
    var out = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.type === "file" || el.name === "csrf") { return; }
      if (el.type === "radio") { if (el.checked) { out[el.name] = el.value; } return; }
      out[el.name] = el.value;
    });
    return out;
  }

  function saveDraft() {
    try {
      localStorage.setItem(KEY, JSON.stringify({ fields: fields(), savedAt: new Date().toISOString() }));
      draftNote.textContent = fmt(S.saved, { time: new Date().toLocaleTimeString() });
    } catch (e) { /* storage full or disabled: the form still works */ }
  }

  function restoreDraft() {
    var raw = null;
    try { raw = localStorage.getItem(KEY); } catch (e) { return false; }
    if (!raw) { return false; }
    var d;
    try { d = JSON.parse(raw); } catch (e) { return false; }
    var f = d.fields || {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.type === "file" || el.name === "csrf" || !(el.name in f)) { return; }
      if (el.type === "radio") { el.checked = el.value === f[el.name]; } else { el.value = f[el.name]; }
    });
    return true;
  }

  function clearDraft() {
    try { localStorage.removeItem(KEY); } catch (e) { /* nothing kept */ }
    return clearPhotos();
  }

  // -- the state of each item -----------------------------------------------------------
  function refresh() {
    var sets = form.querySelectorAll("fieldset.check");
    var done = 0;
    Array.prototype.forEach.call(sets, function (fs) {
      var checked = fs.querySelector("input[type=radio]:checked");
      if (checked) { done += 1; fs.classList.remove("missing"); }
      var fault = checked && (checked.value === "fault" || checked.value === "failed");
      fs.classList.toggle("is-fault", !!fault);
    });
    progress.textContent = fmt(cfg.kind === "initial" ? S.progress : S.verdicts, { done: done, total: sets.length });
  }

  // -- photos ---------------------------------------------------------------------------
  function shrink(file) {
    // Phones take 4–12 MB pictures; a slow connection sends a 2048 px JPEG far sooner, and
    // the server keeps no more than that for anyone anyway.
    if (!window.createImageBitmap || !/^image\/(jpeg|png|webp)$/.test(file.type)) { return Promise.resolve(file); }
    return createImageBitmap(file).then(function (bmp) {
      var scale = Math.min(1, MAX_SIDE / Math.max(bmp.width, bmp.height));
      if (scale === 1 && file.size < 1500000) { return file; }
      var c = document.createElement("canvas");
      c.width = Math.round(bmp.width * scale);
      c.height = Math.round(bmp.height * scale);
      c.getContext("2d").drawImage(bmp, 0, 0, c.width, c.height);
      return new Promise(function (resolve) {
        c.toBlob(function (b) { resolve(b ? new File([b], file.name.replace(/\.\w+$/, "") + ".jpg", { type: "image/jpeg" }) : file); }, "image/jpeg", 0.85);
      });
    }).catch(function () { return file; });
  }

  function renderThumbs() {
    return loadPhotos().then(function (list) {
      Array.prototype.forEach.call(form.querySelectorAll("[data-thumbs]"), function (box) {
        box.innerHTML = "";
      });
      list.forEach(function (p, i) {
        var box = form.querySelector('[data-thumbs="' + p.tag + '"]');
        if (!box) { return; }
        var wrap = document.createElement("span");
        wrap.className = "th";
        var img = document.createElement("img");
        img.src = URL.createObjectURL(p.blob);
        img.alt = p.name;
        var del = document.createElement("button");
        del.type = "button";
        del.textContent = "×";
        del.setAttribute("aria-label", S.remove);
        del.addEventListener("click", function () {
          loadPhotos().then(function (all) { all.splice(i, 1); return savePhotos(all); }).then(renderThumbs);
        });
        wrap.appendChild(img);
        wrap.appendChild(del);
        box.appendChild(wrap);
      });
      form.setAttribute("data-photos", String(list.length));
    });
  }

  function addFiles(input) {
    var tag = input.getAttribute("data-tag") || "";
    var files = Array.prototype.slice.call(input.files || []);
    input.value = "";
    return Promise.all(files.map(shrink)).then(function (shrunk) {
      return loadPhotos().then(function (list) {
        shrunk.forEach(function (f) { list.push({ tag: tag, name: f.name || "photo.jpg", blob: f }); });
        return savePhotos(list);
      });
    }).then(renderThumbs);
  }

  // -- position -------------------------------------------------------------------------
  function distance(lon1, lat1, lon2, lat2) {
    var r = Math.PI / 180, a = Math.sin((lat2 - lat1) * r / 2), b = Math.sin((lon2 - lon1) * r / 2);
    var h = a * a + Math.cos(lat1 * r) * Math.cos(lat2 * r) * b * b;
    return 2 * 6371008.8 * Math.asin(Math.min(1, Math.sqrt(h)));
  }

  function showPosition() {
    var lon = parseFloat(form.elements.lon.value), lat = parseFloat(form.elements.lat.value);
    var text = document.getElementById("gps-text");
    if (isNaN(lon) || isNaN(lat)) { return; }
    var d = distance(cfg.target.lon, cfg.target.lat, lon, lat);
    text.textContent = fmt(d > 500 ? S.gpsFar : S.gpsOk, {
      acc: Math.round(parseFloat(form.elements.accuracy.value) || 0), dist: Math.round(d)
    });
    text.classList.toggle("muted", false);
    text.setAttribute("data-located", "1");
  }

  function locate() {
    var text = document.getElementById("gps-text");
    if (!navigator.geolocation) { text.textContent = S.gpsFail; return; }
    text.textContent = S.gpsAsk;
    navigator.geolocation.getCurrentPosition(function (pos) {
      form.elements.lon.value = pos.coords.longitude.toFixed(7);
      form.elements.lat.value = pos.coords.latitude.toFixed(7);
      form.elements.accuracy.value = String(Math.round(pos.coords.accuracy || 0));
      showPosition();
      saveDraft();
    }, function () { text.textContent = S.gpsFail; }, { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 });
  }

  // -- checking before sending ----------------------------------------------------------
  function check() {
    var problems = [];
    Array.prototype.forEach.call(form.querySelectorAll("fieldset.check"), function (fs) {
      var checked = fs.querySelector("input[type=radio]:checked");
      if (cfg.kind === "initial" && !checked) { problems.push(fs); }
      if (checked && (checked.value === "fault" || checked.value === "failed")) {
        var note = fs.querySelector("textarea");
        if (note && !note.value.trim()) { problems.push(fs); }
      }
    });
    if (cfg.kind !== "initial" && !form.querySelector("fieldset.check input[type=radio]:checked")) {
      problems = Array.prototype.slice.call(form.querySelectorAll("fieldset.check"));
    }
    problems.forEach(function (fs) { fs.classList.add("missing"); });
    if (problems.length) {
      show("err", esc(fmt(S.missing, { n: problems.length })));
      submitStatus.innerHTML = '<div class="banner err">' + esc(fmt(S.missing, { n: problems.length })) + "</div>";
      problems[0].scrollIntoView({ behavior: "smooth", block: "center" });
      return false;
    }
    return true;
  }

  function markServerErrors(err) {
    (err.fields || []).forEach(function (f) {
      var m = /^(?:answers|verdicts)\.([^.]+)/.exec(f.field || "");
      if (!m) { return; }
      var fs = form.querySelector('fieldset[data-code="' + m[1] + '"], fieldset[data-fid="' + m[1] + '"]');
      if (fs) { fs.classList.add("missing"); }
    });
  }

  // -- sending --------------------------------------------------------------------------
  function retryButton() {
    return ' <button type="button" class="button small retry" id="retry-btn">' + esc(S.retry) + "</button>";
  }

  function failed(message, network) {
    // Said where the thumb is (the submit bar), not at the top of a long form.
    lastFailureWasNetwork = network;
    submitStatus.innerHTML = '<div class="banner err">' + esc(message) + "<br>" + esc(S.failedNote) + retryButton() + "</div>";
    var b = document.getElementById("retry-btn");
    if (b) { b.addEventListener("click", send); }
    form.setAttribute("data-state", "failed");
  }

  function send() {
    if (sending) { return; }
    if (!check()) { return; }
    sending = true;
    submitStatus.innerHTML = "";
    button.disabled = true;
    button.textContent = S.sending;
    form.setAttribute("data-state", "sending");
    if (!form.elements.observed_at.value) {
      // Fixed at the first attempt: a retry must be the very same request.
      form.elements.observed_at.value = new Date().toISOString();
      saveDraft();
    }
    var body = new FormData(form);
    Array.prototype.slice.call(body.keys()).forEach(function (k) { if (k.indexOf("photo__") === 0) { body.delete(k); } });
    var ctrl = window.AbortController ? new AbortController() : null;
    var timer = setTimeout(function () { if (ctrl) { ctrl.abort(); } }, 60000);
    loadPhotos().then(function (list) {
      list.forEach(function (p) { body.append("photo__" + p.tag, p.blob, p.name); });
      return fetch(cfg.submitUrl, {
        method: "POST", body: body, credentials: "same-origin",
        headers: { "Accept": "application/json" }, signal: ctrl ? ctrl.signal : undefined
      });
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (data) { return { resp: resp, data: data }; });
    }).then(function (r) {
      if (r.resp.ok) {
        lastFailureWasNetwork = false;
        form.setAttribute("data-state", "done");
        show("ok", esc(S.ok));
        return clearDraft().then(function () { window.location.assign(cfg.doneUrl); });
      }
      var err = (r.data && r.data.error) || {};
      var msg = err.message_zh || err.message || S.server;
      if (r.resp.status === 401) { failed(S.login, false); return; }
      if (r.resp.status >= 500 || r.resp.status === 408 || r.resp.status === 429) { failed(S.server, true); return; }
      if (err.code === "client_key_reused") { msg += " " + S.stale; }
      markServerErrors(err);
      lastFailureWasNetwork = false;
      var list = (err.fields || []).map(function (f) { return "<li>" + esc(f.message_zh || f.message) + "</li>"; }).join("");
      show("err", "<strong>" + esc(msg) + "</strong>" + (list ? "<ul>" + list + "</ul>" : ""));
      submitStatus.innerHTML = '<div class="banner err">' + esc(msg) + "</div>";
      form.setAttribute("data-state", "rejected");
    }).catch(function () {
      failed(S.offline, true);
    }).then(function () {
      clearTimeout(timer);
      sending = false;
      button.disabled = false;
      button.textContent = S.submit;
    });
  }

  // -- wiring ---------------------------------------------------------------------------
  form.addEventListener("change", function (e) {
    if (e.target.type === "file") { addFiles(e.target); return; }
    refresh();
    saveDraft();
  });
  form.addEventListener("input", function (e) { if (e.target.type !== "file") { saveDraft(); } });
  form.addEventListener("submit", function (e) { e.preventDefault(); send(); });
  document.getElementById("gps-btn").addEventListener("click", locate);
  window.addEventListener("online", function () { if (lastFailureWasNetwork) { send(); } });

  var restored = restoreDraft();
  refresh();
  renderThumbs().then(function () {
    var n = parseInt(form.getAttribute("data-photos") || "0", 10);
    if (restored) {
      // At the top for a fresh visit, and by the button for a reload that kept its place.
      show("info", esc(fmt(S.restored, { photos: n })));
      submitStatus.innerHTML = '<div class="banner info">' + esc(fmt(S.restored, { photos: n })) + "</div>";
    }
    form.setAttribute("data-ready", "1");
  });
  if (form.elements.lon.value) { showPosition(); } else { locate(); }
  if (!restored) { saveDraft(); }
})();

// The studio page: tabs, image pickers, the parameter panel generated from /api/schema, the doodle painter,
// the live run panel fed by server-sent events, and the runs history. Plain JS, no build step, no CDN.
"use strict";
const $ = (s, el = document) => el.querySelector(s);
const $$ = (s, el = document) => [...el.querySelectorAll(s)];
const fileUrl = (p) => "/api/file?path=" + encodeURIComponent(p);
const baseName = (p) => (p || "").split("/").pop();

function showError(msg) {
  const box = $("#error");
  box.textContent = msg || "";
  box.hidden = !msg;
}

// The "loading…" notes the page ships with stay until the part they stand for has been filled from the server.
function clearLoading(el) { $$(":scope > .loading-note", el).forEach((n) => n.remove()); }

async function api(url, opts = {}) {
  const r = await fetch(url, opts);
  const type = r.headers.get("content-type") || "";
  const data = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) {
    const msg = (data && data.error) || `error: ${r.status} ${r.statusText}`;
    showError(msg);
    throw new Error(msg);
  }
  return data;
}
const postJSON = (url, body) => api(url, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});

// ------------------------------------------------------------------ tabs
$$("nav .tab").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
function showTab(name) {
  $$("nav .tab").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  $$(".pane").forEach((p) => (p.hidden = p.id !== "pane-" + name));
  if (name === "runs") loadRuns();
}

// ------------------------------------------------------------------ image pickers
let IMAGES = {};
async function loadImages() { IMAGES = await api("/api/images"); $$(".picker select.images").forEach(fillImageSelect); }

function fillImageSelect(sel) {
  const keep = sel.value, filter = sel.dataset.filter || "";
  sel.innerHTML = "";
  if (sel.dataset.optional) sel.append(new Option("(none)", ""));
  for (const [group, paths] of Object.entries(IMAGES)) {
    const g = document.createElement("optgroup");
    g.label = group;
    for (const p of paths) {
      const isMap = baseName(p).match(/_sem\.png$/i);
      if ((filter === "maps") !== !!isMap) continue;
      if (filter === "paired" && !paths.includes(p.replace(/\.[^.]+$/, "_sem.png"))) continue;
      g.append(new Option(baseName(p), p));
    }
    if (g.children.length) sel.append(g);
  }
  if (keep && [...sel.options].some((o) => o.value === keep)) sel.value = keep;
}

// A picker: a select of samples/uploads, an upload button, a thumbnail. Returns {get, set, el}.
function makePicker(container, {filter = "", optional = false, onChange = null} = {}) {
  const sel = document.createElement("select");
  sel.className = "images";
  sel.dataset.filter = filter;
  if (optional) sel.dataset.optional = "1";
  const up = document.createElement("input");
  up.type = "file"; up.accept = "image/*";
  const img = document.createElement("img");
  img.alt = "the picked image";
  img.hidden = true;
  const refresh = () => {
    if (sel.value) img.src = fileUrl(sel.value); else img.removeAttribute("src");  // no src, not an empty one
    img.hidden = !sel.value;
    if (onChange) onChange(sel.value);
  };
  sel.addEventListener("change", refresh);
  up.addEventListener("change", async () => {
    if (!up.files.length) return;
    const f = up.files[0];
    try {
      const r = await api("/api/upload?name=" + encodeURIComponent(f.name), {method: "POST", body: f});
      await loadImages();
      set(r.path);
      showError("");
    } finally { up.value = ""; }
  });
  clearLoading(container);
  container.append(sel, up, img);
  fillImageSelect(sel);
  function set(path) {
    if (path && ![...sel.options].some((o) => o.value === path)) sel.append(new Option(baseName(path), path));
    sel.value = path || "";
    refresh();
  }
  return {get: () => sel.value || null, set, el: sel};
}

// ------------------------------------------------------------------ the parameter panel (from the dataclasses)
function buildPanel(container, fields) {
  container.innerHTML = "";
  const sections = {};
  for (const f of fields) {
    let det = sections[f.section];
    if (!det) {
      det = sections[f.section] = document.createElement("details");
      det.innerHTML = `<summary>${f.section}</summary>`;
      if (["run", "image", "optimizer", "doodle"].includes(f.section)) det.open = true;
      container.append(det);
    }
    const row = document.createElement("div");
    row.className = "field";
    row.title = f.help || "";
    const label = document.createElement("label");
    label.textContent = f.key;
    let input;
    if (f.widget === "bool") {
      input = document.createElement("input"); input.type = "checkbox";
    } else if (f.widget === "choice") {
      input = document.createElement("select");
      f.choices.forEach((c, i) => input.append(new Option(String(c), String(i))));
    } else {
      input = document.createElement("input"); input.type = "text";
    }
    input.name = f.key;
    input.dataset.key = f.key;
    input.addEventListener("change", () => row.classList.toggle("changed", JSON.stringify(getField(f, input)) !== JSON.stringify(f.default)));
    label.htmlFor = input.id = "field-" + container.id + "-" + f.key.replace(/\./g, "-");
    row.append(label, input);
    det.append(row);
    f.input = input; f.row = row;
    setField(f, f.default);
  }
  return {
    values() { const v = {}; for (const f of fields) v[f.key] = getField(f, f.input); return v; },
    set(values) { for (const f of fields) if (f.key in values) setField(f, values[f.key]); },
    reset() { for (const f of fields) setField(f, f.default); },
  };
}
function setField(f, value) {
  const el = f.input;
  if (f.widget === "bool") el.checked = !!value;
  else if (f.widget === "choice") el.value = String(f.choices.findIndex((c) => c === value));
  else if (f.widget === "str") el.value = value == null ? "" : value;
  else el.value = value == null ? "" : (typeof value === "object" ? JSON.stringify(value) : String(value));
  f.row.classList.toggle("changed", JSON.stringify(value) !== JSON.stringify(f.default));
}
function getField(f, el) {
  if (f.widget === "bool") return el.checked;
  if (f.widget === "choice") return f.choices[Number(el.value)];
  if (f.widget === "str") return el.value === "" ? null : el.value;
  return el.value;  // int, float, yaml: the server reads it as YAML, as after --set
}

// ------------------------------------------------------------------ style transfer tab
const NST = {};
async function initNst() {
  const schema = await api("/api/schema/nst");
  NST.panel = buildPanel($("#nst-panel"), schema.fields);
  NST.content = makePicker($("#nst-content"));
  NST.styles = [];
  $("#nst-add-style").addEventListener("click", () => addStyle(null, 1.0));
  NST.presets = await api("/api/presets/nst");
  fillPresets($("#nst-preset"), NST.presets, applyNstPreset);
  const quick = Math.max(0, NST.presets.findIndex((p) => p.name === "quick"));  // a first run in minutes
  if (NST.presets.length) { $("#nst-preset").value = String(quick); applyNstPreset(NST.presets[quick]); }
  $("#nst-start").addEventListener("click", () => startRun("nst", nstValues()));
  $("#nst-save").addEventListener("click", () => saveYaml("nst", nstValues()));
}
function addStyle(path, weight) {
  const row = document.createElement("div");
  row.className = "style-row";
  const holder = document.createElement("span"); holder.className = "picker";
  const w = document.createElement("input"); w.type = "text"; w.size = 4; w.value = weight; w.className = "style-weight";
  const rm = document.createElement("button"); rm.textContent = "×"; rm.type = "button";
  row.append(holder, document.createTextNode(" weight "), w, rm);
  clearLoading($("#nst-styles"));
  $("#nst-styles").append(row);
  const picker = makePicker(holder);
  if (path) picker.set(path);
  const entry = {picker, w, row};
  NST.styles.push(entry);
  rm.addEventListener("click", () => { row.remove(); NST.styles = NST.styles.filter((e) => e !== entry); });
}
function applyNstPreset(p) {
  NST.panel.set(p.values);
  NST.content.set(p.inputs.content);
  NST.styles.forEach((e) => e.row.remove()); NST.styles = [];
  (p.inputs.style || []).forEach((s) => addStyle(s.path, s.weight));
}
function nstValues() {
  return {...NST.panel.values(), content: NST.content.get(),
          style: NST.styles.map((e) => ({path: e.picker.get(), weight: Number(e.w.value)}))};
}
function fillPresets(sel, presets, apply) {
  sel.innerHTML = "";
  presets.forEach((p, i) => sel.append(new Option(p.name, String(i))));
  sel.addEventListener("change", () => apply(presets[Number(sel.value)]));
}

async function startRun(kind, values) {
  showError("");
  const job = await postJSON("/api/runs", {kind, values});
  LIVE.watch = job.id;
  renderQueue({current: null, queue: [job]});
  return job;
}
async function saveYaml(kind, values) {
  showError("");
  const text = await postJSON("/api/config", {kind, values});
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], {type: "application/x-yaml"}));
  a.download = `studio_${kind}.yaml`;
  document.body.append(a); a.click(); a.remove();
}

// ------------------------------------------------------------------ doodle tab: palette and painter
const DOODLE = {palette: [], colour: 0, tool: "brush", undo: [], redo: []};
async function initDoodle() {
  const schema = await api("/api/schema/doodle");
  DOODLE.panel = buildPanel($("#doodle-panel"), schema.fields);
  // the style's map: the one beside it (Monet.jpg -> Monet_sem.png), another one picked, or one made here
  DOODLE.style = makePicker($("#doodle-style"), {onChange: (p) => DOODLE.styleMap.set(pairedMap(p))});
  DOODLE.styleMap = makePicker($("#doodle-style-map"), {filter: "maps", optional: true, onChange: loadPalette});
  DOODLE.startMap = makePicker($("#doodle-start-map"), {filter: "maps"});
  DOODLE.content = makePicker($("#doodle-content"), {optional: true});
  DOODLE.canvas = $("#doodle-canvas");
  DOODLE.ctx = DOODLE.canvas.getContext("2d", {willReadFrequently: true});
  DOODLE.presets = await api("/api/presets/doodle");
  fillPresets($("#doodle-preset"), DOODLE.presets, applyDoodlePreset);
  $$(".tool").forEach((b) => b.addEventListener("click", () => {
    DOODLE.tool = b.dataset.tool; $$(".tool").forEach((x) => x.classList.toggle("active", x === b));
  }));
  $("#brush-size").addEventListener("input", (e) => ($("#brush-size-value").textContent = e.target.value));
  $("#doodle-undo").addEventListener("click", () => history_(DOODLE.undo, DOODLE.redo));
  $("#doodle-redo").addEventListener("click", () => history_(DOODLE.redo, DOODLE.undo));
  $("#doodle-clear").addEventListener("click", () => { pushUndo(); fillAll(eraseColour()); });
  $("#doodle-load-map").addEventListener("click", () => loadMapIntoCanvas(DOODLE.startMap.get()));
  $("#doodle-resize").addEventListener("click", () => newCanvas(Number($("#doodle-canvas-size").value)));
  $("#doodle-save-map").addEventListener("click", (e) => { e.currentTarget.href = DOODLE.canvas.toDataURL("image/png"); });
  bindPainter();
  $$(".make-map").forEach((b) => b.addEventListener("click", () => makeMap(b.dataset.side).catch(() => {})));  // shown
  $("#doodle-start").addEventListener("click", async () => startRun("doodle", await doodleValues()));
  $("#doodle-save").addEventListener("click", async () => saveYaml("doodle", await doodleValues()));
  if (DOODLE.presets.length) await applyDoodlePreset(DOODLE.presets[0]);  // ready means this tab is filled too
}
async function applyDoodlePreset(p) {
  DOODLE.panel.set(p.values);
  DOODLE.content.set(p.inputs.content);
  DOODLE.style.set(p.inputs.style);  // loads the palette of its map
  if (p.inputs["doodle.style_map"]) DOODLE.styleMap.set(p.inputs["doodle.style_map"]);
  await DOODLE.paletteLoaded;
  const start = p.inputs["doodle.target_map"] || p.inputs["doodle.content_map"];
  if (start) { DOODLE.startMap.set(start); await loadMapIntoCanvas(start); }
}
function pairedMap(path) {
  const want = (path || "").replace(/\.[^.]+$/, "_sem.png");
  return path && Object.values(IMAGES).some((paths) => paths.includes(want)) ? want : null;
}
function loadPalette(path) {
  DOODLE.paletteLoaded = (async () => {
    if (!path) {  // a style without a map: nothing to paint with until one is picked or made
      DOODLE.map = null; DOODLE.palette = [];
      $("#doodle-palette").textContent = "no map for this style: pick one or make one";
      $("#erase-to").innerHTML = "";
      return;
    }
    const info = await api("/api/palette?path=" + encodeURIComponent(path));
    DOODLE.map = info.map;
    DOODLE.palette = info.palette.map((hex) => [1, 3, 5].map((i) => parseInt(hex.substr(i, 2), 16)));
    const box = $("#doodle-palette"); box.innerHTML = "";
    const erase = $("#erase-to"); erase.innerHTML = "";
    info.palette.forEach((hex, i) => {
      const s = document.createElement("div");
      s.className = "swatch" + (i === DOODLE.colour ? " active" : "");
      s.style.background = hex; s.dataset.index = i; s.id = "swatch-" + i;
      s.textContent = `${i}: ${(100 * info.shares[i]).toFixed(0)}%`;
      s.title = `label ${i}: ${hex}, ${(100 * info.shares[i]).toFixed(1)}% of ${baseName(info.map)}`;
      s.addEventListener("click", () => { DOODLE.colour = i; $$(".swatch").forEach((x) => x.classList.toggle("active", x === s)); });
      box.append(s);
      erase.append(new Option(`${i} ${hex}`, String(i)));
    });
    DOODLE.colour = Math.min(DOODLE.colour, DOODLE.palette.length - 1);
    const long = Number($("#doodle-canvas-size").value) || 128;
    const scale = long / Math.max(info.width, info.height);
    if (!DOODLE.sized) newCanvas(long, Math.round(info.width * scale), Math.round(info.height * scale));
    else snapCanvas();
  })();
  return DOODLE.paletteLoaded;
}
const eraseColour = () => DOODLE.palette[Number($("#erase-to").value) || 0] || [255, 255, 255];
function newCanvas(long, w, h) {
  if (!w) { const r = DOODLE.canvas.width / DOODLE.canvas.height; w = r >= 1 ? long : Math.round(long * r); h = r >= 1 ? Math.round(long / r) : long; }
  DOODLE.canvas.width = w; DOODLE.canvas.height = h; DOODLE.sized = true;
  DOODLE.undo = []; DOODLE.redo = [];
  fillAll(eraseColour() || [255, 255, 255]);
}
function fillAll(rgb) {
  const c = DOODLE.ctx;
  c.fillStyle = `rgb(${rgb.join(",")})`;
  c.fillRect(0, 0, DOODLE.canvas.width, DOODLE.canvas.height);
}
function pushUndo() {
  DOODLE.undo.push(DOODLE.ctx.getImageData(0, 0, DOODLE.canvas.width, DOODLE.canvas.height));
  if (DOODLE.undo.length > 50) DOODLE.undo.shift();
  DOODLE.redo = [];
}
function history_(from, to) {
  if (!from.length) return;
  to.push(DOODLE.ctx.getImageData(0, 0, DOODLE.canvas.width, DOODLE.canvas.height));
  const img = from.pop();
  DOODLE.canvas.width = img.width; DOODLE.canvas.height = img.height;
  DOODLE.ctx.putImageData(img, 0, 0);
}
// Every pixel to its nearest palette colour: the doodle stays inside the map's labels (no anti-aliasing).
function snapCanvas() {
  const {width: w, height: h} = DOODLE.canvas, img = DOODLE.ctx.getImageData(0, 0, w, h), d = img.data, pal = DOODLE.palette;
  if (!pal.length) return;
  for (let i = 0; i < d.length; i += 4) {
    let best = 0, bd = Infinity;
    for (let k = 0; k < pal.length; k++) {
      const dist = (d[i] - pal[k][0]) ** 2 + (d[i + 1] - pal[k][1]) ** 2 + (d[i + 2] - pal[k][2]) ** 2;
      if (dist < bd) { bd = dist; best = k; }
    }
    d[i] = pal[best][0]; d[i + 1] = pal[best][1]; d[i + 2] = pal[best][2]; d[i + 3] = 255;
  }
  DOODLE.ctx.putImageData(img, 0, 0);
}
async function loadMapIntoCanvas(path) {
  if (!path) return;
  const img = new Image();
  img.src = fileUrl(path);
  await img.decode();
  pushUndo();
  const long = Number($("#doodle-canvas-size").value) || 128, scale = long / Math.max(img.width, img.height);
  DOODLE.canvas.width = Math.round(img.width * scale); DOODLE.canvas.height = Math.round(img.height * scale);
  DOODLE.sized = true;
  DOODLE.ctx.imageSmoothingEnabled = false;
  DOODLE.ctx.drawImage(img, 0, 0, DOODLE.canvas.width, DOODLE.canvas.height);
  snapCanvas();
}
function bindPainter() {
  const cv = DOODLE.canvas;
  let last = null, img = null;
  const at = (e) => { const r = cv.getBoundingClientRect(); return [Math.floor((e.clientX - r.left) * cv.width / r.width), Math.floor((e.clientY - r.top) * cv.height / r.height)]; };
  const stamp = ([x, y], rgb) => {  // a hard-edged disc: only palette colours, never blended ones
    const rad = Number($("#brush-size").value) / 2, d = img.data, w = cv.width, h = cv.height;
    for (let j = Math.floor(y - rad); j <= y + rad; j++) for (let i = Math.floor(x - rad); i <= x + rad; i++) {
      if (i < 0 || j < 0 || i >= w || j >= h || (i - x) ** 2 + (j - y) ** 2 > rad * rad + 0.25) continue;
      const o = 4 * (j * w + i); d[o] = rgb[0]; d[o + 1] = rgb[1]; d[o + 2] = rgb[2]; d[o + 3] = 255;
    }
  };
  const line = (a, b, rgb) => { const n = Math.max(1, Math.hypot(b[0] - a[0], b[1] - a[1])); for (let t = 0; t <= n; t++) stamp([Math.round(a[0] + (b[0] - a[0]) * t / n), Math.round(a[1] + (b[1] - a[1]) * t / n)], rgb); };
  const colour = () => (DOODLE.tool === "eraser" ? eraseColour() : DOODLE.palette[DOODLE.colour]);
  cv.addEventListener("pointerdown", (e) => {
    if (!DOODLE.palette.length) return;
    pushUndo();
    const p = at(e);
    img = DOODLE.ctx.getImageData(0, 0, cv.width, cv.height);
    if (DOODLE.tool === "fill") { floodFill(img, p, DOODLE.palette[DOODLE.colour]); DOODLE.ctx.putImageData(img, 0, 0); img = null; return; }
    cv.setPointerCapture(e.pointerId);
    last = p; stamp(p, colour()); DOODLE.ctx.putImageData(img, 0, 0);
  });
  cv.addEventListener("pointermove", (e) => {
    if (!last || !img) return;
    const p = at(e); line(last, p, colour()); last = p; DOODLE.ctx.putImageData(img, 0, 0);
  });
  const end = () => { last = null; img = null; };
  cv.addEventListener("pointerup", end); cv.addEventListener("pointercancel", end);
}
function floodFill(img, [x, y], rgb) {
  const {width: w, height: h, data: d} = img, o0 = 4 * (y * w + x), target = [d[o0], d[o0 + 1], d[o0 + 2]];
  if (target.every((v, i) => v === rgb[i])) return;
  const stack = [[x, y]];
  while (stack.length) {
    const [i, j] = stack.pop();
    if (i < 0 || j < 0 || i >= w || j >= h) continue;
    const o = 4 * (j * w + i);
    if (d[o] !== target[0] || d[o + 1] !== target[1] || d[o + 2] !== target[2]) continue;
    d[o] = rgb[0]; d[o + 1] = rgb[1]; d[o + 2] = rgb[2]; d[o + 3] = 255;
    stack.push([i + 1, j], [i - 1, j], [i, j + 1], [i, j - 1]);
  }
}
// "Make map": an automatic map (POST /api/automap, doodle.automap) of the style image, used as its map, or of
// the content photo in the style map's colours, loaded into the canvas as the doodle to retouch.
async function makeMap(side) {
  const btn = $(`#doodle-make-${side}-map`), label = btn.textContent;
  const image = (side === "style" ? DOODLE.style : DOODLE.content).get();
  if (!image) return showError(`error: pick a ${side} image first`);
  const req = {image, labels: $("#automap-labels").value, seed: $("#automap-seed").value};
  if (side === "content") Object.assign(req, {style: DOODLE.style.get(), style_map: DOODLE.map});
  btn.disabled = true; btn.textContent = "Making map…"; showError("");
  try {
    const r = await postJSON("/api/automap", req);
    await loadImages();
    if (r.style_map) showMadeMap($("#doodle-style-automap"), r.style_map);  // the style had none: made too
    showMadeMap($(`#doodle-${side}-automap`), r);
    const styleMap = side === "style" ? r.path : r.style_map && r.style_map.path;
    if (styleMap) DOODLE.styleMap.set(styleMap);
    await DOODLE.paletteLoaded;
    if (side === "content") { DOODLE.startMap.set(r.path); await loadMapIntoCanvas(r.path); }
  } finally { btn.disabled = false; btn.textContent = label; }
}
function showMadeMap(box, r) {
  const img = document.createElement("img"), info = document.createElement("span"), a = document.createElement("a");
  img.src = r.url; img.alt = "automatic map";
  info.textContent = `${baseName(r.path)}: ${r.palette.length} regions (${r.shares.map((s) => (100 * s).toFixed(0) + "%").join(", ")})`;
  info.title = r.notes ? r.notes.join("\n") : "";
  a.href = r.url; a.download = baseName(r.path); a.textContent = "Download map PNG";
  box.replaceChildren(img, info, a); box.hidden = false; box.dataset.path = r.path;
}
async function doodleValues() {
  const blob = await new Promise((res) => DOODLE.canvas.toBlob(res, "image/png"));
  const up = await api("/api/upload?name=doodle_sem.png", {method: "POST", body: blob});
  const content = DOODLE.content.get();
  const v = {...DOODLE.panel.values(), style: DOODLE.style.get(), content, "doodle.style_map": DOODLE.map};
  if (content) v["doodle.content_map"] = up.path; else v["doodle.target_map"] = up.path;
  return v;
}

// ------------------------------------------------------------------ the live run panel (server-sent events)
const LIVE = {watch: null, shown: null, previewVersion: -1};
function connectEvents() {
  const es = new EventSource("/api/events");
  es.onmessage = (m) => onState(JSON.parse(m.data));
  es.onerror = () => { $("#queue").textContent = "(reconnecting to the studio…)"; };
}
function timeLeft(job) {
  // the engine's estimate from the plan's pixel-iterations still to do (prints: coarse scales are cheap)
  if (job.status !== "running" || !(job.seconds_left >= 0) || job.iteration < 2) return "";
  const s = job.seconds_left;
  return s >= 600 ? ` · ${Math.round(s / 60)} min left` : ` · ${Math.round(s)} s left`;
}
function renderQueue(st) {
  const parts = [];
  if (st.current) parts.push(`running: ${st.current.label} (${st.current.iteration}/${st.current.total_iterations})`);
  if (st.queue.length) parts.push(`queued: ${st.queue.map((j) => j.label).join(", ")}`);
  $("#queue").textContent = parts.join(" · ") || "idle";
}
async function onState(st) {
  renderQueue(st);
  const cur = st.current;
  if (cur) {
    if (LIVE.shown !== cur.id) { LIVE.shown = cur.id; LIVE.previewVersion = -1; clearResult(); }
    LIVE.watch = cur.id;
    $("#live-title").textContent = cur.label;
    const phase = cur.phases > 1 ? ` · phase ${cur.phase + 1}/${cur.phases}` : "";
    const tile = cur.tile ? ` · tile ${cur.tile}/${cur.tiles} pass ${cur.tile_pass}/${cur.tile_passes} (${st.where})` : "";
    $("#live-status").textContent = `${cur.status} · iteration ${cur.iteration}/${cur.total_iterations}${phase}${tile}` + (cur.size[0] ? ` · ${cur.size[1]}×${cur.size[0]} px` : "") + timeLeft(cur);
    $("#live-status").className = "status-" + cur.status;
    $("#live-progress").value = cur.total_iterations ? cur.iteration / cur.total_iterations : 0;
    $("#cancel").disabled = false;
    if (cur.preview_version !== LIVE.previewVersion && cur.preview_version > 0) {
      LIVE.previewVersion = cur.preview_version;
      $("#preview").src = `/api/runs/${cur.id}/preview.png?v=${cur.preview_version}`;
      showPreview();
      $("#preview").dataset.version = cur.preview_version;
    }
    drawLosses(cur.losses);
  } else if (LIVE.watch && !st.queue.some((j) => j.id === LIVE.watch)) {
    const id = LIVE.watch; LIVE.watch = null;
    await showRun(id);
  }
  $("#cancel").disabled = !cur && !st.queue.length;
}
function showPreview() { $("#preview").hidden = false; $("#preview-placeholder").hidden = true; }
function clearResult() { $("#snapshots").innerHTML = ""; $("#download-result").hidden = true; $("#download-zip").hidden = true; }
async function showRun(id) {
  const r = await api("/api/runs/" + id);
  LIVE.shown = id;
  $("#live-title").textContent = r.label;
  $("#live-status").textContent = r.status + (r.message ? ` · ${r.message}` : "") + (r.wall_seconds ? ` · ${r.wall_seconds.toFixed(1)} s` : "");
  $("#live-status").className = "status-" + r.status;
  if (r.status === "error" || r.status === "failed") showError(r.message);
  if (r.thumbnail) { $("#preview").src = `/api/runs/${id}/files/${r.thumbnail}?t=${Date.now()}`; showPreview(); }
  $("#preview").dataset.final = r.has_result ? "result" : r.status;
  const res = $("#download-result");
  res.hidden = !r.has_result; res.href = `/api/runs/${id}/files/result.png`; res.download = `${id}.png`;
  const zip = $("#download-zip"); zip.hidden = false; zip.href = `/api/runs/${id}/zip`;
  const strip = $("#snapshots"); strip.innerHTML = "";
  for (const s of [...r.snapshots, ...(r.has_result ? ["result.png"] : [])]) {
    const f = document.createElement("figure");
    f.innerHTML = `<img src="/api/runs/${id}/files/${s}"><figcaption>${s.replace(".png", "")}</figcaption>`;
    strip.append(f);
  }
  if (r.losses) drawLosses(r.losses.iteration.map((it, i) => ({iteration: it, total: r.losses.total[i], content: r.losses.content[i], style: r.losses.style[i], tv: r.losses.tv[i]})));
  $("#live-progress").value = r.has_result ? 1 : $("#live-progress").value;
  return r;
}
$("#cancel").addEventListener("click", async () => {
  const id = LIVE.watch || LIVE.shown;
  if (id) await api(`/api/runs/${id}/cancel`, {method: "POST"});
});
// Loss curves, log scale: total, content, style, tv.
function drawLosses(rows) {
  const cv = $("#loss-chart"), c = cv.getContext("2d"), W = cv.width, H = cv.height, pad = 28;
  c.clearRect(0, 0, W, H);
  if (!rows || !rows.length) {  // before a run: say what will be drawn here
    c.fillStyle = "#777"; c.font = "13px system-ui, sans-serif"; c.textAlign = "center";
    c.fillText("the loss curves (total, content, style, tv) appear here", W / 2, H / 2);
    c.textAlign = "start";
    return;
  }
  const terms = [["total", "#222"], ["content", "#1b5fb5"], ["style", "#c8402f"], ["tv", "#2a7a2a"]];
  const vals = rows.flatMap((r) => terms.map(([t]) => r[t])).filter((v) => v > 0);
  if (!vals.length) return;
  const lo = Math.log10(Math.min(...vals)), hi = Math.log10(Math.max(...vals)) + 1e-9, n = rows[rows.length - 1].iteration;
  const X = (it) => pad + (W - pad - 6) * (it - 1) / Math.max(1, n - 1), Y = (v) => H - pad + 10 - (H - pad - 4) * (Math.log10(v) - lo) / (hi - lo || 1);
  c.strokeStyle = "#ccc"; c.strokeRect(pad, 4, W - pad - 6, H - pad + 6 - 4);
  c.fillStyle = "#555"; c.font = "10px sans-serif";
  c.fillText(`1e${hi.toFixed(1)}`, 0, 12); c.fillText(`1e${lo.toFixed(1)}`, 0, H - pad + 10); c.fillText(`iteration ${n}`, W - 80, H - 4);
  terms.forEach(([t, col], k) => {
    c.strokeStyle = col; c.beginPath(); let started = false;
    for (const r of rows) { if (!(r[t] > 0)) continue; const x = X(r.iteration), y = Y(r[t]); started ? c.lineTo(x, y) : c.moveTo(x, y); started = true; }
    c.stroke(); c.fillStyle = col; c.fillText(t, pad + 6 + 50 * k, H - 4);
  });
}

// ------------------------------------------------------------------ runs history
async function loadRuns() {
  const rows = await api("/api/runs");
  const body = $("#runs-table tbody"); body.innerHTML = "";
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.dataset.id = r.id;
    const thumb = r.thumbnail ? `<img src="/api/runs/${r.id}/files/${r.thumbnail}">` : "";
    tr.innerHTML = `<td><input type="checkbox" class="run-pick" value="${r.id}"></td><td>${r.label}<br><small>${r.id}</small></td>
      <td>${r.kind}</td><td class="status-${r.status}">${r.status}</td><td>${thumb}</td>
      <td><button class="reopen">Reopen</button> <a href="/api/runs/${r.id}/zip">zip</a></td>`;
    tr.querySelector(".reopen").addEventListener("click", () => reopen(r.id));
    body.append(tr);
  }
}
// Reopen: the run in the live panel, its settings in its tab's form, ready to re-run with changes.
async function reopen(id) {
  const r = await showRun(id);
  if (!r.config) return;
  if (r.kind === "nst") {
    applyNstPreset({values: flattenFor(NST.panel, r.config), inputs: {content: r.config.content, style: r.config.style}});
    showTab("nst");
  } else {
    DOODLE.panel.set(flattenFor(DOODLE.panel, r.config));
    DOODLE.content.set(r.config.content);
    DOODLE.style.set(r.config.style);
    if (r.config.doodle.style_map && r.config.doodle.style_map !== "auto") DOODLE.styleMap.set(r.config.doodle.style_map);
    await DOODLE.paletteLoaded;
    const m = r.config.doodle.target_map || r.config.doodle.content_map;
    if (m) { DOODLE.startMap.set(m); await loadMapIntoCanvas(m); }
    showTab("doodle");
  }
}
function flattenFor(panel, config) {
  const out = {};
  for (const key of Object.keys(panel.values())) {
    let node = config;
    for (const part of key.split(".")) node = node == null ? undefined : node[part];
    if (node !== undefined) out[key] = node;
  }
  return out;
}
$("#runs-refresh").addEventListener("click", loadRuns);
$("#runs-compare").addEventListener("click", () => {
  const ids = $$(".run-pick:checked").map((c) => c.value);
  if (!ids.length) return showError("error: pick runs to compare");
  const img = $("#compare-img");
  img.onerror = async () => { try { await api(img.src); } catch (e) { /* shown */ } };
  img.src = `/api/compare.png?ids=${ids.join(",")}&log=${$("#runs-log").checked ? 1 : 0}&t=${Date.now()}`;
  img.hidden = false;
});

// ------------------------------------------------------------------ start
// Until the panels are filled the page says it is loading and its buttons wait (data-wait); a failure says why.
(async () => {
  drawLosses([]);
  try {
    await loadImages();
    await initNst();
    await initDoodle();
    connectEvents();
    $$("[data-wait]").forEach((b) => { b.disabled = false; });
    $("#loading").hidden = true;
    document.body.dataset.ready = "1";
  } catch (e) {
    console.error(e);
    $("#loading").textContent = "The studio could not load its panels (see the error above); reload the page to try again.";
    if (!$("#error").textContent) showError(`error: ${e.message || e}`);
  }
})();

// medklip web page: talks to the JSON API of `medklip serve` (see medklip/app/server.py).
"use strict";
const $ = (id) => document.getElementById(id);
let knowledge = { findings: [], default: [] };
let maxMB = 50;
let chosenFile = null;
let lastResult = null;

function showMessage(text, isError) {
  const m = $("message");
  m.textContent = text;
  m.className = isError ? "error" : "";
}

function slug(s) { return s.replace(/[^A-Za-z0-9_-]/g, "_"); }

function renderFindings() {
  const q = $("finding-search").value.trim().toLowerCase();
  for (const label of $("finding-list").children) {
    label.style.display = q === "" || label.dataset.name.toLowerCase().includes(q) ? "" : "none";
  }
  const n = selectedFindings().length;
  $("selected-count").textContent = n ? `${n} selected` : "";
}

function selectedFindings() {
  return [...$("finding-list").querySelectorAll("input:checked")].map((c) => c.value);
}

async function loadKnowledge() {
  const [f, h] = await Promise.all([fetch("/api/findings"), fetch("/api/health")]);
  knowledge = await f.json();
  const health = await h.json();
  maxMB = health.max_upload_mb;
  $("max-mb").textContent = Math.round(maxMB);
  const info = health.model_info;
  $("model-info").textContent = `Model: ${health.model}, trained on ${info.trained_on}.`;
  $("research-use").textContent = info.research_use;
  if (info.notice) {
    $("notice").textContent = `This model was ${info.notice}.`;
    $("notice").hidden = false;
  }
  const list = $("finding-list");
  for (const e of knowledge.findings) {
    const label = document.createElement("label");
    label.dataset.name = e.name;
    label.title = e.description;
    if (!e.in_model) label.className = "absent";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = e.name;
    box.id = "finding-" + slug(e.name);
    box.addEventListener("change", renderFindings);
    label.append(box, " " + e.name + (e.in_model ? "" : " (by description)"));
    list.append(label);
  }
  renderFindings();
}

function setFile(file) {
  chosenFile = file || null;
  $("file-name").textContent = file ? `${file.name} (${(file.size / 1048576).toFixed(1)} MB)` : "";
  showMessage("", false);
}

async function run() {
  if (!chosenFile) { showMessage("Choose an image first.", true); return; }
  if (chosenFile.size > maxMB * 1048576) {
    showMessage(`${chosenFile.name} is larger than ${Math.round(maxMB)} MB.`, true); return;
  }
  const name = $("describe-name").value.trim();
  const text = $("describe-text").value.trim();
  if (name && !text) { showMessage(`The description of ${name} is empty.`, true); return; }
  if (text && !name) { showMessage("Give the described disease a name.", true); return; }
  const findings = selectedFindings();
  if (!findings.length && !name) { showMessage("Choose at least one finding or describe a disease.", true); return; }
  const form = new FormData();
  form.append("file", chosenFile, chosenFile.name);
  form.append("findings", findings.join(","));
  if (name) { form.append("describe_name", name); form.append("describe_text", text); }
  $("run").disabled = true;
  showMessage("Running...", false);
  try {
    const response = await fetch("/api/predict", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) { showMessage(body.error || `The server answered ${response.status}.`, true); return; }
    lastResult = body;
    renderResults(body);
    showMessage(`Done: ${body.results.length} findings for ${body.image.filename}.`, false);
  } catch (err) {
    showMessage("The server could not be reached: " + err, true);
  } finally {
    $("run").disabled = false;
  }
}

function renderResults(body) {
  $("output").hidden = false;
  const tbody = $("results-table").querySelector("tbody");
  tbody.replaceChildren();
  const overlays = $("overlays");
  overlays.replaceChildren();
  const imageSrc = "data:image/png;base64," + body.image.png;
  for (const r of body.results) {
    const tr = document.createElement("tr");
    tr.className = "result-row";
    const pct = (100 * r.probability).toFixed(1);
    tr.innerHTML = `<td></td><td>${r.probability.toFixed(3)}</td>` +
      `<td><div class="bar" style="width:${pct}px"></div></td><td>${r.query}</td>` +
      `<td class="calibration"></td><td class="operating-point"></td>`;
    tr.firstChild.textContent = r.finding;
    tr.querySelector(".calibration").textContent = r.calibrated ? "calibrated on " + r.calibration : "uncalibrated";
    tr.querySelector(".operating-point").textContent = r.operating_point === null ? "none recorded" :
      `${r.above_operating_point ? "above" : "below"} ${r.operating_point.toFixed(3)}`;
    tbody.append(tr);

    const card = document.createElement("div");
    card.className = "card";
    card.id = "overlay-" + slug(r.finding);
    const h = document.createElement("h3");
    h.textContent = `${r.finding}: p = ${r.probability.toFixed(3)}`;
    const pair = document.createElement("div");
    pair.className = "pair";
    const original = new Image();
    original.src = imageSrc;
    original.alt = "image";
    original.style.maxWidth = "360px";
    original.style.maxHeight = "360px";
    const stack = document.createElement("div");
    stack.className = "stack";
    const base = new Image();
    base.src = imageSrc;
    base.alt = r.finding + " image";
    const heat = new Image();
    heat.className = "heat";
    heat.src = "data:image/png;base64," + r.heatmap_png;
    heat.alt = r.finding + " heatmap";
    heat.style.opacity = $("opacity").value / 100;
    stack.append(base, heat);
    pair.append(original, stack);
    const save = document.createElement("button");
    save.type = "button";
    save.textContent = "download overlay (PNG)";
    save.addEventListener("click", () => downloadOverlay(base, heat, r.finding));
    const legend = document.createElement("p");
    legend.className = "legend";
    legend.textContent = "Heatmap: the model's attention for this query (blue low, red high), upsampled to the image.";
    card.append(h, pair, legend, save);
    if (body.notice) {
      const note = document.createElement("p");
      note.className = "notice result-notice";
      note.textContent = `Model ${body.notice}.`;
      card.prepend(note);
    }
    overlays.append(card);
  }
}

function downloadBlob(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function downloadOverlay(base, heat, finding) {
  const c = document.createElement("canvas");
  c.width = base.naturalWidth;
  c.height = base.naturalHeight;
  const ctx = c.getContext("2d");
  ctx.drawImage(base, 0, 0);
  ctx.globalAlpha = $("opacity").value / 100;
  ctx.drawImage(heat, 0, 0, c.width, c.height);
  c.toBlob((b) => downloadBlob(b, `${slug(lastResult.image.filename)}_${slug(finding)}.png`), "image/png");
}

function init() {
  $("file").addEventListener("change", (e) => setFile(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) setFile(e.dataTransfer.files[0]);
  });
  $("finding-search").addEventListener("input", renderFindings);
  $("select-default").addEventListener("click", () => {
    for (const c of $("finding-list").querySelectorAll("input")) c.checked = knowledge.default.includes(c.value);
    renderFindings();
  });
  $("select-none").addEventListener("click", () => {
    for (const c of $("finding-list").querySelectorAll("input")) c.checked = false;
    renderFindings();
  });
  $("opacity").addEventListener("input", () => {
    for (const img of document.querySelectorAll("img.heat")) img.style.opacity = $("opacity").value / 100;
  });
  $("download-json").addEventListener("click", () => {
    if (!lastResult) return;
    const slim = { image: { ...lastResult.image, png: undefined },
                   results: lastResult.results.map((r) => ({ ...r, heatmap_png: undefined })) };
    downloadBlob(new Blob([JSON.stringify(slim, null, 1)], { type: "application/json" }),
                 `${slug(lastResult.image.filename)}_medklip.json`);
  });
  $("run").addEventListener("click", run);
  loadKnowledge().catch((err) => showMessage("Could not load the finding list: " + err, true));
}

init();

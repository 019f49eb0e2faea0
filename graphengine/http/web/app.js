// graphengine template editor: plain JavaScript, no build step.
// Talks to /templates (REST), /ws (ComfyUI websocket protocol), /history and /view.
"use strict";

const $ = (id) => document.getElementById(id);
const PREDEFINED_KINDS = {};
const state = {
  templates: [],
  current: null,      // {name, bundled, etag, description, defaults, workflow}
  dirty: false,
  report: null,
  values: {},         // placeholder name -> value typed in the form
  clientId: (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)),
  ws: null,
  running: null,      // prompt_id being watched
};

// ---- HTTP with optional bearer token (basic auth is handled by the browser) ----

function token() { return sessionStorage.getItem("graphengine-token") || ""; }

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (token()) headers.set("Authorization", "Bearer " + token());
  const response = await fetch(path, { ...options, headers, credentials: "same-origin" });
  if (response.status === 401) {
    $("auth").open = true;
    showMessage("The server needs credentials: enter the access token above (or reload to sign in).");
  }
  return response;
}

async function apiJson(path, options) {
  const response = await api(path, options);
  let body = null;
  const text = await response.text();
  if (text) { try { body = JSON.parse(text); } catch { body = { error: { message: text } }; } }
  return { response, body };
}

function errorText(body) {
  if (!body) return "request failed";
  const lines = [];
  if (body.error) lines.push(body.error.message + (body.error.details && body.error.details !== body.error.message ? ": " + body.error.details : ""));
  for (const [nodeId, entry] of Object.entries(body.node_errors || {})) {
    for (const err of entry.errors || []) {
      lines.push(`node ${nodeId} (${entry.class_type || "?"}): ${err.message}${err.details ? " — " + err.details : ""}`);
    }
  }
  return lines.join("\n") || JSON.stringify(body);
}

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind === "info" ? "info" : "";
  box.hidden = !text;
}

// ---- template list ----

async function loadList(select) {
  const { response, body } = await apiJson("/templates");
  if (!response.ok) { showMessage(errorText(body)); return; }
  state.templates = body.templates;
  const list = $("template-list");
  list.replaceChildren();
  for (const item of state.templates) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.name = item.name;
    button.textContent = item.name + " ";
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = item.error ? "(unreadable)" : item.bundled ? "(bundled)" : "";
    button.append(tag);
    if (item.description) button.title = item.description;
    button.addEventListener("click", () => openTemplate(item.name));
    li.append(button);
    list.append(li);
  }
  const wanted = select || (state.current && state.current.name) || (state.templates[0] && state.templates[0].name);
  if (wanted) await openTemplate(wanted);
}

function markCurrent() {
  for (const button of $("template-list").querySelectorAll("button")) {
    button.setAttribute("aria-current", String(state.current && button.dataset.name === state.current.name));
  }
}

let openSequence = 0;
async function openTemplate(name) {
  if (state.dirty && !confirm("Discard unsaved changes?")) return;
  const sequence = ++openSequence;  // the last template asked for wins, whatever order replies arrive in
  const { response, body } = await apiJson("/templates/" + encodeURIComponent(name));
  if (sequence !== openSequence) return;
  if (!response.ok) { showMessage(errorText(body)); return; }
  state.current = { ...body, etag: response.headers.get("ETag") || body.etag };
  state.values = { ...(body.defaults || {}) };
  $("name").value = body.name;
  $("description").value = body.description || "";
  $("workflow").value = JSON.stringify(body.workflow, null, 2);
  $("bundled-note").hidden = !body.bundled;
  $("delete").disabled = !!body.bundled;
  setDirty(false);
  showMessage("");
  markCurrent();
  await checkEditor();
}

function setDirty(dirty) {
  state.dirty = dirty;
  $("dirty").textContent = dirty ? "unsaved changes" : "";
}

// ---- live syntax and placeholder checking ----

let checkTimer = null;
function scheduleCheck() {
  setDirty(true);
  clearTimeout(checkTimer);
  checkTimer = setTimeout(checkEditor, 250);
}

function parseEditor() {
  const text = $("workflow").value;
  try {
    const workflow = JSON.parse(text);
    if (workflow === null || typeof workflow !== "object" || Array.isArray(workflow)) {
      throw new SyntaxError("the workflow must be a JSON object of node id → node");
    }
    return { workflow };
  } catch (error) {
    let where = "";
    const match = /position (\d+)/.exec(error.message);
    if (match) {
      const before = text.slice(0, Number(match[1]));
      const line = before.split("\n").length;
      where = ` (line ${line}, column ${before.length - before.lastIndexOf("\n")})`;
    }
    return { error: error.message + where };
  }
}

function currentDocument(workflow) {
  const defaults = {};
  for (const [key, value] of Object.entries(state.values)) {
    if (value !== "" && value !== undefined && value !== null) defaults[key] = value;
  }
  return { name: $("name").value.trim(), description: $("description").value, defaults, workflow };
}

let checkSequence = 0;
async function checkEditor() {
  const sequence = ++checkSequence;
  const parsed = parseEditor();
  const syntax = $("syntax");
  if (parsed.error) {
    syntax.textContent = "JSON error: " + parsed.error;
    syntax.className = "error";
    $("workflow").classList.add("invalid");
    $("workflow").setAttribute("aria-invalid", "true");
    return null;
  }
  const { response, body } = await apiJson("/templates/check", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(currentDocument(parsed.workflow)),
  });
  if (sequence !== checkSequence) return parsed.workflow;  // a newer check owns the display
  if (!response.ok) {
    syntax.textContent = errorText(body);
    syntax.className = "error";
    $("workflow").classList.add("invalid");
    $("workflow").setAttribute("aria-invalid", "true");
    return null;
  }
  syntax.textContent = "JSON OK";
  syntax.className = "ok";
  $("workflow").classList.remove("invalid");
  $("workflow").removeAttribute("aria-invalid");
  state.report = body;
  renderReport(body);
  renderValues(body);
  return parsed.workflow;
}

function renderReport(report) {
  const predefined = $("predefined");
  predefined.replaceChildren();
  for (const p of report.predefined) {
    PREDEFINED_KINDS[p.name] = p.kind;
    const li = document.createElement("li");
    li.textContent = `${p.present ? "✓" : "✗"} %${p.name}%`;
    li.className = p.present ? "present" : "absent";
    li.title = p.description;
    li.setAttribute("aria-label", `${p.name}: ${p.present ? "used" : "not used"}`);
    predefined.append(li);
  }
  const custom = $("custom");
  custom.replaceChildren();
  for (const c of report.custom) {
    const li = document.createElement("li");
    li.append(`%${c.name}% (${c.occurrences.length} use${c.occurrences.length === 1 ? "" : "s"}) `);
    const rename = document.createElement("button");
    rename.type = "button";
    rename.textContent = "Rename";
    rename.setAttribute("aria-label", `Rename placeholder ${c.name}`);
    rename.addEventListener("click", () => renameCustom(c.name));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove placeholder ${c.name}`);
    remove.addEventListener("click", () => removeCustom(c.name));
    li.append(rename, " ", remove);
    custom.append(li);
  }
  if (!report.custom.length) custom.append(Object.assign(document.createElement("li"), { textContent: "none" }));
  const flagged = $("flagged");
  flagged.replaceChildren();
  for (const f of report.flagged) {
    flagged.append(Object.assign(document.createElement("li"), { textContent: "⚠ " + f.message }));
  }
}

// Placeholder edits work on the parsed tree: only whole "%name%" strings are touched.
function mapPlaceholders(value, fn) {
  if (typeof value === "string") { const m = /^%([A-Za-z0-9_][A-Za-z0-9_.\-]{0,63})%$/.exec(value); return m ? fn(m[1], value) : value; }
  if (Array.isArray(value)) return value.map((v) => mapPlaceholders(v, fn));
  if (value && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = mapPlaceholders(v, fn);
    return out;
  }
  return value;
}

function editWorkflow(fn) {
  const parsed = parseEditor();
  if (parsed.error) { showMessage("Fix the JSON first: " + parsed.error); return false; }
  $("workflow").value = JSON.stringify(mapPlaceholders(parsed.workflow, fn), null, 2);
  scheduleCheck();
  return true;
}

function validName(name) { return /^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$/.test(name); }

function renameCustom(oldName) {
  const newName = (prompt(`New name for %${oldName}%`, oldName) || "").trim();
  if (!newName || newName === oldName) return;
  if (!validName(newName)) { showMessage("Placeholder names use letters, digits, '_', '.' and '-'."); return; }
  if (editWorkflow((name, text) => (name === oldName ? `%${newName}%` : text))) {
    if (oldName in state.values) { state.values[newName] = state.values[oldName]; delete state.values[oldName]; }
  }
}

function removeCustom(target) {
  const fallback = state.values[target] !== undefined ? state.values[target] : "";
  if (editWorkflow((name, text) => (name === target ? fallback : text))) delete state.values[target];
}

function addCustom(event) {
  event.preventDefault();
  const name = $("custom-name").value.trim();
  if (!validName(name)) { showMessage("Placeholder names use letters, digits, '_', '.' and '-'."); return; }
  state.values[name] = $("custom-default").value;
  $("custom-name").value = "";
  $("custom-default").value = "";
  showMessage(`Added %${name}%: put "%${name}%" as an input value in the workflow to use it.`, "info");
  scheduleCheck();
}

// ---- values form ----

function renderValues(report) {
  const container = $("values");
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.placeholder : null;
  container.replaceChildren();
  const names = report.predefined.filter((p) => p.present).map((p) => p.name).concat(report.custom.map((c) => c.name));
  for (const name of names) {
    const kind = PREDEFINED_KINDS[name] || "custom";
    const id = "value-" + name.replace(/[^A-Za-z0-9_-]/g, "_");
    const field = document.createElement("div");
    field.className = "field";
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = name;
    let input;
    if (kind === "image") {
      input = document.createElement("input");
      input.type = "file";
      input.accept = "image/*";
      input.addEventListener("change", async () => {
        const file = input.files[0];
        if (!file) return;
        const dataUrl = await new Promise((resolve) => { const r = new FileReader(); r.onload = () => resolve(r.result); r.readAsDataURL(file); });
        state.values[name] = String(dataUrl).split(",")[1];
        setDirty(true);
      });
    } else if (name === "prompt" || name === "negative_prompt") {
      input = document.createElement("textarea");
      input.rows = 2;
    } else {
      input = document.createElement("input");
      input.type = ["int", "float", "seed", "clip_skip"].includes(kind) ? "number" : "text";
      if (kind === "float") input.step = "any";
    }
    input.id = id;
    input.dataset.placeholder = name;
    if (kind !== "image") {
      const value = state.values[name];
      input.value = value === undefined || value === null ? "" : String(value);
      input.addEventListener("input", () => { state.values[name] = input.value; setDirty(true); });
    }
    field.append(label, input);
    container.append(field);
    if (focused === name) input.focus();
  }
}

function valuesForRequest() {
  const values = {};
  for (const [name, value] of Object.entries(state.values)) {
    if (value === "" || value === undefined || value === null) continue;
    values[name] = value;  // strings are converted on the server (typed mode)
  }
  return values;
}

// ---- save / delete / import ----

async function save() {
  const workflow = await checkEditor();
  if (!workflow) { showMessage("The workflow is not valid JSON; nothing was saved."); return false; }
  const doc = currentDocument(workflow);
  if (!doc.name) { showMessage("Give the template a name."); return false; }
  const cur = state.current;
  const headers = { "Content-Type": "application/json" };
  let path;
  if (cur && !cur.bundled && cur.name) {
    path = "/templates/" + encodeURIComponent(cur.name);  // a different doc.name renames
    if (cur.etag) headers["If-Match"] = cur.etag;
  } else {
    path = "/templates/" + encodeURIComponent(doc.name);
    headers["If-None-Match"] = "*";
  }
  const { response, body } = await apiJson(path, { method: "PUT", headers, body: JSON.stringify(doc) });
  if (response.status === 412) {
    showMessage("Someone else changed this template since you opened it. Copy your edits, reload the template, and apply them again.");
    return false;
  }
  if (!response.ok) { showMessage(errorText(body)); return false; }
  state.current = { ...body, etag: response.headers.get("ETag") || body.etag };
  setDirty(false);
  showMessage(`Saved ${body.name}.`, "info");
  await loadList(body.name);
  return true;
}

async function remove() {
  const cur = state.current;
  if (!cur || cur.bundled) return;
  if (!confirm(`Delete template ${cur.name}?`)) return;
  const headers = cur.etag ? { "If-Match": cur.etag } : {};
  const { response, body } = await apiJson("/templates/" + encodeURIComponent(cur.name), { method: "DELETE", headers });
  if (!response.ok) { showMessage(errorText(body)); return; }
  state.current = null;
  setDirty(false);
  showMessage(`Deleted ${cur.name}.`, "info");
  await loadList();
}

async function importFile() {
  const file = $("import-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  const { response, body } = await apiJson("/templates", { method: "POST", body: form });
  $("import-file").value = "";
  if (!response.ok) { showMessage(errorText(body)); return; }
  setDirty(false);
  showMessage(`Imported ${body.name}.`, "info");
  await loadList(body.name);
}

function newTemplate() {
  if (state.dirty && !confirm("Discard unsaved changes?")) return;
  state.current = null;
  state.values = { prompt: "a cat" };
  $("name").value = "";
  $("description").value = "";
  $("bundled-note").hidden = true;
  $("workflow").value = JSON.stringify({ "1": { class_type: "CLIPTextEncode", inputs: { text: "%prompt%", clip: ["2", 1] } } }, null, 2);
  markCurrent();
  scheduleCheck();
  $("name").focus();
}

// ---- running, progress and results ----

function connectSocket() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  let url = `${scheme}//${location.host}/ws?clientId=${encodeURIComponent(state.clientId)}`;
  if (token()) url += "&token=" + encodeURIComponent(token());
  const ws = new WebSocket(url);
  state.ws = ws;
  ws.onopen = () => { $("connection").textContent = "connected"; };
  ws.onclose = () => {
    $("connection").textContent = "disconnected; retrying…";
    setTimeout(connectSocket, 2000);
  };
  ws.onmessage = (event) => {
    if (typeof event.data !== "string") return;  // binary previews are not shown here
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    onSocketMessage(message.type, message.data || {});
  };
}

function onSocketMessage(type, data) {
  if (type === "status") {
    const remaining = data.status && data.status.exec_info ? data.status.exec_info.queue_remaining : "?";
    $("connection").textContent = `connected · queue ${remaining}`;
    return;
  }
  if (!state.running || data.prompt_id !== state.running) return;
  if (type === "execution_start") setStatus("started");
  else if (type === "execution_cached") setStatus(`cached nodes: ${(data.nodes || []).join(", ") || "none"}`);
  else if (type === "executing" && data.node !== null && data.node !== undefined) setStatus(`running node ${data.node}`);
  else if (type === "progress") {
    $("progress").max = data.max || 1;
    $("progress").value = data.value || 0;
    setStatus(`node ${data.node}: step ${data.value} of ${data.max}`);
  } else if (type === "executed" && data.output && data.output.images) {
    // Files are written in the background; they are fetched once the prompt has finished.
    setStatus(`node ${data.node} produced ${data.output.images.length} image(s)`);
  }
  else if (type === "execution_error") { setStatus("failed"); showMessage(`node ${data.node_id} (${data.node_type}) failed: ${data.exception_type}: ${data.exception_message}`); finish(); }
  else if (type === "execution_interrupted") { setStatus("interrupted"); finish(); }
  else if (type === "executing" && data.node === null) { finishWithHistory(data.prompt_id); }
}

function setStatus(text) { $("run-status").textContent = text; }

async function run(event) {
  event.preventDefault();
  showMessage("");
  if (state.dirty || !state.current) {
    if (state.current && state.current.bundled && $("name").value.trim() === state.current.name) {
      showMessage("This bundled template has edits: give it a new name and save it before running.");
      return;
    }
    if (!(await save())) return;
  }
  const name = state.current.name;
  $("results").replaceChildren();
  $("progress").value = 0;
  setStatus("queuing…");
  const { response, body } = await apiJson("/templates/" + encodeURIComponent(name) + "/run", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ values: valuesForRequest(), client_id: state.clientId }),
  });
  if (!response.ok) { setStatus("rejected"); showMessage(errorText(body)); return; }
  state.running = body.prompt_id;
  setStatus(`queued as ${body.prompt_id}` + (body.values && body.values.seed !== undefined ? ` (seed ${body.values.seed})` : ""));
  pollHistory(body.prompt_id);
}

async function pollHistory(promptId) {
  // Fallback when the websocket is down or the run finished before it was watched.
  while (state.running === promptId) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    if (state.running !== promptId) return;
    const { response, body } = await apiJson("/history/" + encodeURIComponent(promptId));
    if (response.ok && body && body[promptId]) { await finishWithHistory(promptId, body[promptId]); return; }
  }
}

async function finishWithHistory(promptId, entry) {
  if (state.running !== promptId) return;
  finish();
  if (!entry) {
    const { response, body } = await apiJson("/history/" + encodeURIComponent(promptId));
    entry = response.ok && body ? body[promptId] : null;
  }
  if (!entry) return;
  const status = entry.status || {};
  if (status.status_str === "error") {
    const failure = (status.messages || []).find((m) => m[0] === "execution_error");
    if (failure) showMessage(`node ${failure[1].node_id} (${failure[1].node_type}) failed: ${failure[1].exception_type}: ${failure[1].exception_message}`);
    setStatus("failed");
    return;
  }
  const images = Object.values(entry.outputs || {}).flatMap((o) => o.images || []);
  const shown = new Set([...$("results").querySelectorAll("img")].map((img) => img.dataset.key));
  showImages(images.filter((im) => !shown.has(imageKey(im))), $("results"));
  $("progress").value = $("progress").max;
  setStatus("done");
  loadGallery();
}

function finish() { state.running = null; }

function imageKey(image) { return `${image.type || "output"}/${image.subfolder || ""}/${image.filename}`; }

async function showImages(images, container, caption) {
  for (const image of images) {
    const params = new URLSearchParams({ filename: image.filename, subfolder: image.subfolder || "", type: image.type || "output" });
    const response = await api("/view?" + params.toString());
    if (!response.ok) continue;
    const url = URL.createObjectURL(await response.blob());
    const img = document.createElement("img");
    img.src = url;
    img.alt = `output image ${image.filename}`;
    img.dataset.key = imageKey(image);
    if (caption) {
      const figure = document.createElement("figure");
      figure.append(img, Object.assign(document.createElement("figcaption"), { textContent: caption }));
      container.append(figure);
    } else container.append(img);
  }
}

async function loadGallery() {
  const { response, body } = await apiJson("/history?max_items=12");
  if (!response.ok || !body) return;
  const gallery = $("gallery");
  gallery.replaceChildren();
  const entries = Object.entries(body).reverse();
  for (const [promptId, entry] of entries) {
    const images = Object.values(entry.outputs || {}).flatMap((o) => o.images || []).filter((im) => (im.type || "output") === "output");
    await showImages(images.slice(0, 4), gallery, promptId.slice(0, 8));
  }
  if (!gallery.children.length) gallery.textContent = "no outputs yet";
}

async function interrupt() {
  await api("/interrupt", { method: "POST", headers: { "Content-Type": "application/json" }, body: state.running ? JSON.stringify({ prompt_id: state.running }) : "{}" });
}

// ---- wiring ----

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = token();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("graphengine-token", $("token").value);
    if (state.ws) state.ws.close();
    loadList();
    loadGallery();
  });
  $("workflow").addEventListener("input", scheduleCheck);
  $("name").addEventListener("input", () => setDirty(true));
  $("description").addEventListener("input", () => setDirty(true));
  $("save").addEventListener("click", save);
  $("delete").addEventListener("click", remove);
  $("new-template").addEventListener("click", newTemplate);
  $("import-file").addEventListener("change", importFile);
  $("add-custom").addEventListener("submit", addCustom);
  $("values-form").addEventListener("submit", run);
  $("interrupt").addEventListener("click", interrupt);
  $("refresh-gallery").addEventListener("click", loadGallery);
  connectSocket();
  loadList();
  loadGallery();
});

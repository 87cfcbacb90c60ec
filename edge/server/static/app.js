// The web chat: conversations kept in this browser, answers streamed and rendered as
// Markdown. Model output reaches the DOM only through markdown.js (sanitised) or as
// textContent (thinking, the user's own words).
import { HttpError, chunks, health, modelName, pause, startChat } from "./api.js";
import { MarkdownStream, renderMarkdown } from "./markdown.js";
import * as store from "./store.js";

const $ = (id) => document.getElementById(id);
const KEY = "edge-qwen-key";
const OPEN = "edge-qwen-open";
const RETRIES = { 429: 30, 503: 60, network: 8 }; // tries before giving up, by cause

let convs = [];
let current = null;
let controller = null;
let statusTimer = 0;

// --- status --------------------------------------------------------------------------

const SAYS = {
  ok: "Ready",
  asleep: "Asleep: your next message wakes the model",
  waking: "Waking the model…",
  loading: "Loading the model…",
  restarting: "Restarting the model…",
  busy: "Busy",
  unreachable: "Can't reach the server",
  key: "Needs the API key (⚙)",
  error: "The model failed",
};

function showStatus(state, detail) {
  const el = $("status");
  el.dataset.state = state;
  el.textContent = detail ? `${SAYS[state] || state}: ${detail}` : SAYS[state] || state;
}

/** Ask /health (and the model's name) and say what it means; poll while it is changing. */
async function checkServer(delay = 2) {
  clearTimeout(statusTimer);
  if (controller) return; // a request in flight says more than /health
  const { state, detail } = await health();
  showStatus(state, state === "error" ? detail : null);
  if (["loading", "restarting", "waking", "unreachable"].includes(state)) {
    statusTimer = setTimeout(() => checkServer(Math.min(delay * 2, 30)), delay * 1000);
    return;
  }
  try {
    $("title").textContent = "edge-qwen · " + (await modelName(key()));
  } catch (err) {
    if (err instanceof HttpError && err.status === 401) showStatus("key");
  }
}

// --- conversations -------------------------------------------------------------------

function key() {
  return localStorage.getItem(KEY) || "";
}

async function persist() {
  current.updated = Date.now();
  try {
    await store.save(current);
  } catch (err) {
    showStatus("error", "this browser will not keep conversations (" + err.message + ")");
  }
}

function listConversations() {
  const list = $("conv-list");
  list.replaceChildren();
  for (const conv of convs) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "conv";
    b.dataset.id = conv.id;
    b.textContent = conv.title;
    if (conv === current) b.setAttribute("aria-current", "true");
    li.append(b);
    list.append(li);
  }
}

function open(conv) {
  current = conv;
  localStorage.setItem(OPEN, conv.id);
  $("think").checked = conv.thinking !== false;
  $("log").replaceChildren();
  conv.messages.forEach((m, i) => showMessage(m, i));
  markLast();
  listConversations();
  document.body.classList.remove("show-convs");
}

async function newConversation() {
  if (current && current.messages.length === 0) return open(current);
  const conv = store.blank();
  convs.unshift(conv);
  open(conv);
  await persist();
}

// --- messages ------------------------------------------------------------------------

/** A message's element; assistant messages get their parts (thinking, answer, stats). */
function showMessage(msg, index) {
  const div = document.createElement("div");
  div.className = "msg " + msg.role;
  div.dataset.index = index;
  const text = document.createElement("div");
  text.className = "text";
  div.append(text);
  if (msg.role === "user") {
    text.textContent = msg.content;
  } else {
    if (msg.reasoning) thinkBlock(div, msg).open = false;
    text.classList.add("md");
    renderMarkdown(text, msg.content);
    finishView(div, msg);
  }
  const actions = document.createElement("div");
  actions.className = "actions";
  div.append(actions);
  $("log").append(div);
  return div;
}

function thinkBlock(div, msg) {
  let details = div.querySelector("details.think");
  if (!details) {
    details = document.createElement("details");
    details.className = "think";
    details.open = true;
    const summary = document.createElement("summary");
    const body = document.createElement("div");
    body.className = "reasoning";
    details.append(summary, body);
    div.prepend(details);
  }
  details.querySelector(".reasoning").textContent = msg.reasoning;
  details.querySelector("summary").textContent = msg.thoughtMs == null
    ? "Thinking…"
    : `Thought for ${(msg.thoughtMs / 1000).toFixed(msg.thoughtMs < 10_000 ? 1 : 0)} s`;
  return details;
}

function finishView(div, msg) {
  div.querySelector(".notice")?.remove();
  if (msg.error) {
    const p = document.createElement("div");
    p.className = "error";
    p.textContent = msg.error;
    div.querySelector(".text").after(p);
  }
  const parts = [];
  if (msg.stopped) parts.push("stopped");
  const s = msg.stats || {};
  if (s.tokens != null) parts.push(s.tokens + " tokens");
  if (s.firstMs != null) parts.push("first token " + (s.firstMs / 1000).toFixed(2) + " s");
  if (s.tps != null) parts.push(s.tps.toFixed(1) + " tok/s");
  if (s.loadMs != null) parts.push("woke the model in " + (s.loadMs / 1000).toFixed(1) + " s");
  if (!parts.length && !msg.error) return;
  const stats = document.createElement("div");
  stats.className = "stats";
  stats.textContent = parts.join(" · ");
  div.querySelector(".text").after(stats);
}

/** Only the last exchange can be edited or regenerated: buttons on those two only. */
function markLast() {
  for (const el of $("log").querySelectorAll(".actions")) el.replaceChildren();
  const msgs = [...$("log").querySelectorAll(".msg")];
  const last = msgs[msgs.length - 1];
  if (!last || controller) return;
  if (last.classList.contains("assistant")) {
    last.querySelector(".actions").append(button("Copy", "copy-answer"), button("Regenerate", "regenerate"));
    const user = msgs[msgs.length - 2];
    if (user) user.querySelector(".actions").append(button("Edit", "edit"));
  } else {
    last.querySelector(".actions").append(button("Edit", "edit"), button("Answer", "regenerate"));
  }
}

function button(label, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.dataset.action = action;
  b.textContent = label;
  return b;
}

function busy(on) {
  $("send").hidden = on;
  $("stop").hidden = !on;
  markLast();
}

// --- asking --------------------------------------------------------------------------

function requestBody() {
  const messages = [];
  if (current.system.trim()) messages.push({ role: "system", content: current.system });
  for (const m of current.messages) {
    if (m.role === "user" || m.content) messages.push({ role: m.role, content: m.content });
  }
  if (messages[messages.length - 1]?.role === "assistant") messages.pop(); // the one being written
  const body = {
    model: "qwen3", messages, stream: true, stream_options: { include_usage: true },
    enable_thinking: current.thinking !== false,
  };
  if (current.temperature != null) body.temperature = current.temperature;
  return body;
}

function notice(div, text) {
  let el = div.querySelector(".notice");
  if (!el) {
    el = document.createElement("div");
    el.className = "notice";
    div.querySelector(".text").before(el);
  }
  el.textContent = text;
}

/** Start the answer, waiting out a busy or loading server and short network failures. */
async function accepted(div, signal) {
  for (let tries = 1; ; tries++) {
    try {
      return await startChat(requestBody(), key(), signal);
    } catch (err) {
      if (err.name === "AbortError") throw err;
      const cause = err instanceof HttpError ? err.status : "network";
      if (!(cause in RETRIES) || tries >= RETRIES[cause]) throw err;
      const wait = cause === "network" ? Math.min(2 ** tries, 15) : err.retryAfter;
      const state = { 429: "busy", 503: "loading", network: "unreachable" }[cause];
      showStatus(state);
      notice(div, `${SAYS[state]}: trying again in ${wait} s (Stop gives up)`);
      await pause(wait, signal);
    }
  }
}

async function answer() {
  const msg = { role: "assistant", content: "", reasoning: "" };
  current.messages.push(msg);
  const div = showMessage(msg, current.messages.length - 1);
  div.querySelector(".stats")?.remove();
  const md = new MarkdownStream(div.querySelector(".text"));
  controller = new AbortController();
  clearTimeout(statusTimer);
  busy(true);
  let thinkStart = null, lastSave = 0;
  try {
    const response = await accepted(div, controller.signal);
    div.querySelector(".notice")?.remove();
    showStatus("ok");
    const load = response.headers.get("Edge-Qwen-Load-Ms");
    msg.stats = load ? { loadMs: Number(load) } : {};
    for await (const chunk of chunks(response)) {
      if (chunk.usage) msg.stats.tokens = chunk.usage.completion_tokens;
      if (chunk.timings) {
        msg.stats.firstMs = chunk.timings.prompt_ms;
        msg.stats.tps = chunk.timings.predicted_per_second;
      }
      const d = chunk.choices?.[0]?.delta || {};
      if (d.reasoning_content) {
        thinkStart ??= performance.now();
        msg.reasoning += d.reasoning_content;
        thinkBlock(div, msg);
      }
      if (d.content) {
        if (thinkStart != null && msg.thoughtMs == null) {
          msg.thoughtMs = performance.now() - thinkStart;
          thinkBlock(div, msg).open = false;
        }
        msg.content += d.content;
        md.set(msg.content);
      }
      follow();
      if (performance.now() - lastSave > 1000) {
        lastSave = performance.now();
        persist();
      }
    }
  } catch (err) {
    if (err.name === "AbortError") msg.stopped = true;
    else if (err instanceof HttpError && err.status === 401) {
      msg.error = "The server wants its API key: enter it in ⚙ Settings, then Regenerate.";
      showStatus("key");
      openSettings(true);
    } else {
      msg.error = err instanceof HttpError ? err.message : "The connection was lost: " + err.message;
      if (!(err instanceof HttpError)) checkServer();
    }
  }
  if (thinkStart != null && msg.thoughtMs == null) msg.thoughtMs = performance.now() - thinkStart;
  if (msg.reasoning) thinkBlock(div, msg).open = false;
  md.end();
  finishView(div, msg);
  controller = null;
  busy(false);
  await persist();
  if (!msg.error) setTimeout(() => checkServer(), 0);
}

function follow() {
  const log = $("log");
  if (log.scrollHeight - log.scrollTop - log.clientHeight < 120) log.scrollTop = log.scrollHeight;
}

async function send(content) {
  if (!content.trim() || controller) return;
  current.messages.push({ role: "user", content });
  if (current.title === "New chat") current.title = content.trim().split("\n")[0].slice(0, 48);
  if (convs[0] !== current) convs = [current, ...convs.filter((c) => c !== current)];
  showMessage(current.messages[current.messages.length - 1], current.messages.length - 1);
  listConversations();
  await persist();
  await answer();
}

async function regenerate() {
  if (controller) return;
  const last = current.messages[current.messages.length - 1];
  if (last?.role === "assistant") {
    current.messages.pop();
    $("log").lastElementChild.remove();
  }
  await answer();
}

/** Edit the last user message in place; sending it drops the old answer. */
function edit(div) {
  const index = Number(div.dataset.index);
  const box = document.createElement("form");
  box.className = "edit";
  const area = document.createElement("textarea");
  area.value = current.messages[index].content;
  area.setAttribute("aria-label", "Edit message");
  const save = button("Send", "edit-send");
  save.type = "submit";
  box.append(area, save, button("Cancel", "edit-cancel"));
  div.querySelector(".text").replaceWith(box);
  div.querySelector(".actions").replaceChildren();
  area.focus();
  box.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!area.value.trim() || controller) return;
    current.messages.splice(index);
    while ($("log").lastElementChild && $("log").lastElementChild !== div) $("log").lastElementChild.remove();
    div.remove();
    await send(area.value);
  });
  area.addEventListener("keydown", enterSends);
  box.querySelector("[data-action=edit-cancel]").addEventListener("click", () => open(current));
}

function enterSends(e) {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    e.target.form.requestSubmit();
  }
}

// --- copy and export -----------------------------------------------------------------

async function copyText(text, btn) {
  try {
    await navigator.clipboard.writeText(text); // only in a secure context (https, localhost)
  } catch {
    const area = document.createElement("textarea"); // plain http on a LAN: the old way
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  btn.textContent = "Copied";
  setTimeout(() => (btn.textContent = "Copy"), 1500);
}

function download(name, type, text) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

const fileName = (ext) => (current.title.replace(/[^\w -]+/g, "").trim() || "conversation") + ext;

// --- settings ------------------------------------------------------------------------

function openSettings(focusKey) {
  $("conv-title").value = current.title;
  $("system").value = current.system;
  $("temperature").value = current.temperature ?? "";
  $("key").value = key();
  if (!$("settings").open) $("settings").showModal();
  if (focusKey) $("key").focus();
}

function wireSettings() {
  $("open-settings").addEventListener("click", () => openSettings(false));
  $("close-settings").addEventListener("click", () => $("settings").close());
  $("conv-title").addEventListener("change", () => {
    current.title = $("conv-title").value.trim() || "Untitled";
    listConversations();
    persist();
  });
  $("system").addEventListener("change", () => { current.system = $("system").value; persist(); });
  $("temperature").addEventListener("change", () => {
    const t = $("temperature").value === "" ? null : Number($("temperature").value);
    current.temperature = t != null && Number.isFinite(t) ? Math.min(Math.max(t, 0), 2) : null;
    persist();
  });
  $("key").addEventListener("change", () => {
    localStorage.setItem(KEY, $("key").value.trim());
    checkServer();
  });
  $("forget-key").addEventListener("click", () => {
    localStorage.removeItem(KEY);
    $("key").value = "";
    checkServer();
  });
  $("export-md").addEventListener("click", () => download(fileName(".md"), "text/markdown", store.toMarkdown(current)));
  $("export-json").addEventListener("click", () =>
    download(fileName(".json"), "application/json", JSON.stringify(current, null, 2)));
  $("delete-conv").addEventListener("click", async (e) => {
    const b = e.currentTarget;
    if (b.dataset.armed !== "1") { // two taps, no dialog: a slip of the thumb loses nothing
      b.dataset.armed = "1";
      b.textContent = "Tap again to delete";
      setTimeout(() => { b.dataset.armed = ""; b.textContent = "Delete conversation"; }, 4000);
      return;
    }
    b.dataset.armed = "";
    b.textContent = "Delete conversation";
    await store.remove(current.id);
    convs = convs.filter((c) => c !== current);
    $("settings").close();
    if (convs.length) open(convs[0]);
    else await newConversation();
  });
}

// --- wiring --------------------------------------------------------------------------

function wire() {
  $("form").addEventListener("submit", (e) => {
    e.preventDefault();
    const content = $("input").value;
    if (!content.trim() || controller) return;
    $("input").value = "";
    grow();
    send(content);
  });
  $("input").addEventListener("keydown", enterSends);
  $("input").addEventListener("input", grow);
  $("stop").addEventListener("click", () => controller?.abort());
  $("think").addEventListener("change", () => { current.thinking = $("think").checked; persist(); });
  $("new").addEventListener("click", newConversation);
  $("menu").addEventListener("click", () => document.body.classList.toggle("show-convs"));
  $("conv-list").addEventListener("click", (e) => {
    const b = e.target.closest("button.conv");
    const conv = b && convs.find((c) => c.id === b.dataset.id);
    if (conv && !controller) open(conv);
  });
  $("log").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    const div = b.closest(".msg");
    if (b.classList.contains("copy")) copyText(b.closest(".code").querySelector("code").textContent, b);
    else if (b.dataset.action === "copy-answer") copyText(current.messages[div.dataset.index].content, b);
    else if (b.dataset.action === "regenerate") regenerate();
    else if (b.dataset.action === "edit") edit(div);
  });
  wireSettings();
  window.addEventListener("online", () => checkServer());
}

function grow() {
  const input = $("input");
  input.style.height = "auto";
  input.style.height = Math.min(input.scrollHeight + 2, window.innerHeight * 0.4) + "px";
}

async function start() {
  wire();
  try {
    convs = await store.loadAll();
  } catch (err) {
    showStatus("error", "this browser will not keep conversations (" + err.message + ")");
  }
  const wanted = convs.find((c) => c.id === localStorage.getItem(OPEN));
  if (wanted || convs.length) open(wanted || convs[0]);
  else await newConversation();
  checkServer();
}

start();

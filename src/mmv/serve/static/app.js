// The chat page: keeps the conversation in the browser and sends it whole to /v1/chat/completions each turn
// (the server reuses the keys/values of the history it has seen), streaming the reply as server-sent events.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { history: [], pending: [], controller: null };

function headers() {
  const result = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

async function init() {
  try {
    const health = await (await fetch("/health")).json();
    $("model").textContent = health.model;
    if (health.api_key_required) {
      $("api-key-row").hidden = false;
      $("api-key").value = localStorage.getItem("mmv-api-key") || "";
    }
  } catch (err) {
    $("model").textContent = "server unreachable";
  }
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function addMessage(role) {
  $("empty").hidden = true;
  const message = element("div", `message ${role}`);
  $("conversation").appendChild(message);
  return message;
}

function scrollDown() {
  const main = $("conversation");
  main.scrollTop = main.scrollHeight;
}

// ---- attachments: button, drag-and-drop, paste; images and videos alike ----

const MEDIA = { image: "image_url", video: "video_url" }; // a file's kind and the API part it is sent as

function kindOf(file) {
  return Object.keys(MEDIA).find((kind) => file.type.startsWith(`${kind}/`));
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function attach(files) {
  for (const file of files) {
    const kind = kindOf(file);
    if (!kind) continue;
    // a video's thumbnail plays from a blob: URL rather than from its (much longer) data: URL
    const preview = kind === "video" ? URL.createObjectURL(file) : null;
    state.pending.push({ name: file.name, kind, url: await readAsDataUrl(file), preview });
  }
  showPending();
}

function thumbnail(item) {
  if (item.kind !== "video") {
    const img = element("img");
    img.src = item.url;
    img.alt = item.name;
    return img;
  }
  const video = element("video");
  video.muted = true;
  video.preload = "metadata"; // shows the first frame, nothing plays until asked
  video.src = item.preview;
  video.title = item.name;
  return video;
}

function showPending() {
  const box = $("attachments");
  box.replaceChildren();
  state.pending.forEach((item, index) => {
    const thumb = element("div", "thumb");
    const remove = element("button", "", "×");
    remove.type = "button";
    remove.title = "Remove";
    remove.onclick = () => {
      const [removed] = state.pending.splice(index, 1);
      if (removed.preview) URL.revokeObjectURL(removed.preview);
      showPending();
    };
    thumb.append(thumbnail(item), remove);
    box.appendChild(thumb);
  });
}

// ---- sending and streaming ----

function settings() {
  return {
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
    max_tokens: Math.max(1, Number($("max-tokens").value) || 512),
    thinking: $("thinking").checked,
  };
}

function userContent(text, media) {
  if (!media.length) return text;
  const parts = media.map((item) => ({ type: MEDIA[item.kind], [MEDIA[item.kind]]: { url: item.url } }));
  if (text) parts.push({ type: "text", text });
  return parts;
}

function showUser(text, media) {
  const message = addMessage("user");
  if (media.length) {
    const row = element("div", "images");
    for (const item of media) row.appendChild(thumbnail(item));
    message.appendChild(row);
  }
  if (text) message.appendChild(element("div", "bubble", text));
}

function showReply(bubble, text, thinking) {
  // with thinking on, the reply opens inside <think>: everything before </think> is the model's reasoning
  const cut = text.indexOf("</think>");
  bubble.replaceChildren();
  if (thinking || cut >= 0) {
    const reasoning = (cut >= 0 ? text.slice(0, cut) : text).replace(/^\s*<think>/, "").trim();
    if (reasoning) bubble.appendChild(element("span", "thinking", reasoning));
    text = cut >= 0 ? text.slice(cut + "</think>".length).trimStart() : "";
  }
  bubble.appendChild(document.createTextNode(text));
}

function showError(message) {
  const node = addMessage("error");
  node.appendChild(element("div", "bubble", message));
  scrollDown();
}

function busy(on) {
  $("send").hidden = on;
  $("stop").hidden = !on;
}

async function send() {
  const text = $("prompt").value.trim();
  const media = state.pending.splice(0);
  if (!text && !media.length) return;
  if (state.controller) return;
  showPending();
  $("prompt").value = "";
  resize();
  showUser(text, media);
  state.history.push({ role: "user", content: userContent(text, media) });

  const message = addMessage("assistant");
  const bubble = element("div", "bubble streaming");
  message.appendChild(bubble);
  scrollDown();
  const chosen = settings();
  const controller = new AbortController();
  state.controller = controller;
  busy(true);
  const started = performance.now();
  let reply = "", firstAt = null, usage = null, finish = null, failure = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify({ messages: state.history, stream: true, stream_options: { include_usage: true }, ...chosen }),
      signal: controller.signal,
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
    }
    for await (const event of serverEvents(response)) {
      if (event.error) { failure = event.error.message; break; }
      if (event.usage) usage = event.usage;
      const choice = event.choices && event.choices[0];
      if (!choice) continue;
      if (choice.delta && choice.delta.content) {
        if (firstAt === null) firstAt = performance.now();
        reply += choice.delta.content;
        showReply(bubble, reply, chosen.thinking);
        scrollDown();
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  } catch (err) {
    if (err.name !== "AbortError") failure = err.message;
  }
  bubble.classList.remove("streaming");
  state.controller = null;
  busy(false);
  if (failure && !reply) {
    message.remove();
    state.history.pop();
    showError(failure);
    return;
  }
  state.history.push({ role: "assistant", content: reply });
  message.appendChild(element("div", "stats", stats(started, firstAt, usage, finish, controller.signal.aborted)));
  if (failure) showError(failure);
  scrollDown();
  $("prompt").focus();
}

function stats(started, firstAt, usage, finish, stopped) {
  const now = performance.now();
  const parts = [];
  if (firstAt !== null) parts.push(`first token ${((firstAt - started) / 1000).toFixed(2)} s`);
  if (usage) {
    const seconds = (now - (firstAt ?? started)) / 1000;
    parts.push(`${usage.completion_tokens} tokens`);
    if (usage.completion_tokens > 1 && seconds > 0) {
      parts.push(`${((usage.completion_tokens - 1) / seconds).toFixed(1)} tokens/s`);
    }
    const cached = usage.prompt_tokens_details ? usage.prompt_tokens_details.cached_tokens : 0;
    if (cached) parts.push(`${cached} history tokens reused`);
  }
  if (stopped) parts.push("stopped");
  else if (finish === "length") parts.push("max tokens reached");
  return parts.join(" · ");
}

async function* serverEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("");
      if (!data) continue;
      if (data === "[DONE]") return;
      yield JSON.parse(data);
    }
  }
}

function stop() {
  if (state.controller) state.controller.abort();
}

function newChat() {
  stop();
  state.history = [];
  state.pending = [];
  showPending();
  const main = $("conversation");
  main.replaceChildren($("empty"));
  $("empty").hidden = false;
  $("prompt").focus();
}

function resize() {
  const box = $("prompt");
  box.style.height = "auto";
  box.style.height = `${Math.min(box.scrollHeight, 200)}px`;
}

function wire() {
  $("composer").addEventListener("submit", (event) => { event.preventDefault(); send(); });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  $("prompt").addEventListener("input", resize);
  $("stop").addEventListener("click", stop);
  $("new-chat").addEventListener("click", newChat);
  $("attach").addEventListener("click", () => $("file").click());
  $("file").addEventListener("change", async () => { await attach($("file").files); $("file").value = ""; });
  $("settings-toggle").addEventListener("click", () => {
    const panel = $("settings");
    panel.hidden = !panel.hidden;
    $("settings-toggle").setAttribute("aria-expanded", String(!panel.hidden));
  });
  for (const [input, output] of [["temperature", "temperature-value"], ["top-p", "top-p-value"]]) {
    $(input).addEventListener("input", () => { $(output).textContent = $(input).value; });
  }
  $("api-key").addEventListener("change", () => localStorage.setItem("mmv-api-key", $("api-key").value.trim()));
  document.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData ? event.clipboardData.files : [])];
    if (files.some(kindOf)) { event.preventDefault(); attach(files); }
  });
  let depth = 0;
  window.addEventListener("dragenter", (event) => { event.preventDefault(); depth += 1; $("drop").hidden = false; });
  window.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) $("drop").hidden = true; });
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    $("drop").hidden = true;
    attach([...event.dataTransfer.files]);
  });
}

wire();
init();

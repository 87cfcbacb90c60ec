// Conversations, kept in this browser's IndexedDB and nowhere else (the server keeps none).
// IndexedDB rather than localStorage: it is asynchronous (saving a long conversation while
// an answer streams never stalls the page, where localStorage blocks on every write), it
// holds far more than localStorage's ~5 MB per site, and it stores objects as they are.
// localStorage keeps only two small strings: the API key and which conversation is open.
const DB = "edge-qwen";
const STORE = "conversations";

let opened = null;

function database() {
  opened ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "id" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return opened;
}

async function run(mode, act) {
  const db = await database();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const request = act(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(request.result);
    tx.onerror = () => reject(tx.error);
  });
}

/** Every conversation, the most recently used first. */
export async function loadAll() {
  const all = await run("readonly", (s) => s.getAll());
  return all.sort((a, b) => b.updated - a.updated);
}

/** Keep `conv` (a plain object; its `id` is the key). */
export const save = (conv) => run("readwrite", (s) => s.put(conv));

/** Forget the conversation with this id. */
export const remove = (id) => run("readwrite", (s) => s.delete(id));

/** A new, empty conversation. */
export function blank() {
  const now = Date.now();
  const id = globalThis.crypto?.randomUUID ? crypto.randomUUID() : `${now}-${Math.random()}`;
  return { id, title: "New chat", created: now, updated: now, system: "", temperature: null, thinking: true, messages: [] };
}

/** A conversation as Markdown, for export. */
export function toMarkdown(conv) {
  const out = [`# ${conv.title}`, ""];
  if (conv.system) out.push(`> System: ${conv.system.replace(/\n/g, "\n> ")}`, "");
  for (const m of conv.messages) {
    out.push(m.role === "user" ? "## You" : "## Assistant", "");
    if (m.reasoning) {
      const secs = m.thoughtMs != null ? ` for ${(m.thoughtMs / 1000).toFixed(1)} s` : "";
      out.push(`<details><summary>Thought${secs}</summary>`, "", m.reasoning.trim(), "", "</details>", "");
    }
    out.push(m.content || (m.error ? `*(${m.error})*` : ""), "");
  }
  return out.join("\n");
}

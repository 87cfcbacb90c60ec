// Talking to the server: its state (/health), the model's name, and a streamed chat
// answer read as server-sent events. The key travels only in an Authorization header,
// never in a URL.

/** An HTTP refusal, with what the page needs to explain it and decide to retry. */
export class HttpError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

export function headers(key) {
  const h = { "Content-Type": "application/json" };
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

/** The server's state: ok, asleep, waking, loading, restarting, error, or unreachable. */
export async function health() {
  try {
    const r = await fetch("health", { cache: "no-store" });
    const body = await r.json();
    return { state: body.status || "error", detail: body.detail || null };
  } catch {
    return { state: "unreachable", detail: null };
  }
}

/** The served model's name; throws HttpError (401 without the right key). */
export async function modelName(key) {
  const r = await fetch("v1/models", { headers: headers(key) });
  if (!r.ok) throw await refusal(r);
  return (await r.json()).data[0].id;
}

async function refusal(r) {
  let message = r.statusText || `HTTP ${r.status}`;
  try {
    message = (await r.json()).error?.message || message;
  } catch { /* not JSON: keep the status text */ }
  const after = Number(r.headers.get("Retry-After"));
  return new HttpError(r.status, message, Number.isFinite(after) && after > 0 ? after : 2);
}

/** POST a streamed chat; the response once it is accepted (else an HttpError). */
export async function startChat(body, key, signal) {
  const r = await fetch("v1/chat/completions", {
    method: "POST", headers: headers(key), signal, body: JSON.stringify(body),
  });
  if (!r.ok) throw await refusal(r);
  return r;
}

/** The parsed `data:` chunks of an SSE response, as they arrive. */
export async function* chunks(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue; // keep-alives too
      const chunk = JSON.parse(event.slice(6));
      if (chunk.error) throw new Error(chunk.error.message);
      yield chunk;
    }
  }
}

/** Wait `seconds`, or less if `signal` aborts (then throw its AbortError). */
export function pause(seconds, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, seconds * 1000);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(new DOMException("Stopped", "AbortError"));
    }, { once: true });
  });
}

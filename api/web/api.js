// Talking to the service: the API key (session storage, sent as a bearer header, never in a URL),
// JSON requests, and the answer stream (POST /query sends Server-Sent Events; EventSource cannot
// POST, so the body is read with fetch and parsed here).

const KEY = "rag.apiKey";
let unauthorized = () => {};

export class HttpError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

// fn(message) runs on every 401 (the page asks for the key again).
export function onUnauthorized(fn) {
  unauthorized = fn;
}

export function headers(extra = {}) {
  const key = getKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  let code = "";
  try {
    const body = await response.json();
    const err = body.error || body.detail || body;
    if (typeof err === "string") message = err;
    else if (err && err.message) ({ message, code = "" } = err);
  } catch {
    // not JSON: keep the status line
  }
  return new HttpError(response.status, message, code);
}

// fetch with the key; a non-2xx answer throws HttpError (and a 401 calls the unauthorized hook).
export async function request(path, { method = "GET", json, body, signal } = {}) {
  const init = { method, headers: headers(), signal };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    const err = await failure(response);
    if (response.status === 401) unauthorized(err.message);
    throw err;
  }
  return response;
}

export async function getJSON(path, options) {
  return (await request(path, options)).json();
}

// A path segment per part of a source ("docs/a b.pdf" -> "docs/a%20b.pdf").
export function sourcePath(source) {
  return source.split("/").map(encodeURIComponent).join("/");
}

export function withCollection(path, collection) {
  if (!collection) return path;
  return path + (path.includes("?") ? "&" : "?") + "collection=" + encodeURIComponent(collection);
}

// Yields {event, data} for each Server-Sent Event of a fetch response's body.
export async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const parsed = parseBlock(block);
      if (parsed) yield parsed;
    }
    if (done) break;
  }
  const last = parseBlock(buffer);
  if (last) yield last;
}

function parseBlock(block) {
  let event = "message";
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return null;
  try {
    return { event, data: JSON.parse(data.join("\n")) };
  } catch {
    return { event, data: { text: data.join("\n") } };
  }
}

// The image of a PDF page as a data: URL (an <img src> cannot send the key, so it is fetched with
// it; data: rather than a blob URL, which the service's Content-Security-Policy, img-src 'self'
// data:, does not allow).
export async function pageImage(source, page, collection) {
  const path = withCollection(`/pages/${sourcePath(source)}/${page}.png`, collection);
  const blob = await (await request(path)).blob();
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

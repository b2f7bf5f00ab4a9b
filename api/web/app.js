// The page: asking (a conversation streamed from POST /query), the collection picker, the
// library view and the API key prompt. Modules: api.js (requests, SSE), answer.js (one answer),
// viewer.js (the passage viewer), library.js (files, uploads, jobs).

import { events, getJSON, getKey, HttpError, onUnauthorized, request, setKey } from "./api.js";
import { Turn, renderSources } from "./answer.js";
import { $, clear, toast } from "./dom.js";
import { initLibrary, refreshLibrary, renderCollections } from "./library.js";
import { closePassage, initViewer } from "./viewer.js";

const state = { history: [], busy: null, collections: [], view: "ask" };
const collection = () => $("collection").value || "";

// -- the key ---------------------------------------------------------------------------------
function askForKey(message) {
  const dialog = $("key-dialog");
  $("key-error").textContent = getKey() ? message || "That key was refused." : "";
  $("api-key").value = "";
  if (!dialog.open) dialog.showModal();
  $("api-key").focus();
}

function initKey() {
  onUnauthorized((message) => {
    askForKey(message);
  });
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    setKey(key);
    $("key-dialog").close();
    $("change-key").hidden = false;
    loadCollections();
  });
  $("key-dialog").addEventListener("cancel", (e) => e.preventDefault()); // nothing works without it
  $("change-key").hidden = !getKey();
  $("change-key").addEventListener("click", () => askForKey(""));
}

// -- collections -----------------------------------------------------------------------------
async function loadCollections() {
  let list;
  try {
    list = (await getJSON("/collections")).collections || [];
  } catch (err) {
    if (!(err instanceof HttpError) || err.status !== 401) toast(`Could not list the collections: ${err.message}`);
    return;
  }
  state.collections = list;
  const select = clear($("collection"));
  const previous = sessionStorage.getItem("rag.collection");
  for (const c of list) {
    const option = new Option(`${c.name} (${c.chunks ?? 0} chunks)`, c.name);
    select.append(option);
  }
  const names = list.map((c) => c.name);
  const pick = names.includes(previous) ? previous : (list.find((c) => c.default) || list[0] || {}).name;
  if (pick) select.value = pick;
  select.disabled = list.length < 2;
  renderCollections(list);
  if (state.view === "library") refreshLibrary();
}

// -- asking ----------------------------------------------------------------------------------
function numberOr(id) {
  const v = parseInt($(id).value, 10);
  return Number.isFinite(v) && v > 0 ? v : undefined;
}

function list(id) {
  return $(id)
    .value.split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

function body(question) {
  const out = {
    question,
    answer: $("answer-mode").value,
    history: state.history,
    paths: list("paths"),
    types: list("types"),
    strict: $("strict").checked,
  };
  if ($("search-mode").value) out.mode = $("search-mode").value;
  for (const [key, id] of [["k", "k"], ["page_min", "page-min"], ["page_max", "page-max"]]) {
    const v = numberOr(id);
    if (v) out[key] = v;
  }
  if (collection()) out.collection = collection();
  return out;
}

async function ask(question) {
  const turn = new Turn(question, collection());
  $("empty").hidden = true;
  $("conversation").append(turn.el);
  turn.el.scrollIntoView({ block: "end" });
  const controller = new AbortController();
  state.busy = controller;
  setBusy(true);
  try {
    const response = await request("/query", { method: "POST", json: body(question), signal: controller.signal });
    for await (const { event, data } of events(response)) {
      if (event === "sources") turn.onSources(data);
      else if (event === "token") turn.onToken(data);
      else if (event === "done") turn.onDone(data);
      else if (event === "error") turn.onError(data.message || "The answer broke off.");
    }
    if (!turn.done && !turn.footEl.childElementCount) turn.onError("The answer stream ended before it was complete.");
  } catch (err) {
    turn.onError(err.name === "AbortError" ? "Stopped." : err.message);
  } finally {
    state.busy = null;
    setBusy(false);
  }
  if (turn.done) {
    state.history.push({ role: "user", content: question }, { role: "assistant", content: turn.done.answer });
  }
}

function setBusy(busy) {
  $("ask").disabled = busy;
  $("stop").hidden = !busy;
  $("question").setAttribute("aria-busy", String(busy));
}

function newConversation() {
  if (state.busy) state.busy.abort();
  state.history = [];
  clear($("conversation"));
  $("empty").hidden = false;
  renderSources(null, []);
  closePassage();
  $("question").focus();
}

function initAsk() {
  $("ask-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const question = $("question").value.trim();
    if (!question || state.busy) return;
    $("question").value = "";
    ask(question);
  });
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("ask-form").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => state.busy && state.busy.abort());
  $("new-conversation").addEventListener("click", newConversation);
  $("collection").addEventListener("change", () => {
    sessionStorage.setItem("rag.collection", collection());
    newConversation();
    if (state.view === "library") refreshLibrary();
  });
}

// -- views -----------------------------------------------------------------------------------
function show(view) {
  state.view = view;
  $("ask-view").hidden = view !== "ask";
  $("library-view").hidden = view !== "library";
  $("tab-ask").setAttribute("aria-pressed", String(view === "ask"));
  $("tab-library").setAttribute("aria-pressed", String(view === "library"));
  if (view === "library") loadCollections(); // then the library's status and files
}

initKey();
initViewer();
initAsk();
initLibrary(collection);
$("tab-ask").addEventListener("click", () => show("ask"));
$("tab-library").addEventListener("click", () => show("library"));
document.addEventListener("library-changed", loadCollections); // then the library's status and files
loadCollections();

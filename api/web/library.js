// The library: collections with their counts, one collection's status (failures, last run), its
// files (forget one), and uploads by drag and drop or the file picker, with the ingest job's
// progress polled live from GET /jobs/{id}.

import { getJSON, request, sourcePath, withCollection } from "./api.js";
import { $, clear, el, formatTime, toast } from "./dom.js";

let current = () => "";
let generation = 0; // a refresh renders only if no later one started meanwhile

export function initLibrary(collection) {
  current = collection;
  const drop = $("drop");
  $("upload").addEventListener("change", (e) => {
    upload([...e.target.files]);
    e.target.value = "";
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) drop.addEventListener(name, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    upload([...(e.dataTransfer?.files || [])]);
  });
}

export function renderCollections(list) {
  const body = clear($("collections").tBodies[0]);
  for (const c of list) {
    body.append(el("tr", {}, el("th", { scope: "row" }, c.name), el("td", {}, c.files ?? ""), el("td", {}, c.chunks ?? "")));
  }
}

export async function refreshLibrary() {
  const name = current();
  const mine = ++generation;
  $("status-name").textContent = name || "the default collection";
  const settle = (p) => p.then((value) => ({ value }), (error) => ({ error }));
  const [status, files] = await Promise.all([
    settle(getJSON(`/collections/${encodeURIComponent(name)}/status`)),
    settle(getJSON(withCollection("/documents", name))),
  ]);
  if (mine !== generation) return;
  renderStatus(status);
  renderFiles(files, name);
}

function renderStatus({ value: status, error }) {
  const dl = clear($("status"));
  const failures = clear($("failures"));
  if (error) {
    dl.append(el("dt", {}, "Status"), el("dd", {}, error.message));
    return;
  }
  const run = status.last_run;
  const rows = [
    ["Files", status.files],
    ["Chunks", status.chunks],
    ["Failed", status.failed],
    ["Waiting to be indexed again", status.stale],
    ["Embedding model", status.embed_model],
    ["Last run", run ? `${formatTime(run.started)}${run.seconds ? ` (${run.seconds.toFixed(1)} s)` : ""}` : "never"],
  ];
  for (const [k, v] of rows) if (v !== undefined && v !== null) dl.append(el("dt", {}, k), el("dd", {}, String(v)));
  if ((status.failures || []).length) failures.append(failureList("Files that failed", status.failures));
}

function failureList(title, items) {
  return el(
    "div",
    { class: "failures" },
    el("h3", {}, title),
    el("ul", {}, items.map((f) => el("li", {}, el("strong", {}, f.source), ": ", f.error || f.status || "failed"))),
  );
}

function renderFiles({ value: data, error }, name) {
  const body = clear($("files").tBodies[0]);
  if (error) {
    $("files-note").textContent = `The files could not be listed: ${error.message}`;
    return;
  }
  const files = data.files || [];
  $("files-note").textContent = files.length ? "" : "No files yet: add some above.";
  for (const f of files) {
    const status = f.status === "failed" ? el("span", { class: "bad" }, "failed: ", f.error || "") : f.status;
    body.append(
      el("tr", { dataset: { source: f.source } }, el("th", { scope: "row", class: "path" }, f.source),
        el("td", {}, status), el("td", {}, f.chunks ?? ""), el("td", {}, forgetButton(f.source, name))),
    );
  }
}

// A button that asks once more ("Really forget?") before it forgets the file.
function forgetButton(source, name) {
  const button = el("button", { type: "button", class: "small-button" }, "Forget");
  button.setAttribute("aria-label", `Forget ${source}`);
  button.addEventListener("click", async () => {
    if (!button.classList.contains("confirm")) {
      button.classList.add("confirm");
      button.textContent = "Really forget?";
      setTimeout(() => {
        button.classList.remove("confirm");
        button.textContent = "Forget";
      }, 5000);
      return;
    }
    button.disabled = true;
    try {
      await request(withCollection(`/documents/${sourcePath(source)}`, name), { method: "DELETE" });
      toast(`Forgot ${source}`);
    } catch (err) {
      toast(`Could not forget ${source}: ${err.message}`);
    }
    document.dispatchEvent(new CustomEvent("library-changed"));
  });
  return button;
}

async function upload(files) {
  if (!files.length) return;
  const name = current();
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  const folder = $("folder").value.trim();
  if (folder) form.append("folder", folder);
  const box = el("div", { class: "job", "data-testid": "job" }, el("p", {}, `Uploading ${files.map((f) => f.name).join(", ")}…`));
  $("jobs").prepend(box);
  let answer;
  try {
    answer = await (await request(withCollection("/documents", name), { method: "POST", body: form })).json();
  } catch (err) {
    box.dataset.state = "failed";
    box.replaceChildren(el("p", { class: "error", role: "alert" }, `Upload failed: ${err.message}`));
    return;
  }
  await follow(box, answer.job, (answer.files || []).map((f) => f.source).join(", "));
  document.dispatchEvent(new CustomEvent("library-changed")); // the counts in the picker changed
}

// Poll the job until it ends, showing its progress and failures by name.
async function follow(box, job, label) {
  const bar = el("progress", { max: 1, value: 0, "aria-label": `Ingest of ${label}` });
  const line = el("p", {});
  const failures = el("div", {});
  box.replaceChildren(el("p", {}, el("strong", {}, label)), bar, line, failures);
  for (;;) {
    const total = job.files_total || 0;
    bar.max = Math.max(total, 1);
    bar.value = job.files_done || 0;
    box.dataset.state = job.state;
    line.textContent = `${job.state}: ${job.files_done || 0} of ${total || "?"} files, ${job.chunks || 0} chunks`;
    if (job.failures?.length) failures.replaceChildren(failureList("Failed", job.failures));
    if (job.state === "done" || job.state === "failed") {
      if (job.error) failures.append(el("p", { class: "error", role: "alert" }, job.error));
      if (job.state === "done") bar.value = bar.max;
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 400));
    try {
      job = await getJSON(`/jobs/${encodeURIComponent(job.id)}`);
    } catch (err) {
      line.textContent = `Lost track of the job: ${err.message}`;
      return;
    }
  }
}

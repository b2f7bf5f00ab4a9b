// One question and its answer in the conversation: streamed tokens, citation chips, unsupported
// sentences marked once the check arrives (`done`), a refusal shown as such, and the sources panel.

import { $, clear, el, where } from "./dom.js";
import { showPassage } from "./viewer.js";

const MARKER = /\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/g;
const HAS_MARKER = /\[\d{1,3}(?:\s*,\s*\d{1,3})*\]/;

export class Turn {
  constructor(question, collection) {
    this.question = question;
    this.collection = collection;
    this.text = "";
    this.sources = [];
    this.done = null;
    this.answerEl = el("div", { class: "answer", "data-testid": "answer", "aria-busy": "true" });
    this.noteEl = el("p", { class: "searched small", hidden: true });
    this.footEl = el("div", { class: "answer-foot" });
    this.el = el(
      "li",
      { class: "turn" },
      el("p", { class: "question" }, el("span", { class: "visually-hidden" }, "You asked: "), question),
      this.noteEl,
      this.answerEl,
      this.footEl,
    );
    this.pending = false;
  }

  open(n, claim, opener) {
    const hit = this.sources[n - 1];
    if (hit) showPassage(hit, n, claim, this.collection, opener);
  }

  chip(n, claim, inferred = false) {
    const hit = this.sources[n - 1];
    const label = `Source ${n}${hit ? ": " + where(hit) : ""}${inferred ? " (matched by content)" : ""}`;
    const button = el(
      "button",
      { type: "button", class: inferred ? "chip inferred" : "chip", "data-testid": "citation", title: label },
      el("span", { "aria-hidden": "true" }, String(n)),
      el("span", { class: "visually-hidden" }, label),
    );
    button.dataset.n = String(n);
    button.addEventListener("click", () => this.open(n, claim, button));
    return button;
  }

  // Text with its [n] markers as chips; ``claim``: the sentence a chip opens highlighted.
  withChips(text, claim) {
    const out = [];
    let last = 0;
    for (const m of text.matchAll(MARKER)) {
      if (m.index > last) out.push(text.slice(last, m.index));
      const sentence = claim || lastSentence(text.slice(0, m.index));
      for (const n of m[1].split(/\s*,\s*/).map(Number)) out.push(this.chip(n, sentence));
      last = m.index + m[0].length;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  }

  onSources(data) {
    this.sources = data.sources || [];
    const query = (data.query || "").trim();
    if (query && query !== this.question.trim()) {
      this.noteEl.textContent = `searched for: ${query}`;
      this.noteEl.hidden = false;
    }
    renderSources(this, this.sources);
  }

  onToken(data) {
    this.text += data.text || "";
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      if (!this.done) this.answerEl.replaceChildren(...this.withChips(this.text));
    });
  }

  onDone(data) {
    this.done = data;
    this.text = data.answer ?? this.text;
    this.answerEl.setAttribute("aria-busy", "false");
    if (data.refused) return this.refused(data);
    this.answerEl.replaceChildren(...this.checked(this.text, data.claims || []));
    const bad = (data.claims || []).filter((c) => !c.supported).length;
    const foot = [];
    if (bad) {
      const total = (data.claims || []).filter((c) => c.checked).length;
      foot.push(
        el(
          "p",
          { class: "warn small" },
          `${bad} of ${total} checked sentences are not supported by the passages (marked).`,
        ),
      );
    }
    for (const note of data.notes || []) foot.push(el("p", { class: "hint small" }, note));
    if (data.omitted) foot.push(el("p", { class: "hint small" }, `${data.omitted} passages did not fit the prompt.`));
    const t = data.timings || {};
    if (t.total_ms) foot.push(el("p", { class: "hint small" }, `${data.mode} · ${(t.total_ms / 1000).toFixed(1)} s`));
    this.footEl.replaceChildren(...foot);
  }

  // The final answer: each checked sentence a span, unsupported ones marked, chips for markers
  // and for sentences matched to a source by content.
  checked(text, claims) {
    const nodes = [];
    let pos = 0;
    const sorted = claims.filter((c) => c.end > c.start).sort((a, b) => a.start - b.start);
    for (const c of sorted) {
      if (c.start < pos || c.end > text.length) continue;
      if (c.start > pos) nodes.push(...this.withChips(text.slice(pos, c.start)));
      const part = text.slice(c.start, c.end);
      const inner = this.withChips(part, c.text);
      if (!HAS_MARKER.test(part) && c.supported && c.checked && (c.sources || []).length) {
        inner.push(" ", this.chip(c.sources[0], c.text, true));
      }
      if (c.supported) {
        nodes.push(el("span", { class: "claim" }, inner));
      } else {
        const why = `not supported by the passages${c.reason ? ": " + c.reason : ""}`;
        nodes.push(
          el(
            "span",
            { class: "claim unsupported", "data-testid": "unsupported", title: why },
            inner,
            el("span", { class: "flag" }, el("span", { "aria-hidden": "true" }, "unsupported"),
              el("span", { class: "visually-hidden" }, ` (${why})`)),
          ),
        );
      }
      pos = c.end;
    }
    if (pos < text.length) nodes.push(...this.withChips(text.slice(pos)));
    return nodes;
  }

  refused(data) {
    const closest = data.sources && data.sources.length ? data.sources : this.sources;
    this.sources = closest;
    const list = el("ol", { class: "closest" });
    closest.forEach((hit, i) => {
      const button = el("button", { type: "button", class: "link" }, where(hit));
      button.addEventListener("click", () => this.open(i + 1, "", button));
      list.append(el("li", {}, button, " ", relevance(hit)));
    });
    this.answerEl.replaceChildren(
      el(
        "div",
        { class: "refusal", "data-testid": "refusal", role: "note" },
        el("strong", {}, "Not in the documents. "),
        this.text,
        el("p", { class: "small" }, "No passage was relevant enough, so no answer was written. The closest passages:"),
        list,
      ),
    );
    renderSources(this, closest);
  }

  onError(message) {
    this.answerEl.setAttribute("aria-busy", "false");
    this.footEl.replaceChildren(el("p", { class: "error", role: "alert" }, message));
  }
}

function lastSentence(text) {
  const parts = text.split(/(?<=[.!?。！？])\s+/);
  return parts[parts.length - 1] || text;
}

function relevance(hit) {
  if (typeof hit.relevance !== "number") return "";
  const value = Math.max(0, Math.min(1, hit.relevance));
  return el(
    "span",
    { class: "relevance" },
    el("meter", { min: 0, max: 1, low: 0.3, high: 0.6, optimum: 1, value, "aria-label": "relevance" }),
    ` ${value.toFixed(2)}`,
  );
}

export function renderSources(turn, hits) {
  const list = clear($("sources"));
  $("sources-empty").hidden = hits.length > 0;
  hits.forEach((hit, i) => {
    const n = hit.n || i + 1;
    const button = el("button", { type: "button", class: "link" }, `[${n}] ${where(hit)}`);
    button.addEventListener("click", () => turn.open(n, "", button));
    const meta = [];
    if (hit.heading) meta.push(el("span", { class: "small hint" }, hit.heading));
    if (hit.in_prompt === false) meta.push(el("span", { class: "badge" }, "not sent to the model"));
    list.append(el("li", {}, button, relevance(hit), ...meta));
  });
}

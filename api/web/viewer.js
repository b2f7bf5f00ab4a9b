// The passage viewer: the cited passage with the supporting sentence highlighted, its file and
// page, and for a PDF the page itself (rendered by the server, fetched with the key).

import { pageImage } from "./api.js";
import { $, clear, el, where } from "./dom.js";

const HAN = /\p{Script=Han}/u;

// Content terms: words of 3+ letters or with digits, and Chinese character bigrams.
export function terms(text) {
  const out = new Set();
  for (const word of text.toLowerCase().match(/[\p{L}\p{N}]+/gu) || []) {
    if (HAN.test(word)) {
      const chars = [...word];
      if (chars.length === 1) out.add(word);
      for (let i = 0; i + 1 < chars.length; i++) out.add(chars[i] + chars[i + 1]);
    } else if (word.length > 2 || /\d/.test(word)) {
      out.add(word);
    }
  }
  return out;
}

// [start, end) of each sentence of a passage (line breaks inside a sentence are kept: PDF text).
export function sentenceSpans(text) {
  const spans = [];
  let start = 0;
  const push = (a, b) => {
    while (a < b && /\s/.test(text[a])) a++;
    while (b > a && /\s/.test(text[b - 1])) b--;
    if (b > a) spans.push([a, b]);
  };
  for (const m of text.matchAll(/[.!?]+(?=\s|$)|[。！？；]|\n\s*\n/g)) {
    const end = m.index + m[0].length;
    push(start, end);
    start = end;
  }
  push(start, text.length);
  return spans;
}

// The span of ``passage`` that best supports ``claim``: the claim itself (whitespace may differ),
// else the sentence sharing most of its terms; null when nothing matches.
export function supportSpan(passage, claim) {
  const wanted = (claim || "").replace(/\s*\[\d[\d,\s]*\]/g, "").trim();
  if (!wanted) return null;
  const words = wanted.split(/\s+/).map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const exact = new RegExp(words.join("\\s+")).exec(passage);
  if (exact) return [exact.index, exact.index + exact[0].length];
  const want = terms(wanted);
  if (!want.size) return null;
  let best = null;
  let bestScore = 0;
  for (const [a, b] of sentenceSpans(passage)) {
    const have = terms(passage.slice(a, b));
    let shared = 0;
    for (const t of want) if (have.has(t)) shared++;
    const score = shared / want.size;
    if (score > bestScore) [best, bestScore] = [[a, b], score];
  }
  return bestScore >= 0.2 ? best : null;
}

let returnTo = null;
let shown = 0;

export function closePassage() {
  $("passage").hidden = true;
  if (returnTo && document.contains(returnTo)) returnTo.focus();
  returnTo = null;
}

export function initViewer() {
  $("passage-close").addEventListener("click", closePassage);
  $("passage").addEventListener("keydown", (e) => {
    if (e.key === "Escape") closePassage();
  });
}

// Open ``hit`` (a source of the answer, number ``n``) with ``claim`` highlighted.
export function showPassage(hit, n, claim, collection, opener) {
  const token = ++shown;
  returnTo = opener || document.activeElement;
  $("passage-title").textContent = n ? `Passage [${n}]` : "Passage";
  const details = [where(hit)];
  if (hit.heading) details.push(hit.heading);
  if (typeof hit.relevance === "number") details.push(`relevance ${hit.relevance.toFixed(2)}`);
  $("passage-where").textContent = details.join(" · ");
  const text = hit.text || "";
  const span = supportSpan(text, claim);
  const body = clear($("passage-text"));
  if (span) {
    const mark = el("mark", {}, text.slice(span[0], span[1]));
    body.append(text.slice(0, span[0]), mark, text.slice(span[1]));
  } else {
    body.append(text);
  }
  const figure = $("page-figure");
  const img = $("page-image");
  figure.hidden = true;
  img.removeAttribute("src");
  if (hit.page && /\.pdf$/i.test(hit.source)) {
    $("page-caption").textContent = `${hit.source}, page ${hit.page}`;
    img.alt = `Page ${hit.page} of ${hit.source}`;
    pageImage(hit.source, hit.page, collection)
      .then((url) => {
        if (token !== shown) return;
        img.src = url;
        figure.hidden = false;
      })
      .catch((err) => {
        if (token !== shown) return;
        $("page-caption").textContent = `The page could not be shown: ${err.message}`;
        figure.hidden = false;
      });
  }
  const panel = $("passage");
  panel.hidden = false;
  panel.scrollIntoView({ block: "nearest" });
  const mark = body.querySelector("mark");
  if (mark) mark.scrollIntoView({ block: "nearest" });
  $("passage-title").focus();
}

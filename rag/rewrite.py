"""The retrieval query for a follow-up question: rewritten to stand alone.

"Is it waived if the item is damaged?" retrieves nothing useful on its own words; after "What is
the restocking fee for opened items?" it means "Is the restocking fee for opened items waived if
the item is damaged?". ``standalone`` asks the chat model for that rewrite (a short prompt,
temperature 0), accepts it only if it looks sane, and otherwise (or with no model: the tiny
embedded one cannot do it) applies deterministic rules: a follow-up that refers back (pronouns,
"what about ...", Chinese 它/这个/那 ..., a bare "呢" question) or says little on its own gets the
salient words of the previous user question(s) appended.

The query is for retrieval only; the model still answers the question as the user wrote it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from rag.text import CJK_CLASS, content_terms, is_chinese, language

if TYPE_CHECKING:  # rag.models loads the openai SDK; a rewrite needs only the interface
    from rag.models import ChatModel

Method = Literal["none", "model", "rules"]

PROMPT = (
    "Rewrite the user's follow-up question as one standalone question that can be understood without "
    "the conversation: replace pronouns and references with what they refer to. Keep the language of the "
    "follow-up. Reply with the rewritten question only, on one line."
)
MAX_TOKENS = 64
TURNS = 3  # earlier user questions the prompt and the rules look at
ANSWER_CHARS = 300  # of each earlier answer shown to the model
CONTEXT_WORDS = 12  # words the rules append at most

# A follow-up that refers back to something said before.
_EN_REFERS = re.compile(
    r"\b(?:it|its|it's|they|them|their|theirs|this|that|these|those|he|him|his|she|her|one|ones|there|then|same"
    r"|former|latter|above|else)\b|^\s*(?:and|also|but|so|or|what about|how about|why not|what if)\b",
    re.IGNORECASE,
)
_ZH_REFERS = re.compile(
    r"它|他们|她们|这个|那个|这些|那些|这款|那款|这种|那种|该|此|其|上述|呢[？?]?\s*$|^那|^还有|^另外"
)
# Words of a Chinese question that are not what it is about.
_ZH_FILLER = re.compile(
    r"多长时间|多久|多少|多长|什么时候|怎么办|怎么样|怎么|如何|为什么|什么|哪些|哪个|哪里|是否|可以|能否|请问"
    r"|吗|呢|吧|的|了|是|有|要|会|我|你|在|和|与|[，。？！、；：,.?!;:]"
)
_EN_QUESTION = frozenset(
    """what which who whom whose when where why how is are was were do does did can could should would will may
    might must shall please tell me i my you your we our a an the""".split()  # noqa: SIM905
)
_WORDS = re.compile(f"[{CJK_CLASS}]+|[\\w][\\w.+/-]*")


@dataclass
class Rewrite:
    query: str  # what to retrieve with
    method: Method  # "none": the question as it is (no earlier turn); "model" or "rules": who rewrote it
    error: str | None = None  # why the model's rewrite was not used (then method is "rules")

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "method": self.method, "error": self.error}


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _user_turns(history: list[dict[str, Any]]) -> list[str]:
    return [t for m in history if m.get("role") == "user" and (t := _text(m).strip())]


def standalone(question: str, history: list[dict[str, Any]], chat: ChatModel | None = None, **params: Any) -> Rewrite:
    """The retrieval query for ``question`` after ``history`` (OpenAI messages, oldest first).
    ``chat``: rewrite with this model (``params`` pass to its ``stream``, over temperature 0 and
    ``MAX_TOKENS``); None: by the rules alone."""
    previous = _user_turns(history)
    if not previous:
        return Rewrite(question, "none")
    if chat is None:
        return Rewrite(by_rules(question, previous), "rules")
    try:
        raw = "".join(d.text for d in chat.stream(_messages(question, history), **_params(params)))
    except Exception as exc:  # any failure of the rewrite falls back to the rules; the answer goes on
        return Rewrite(by_rules(question, previous), "rules", f"rewrite failed: {exc}")
    query, problem = check(raw, question, history)
    if problem is not None:
        return Rewrite(by_rules(question, previous), "rules", f"rewrite rejected ({problem}): {raw.strip()[:200]!r}")
    return Rewrite(query, "model")


def _params(params: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in params.items() if k not in ("stream", "messages", "n")}
    out["temperature"] = 0.0
    out["max_tokens"] = min(int(out.get("max_tokens") or MAX_TOKENS), MAX_TOKENS)
    return out


def _messages(question: str, history: list[dict[str, Any]]) -> list[dict[str, str]]:
    turns = [m for m in history if m.get("role") in ("user", "assistant")]
    users = [i for i, m in enumerate(turns) if m.get("role") == "user"]
    recent = turns[users[-TURNS] :] if len(users) > TURNS else turns
    lines = []
    for m in recent:
        text = " ".join(_text(m).split())
        if m.get("role") == "assistant":
            lines.append(f"Assistant: {text[:ANSWER_CHARS]}{'...' if len(text) > ANSWER_CHARS else ''}")
        else:
            lines.append(f"User: {text}")
    user = "Conversation:\n" + "\n".join(lines) + f"\n\nFollow-up: {question}\n\nStandalone question:"
    return [{"role": "system", "content": PROMPT}, {"role": "user", "content": user}]


def check(raw: str, question: str, history: list[dict[str, Any]]) -> tuple[str, str | None]:
    """The model's rewrite cleaned (labels and quotes stripped), and what is wrong with it, if anything:
    empty, more than one line, much longer than the question and the last turn, sharing no term with
    them, or in another language than the question."""
    text = raw.strip().strip("\"'“”「」").strip()
    text = re.sub(r"^(?:standalone question|rewritten question|question|问题)\s*[:：]\s*", "", text, flags=re.I)
    text = text.strip().strip("\"'“”「」").strip()
    if not text:
        return text, "empty"
    if "\n" in text:
        return text, "more than one line"
    previous = _user_turns(history)
    limit = 1.5 * (len(question) + len(previous[-1] if previous else "")) + 20
    if len(text) > limit:
        return text, "too long"
    known = content_terms(question)
    for m in history:
        known |= content_terms(_text(m))
    if not content_terms(text) & known:
        return text, "unrelated to the conversation"
    if language(text) != language(question):
        return text, "another language"
    return text, None


def refers_back(question: str) -> bool:
    """True when ``question`` leans on an earlier turn: a pronoun or reference ("it", "that one",
    "what about", 它, 这个, a bare "...呢？"), or too few content words to stand alone."""
    if is_chinese(question):
        core = _ZH_FILLER.sub("", question)
        return bool(_ZH_REFERS.search(question)) or len(re.findall(f"[{CJK_CLASS}]", core)) < 4
    return bool(_EN_REFERS.search(question)) or len(content_terms(question)) < 2


def salient(text: str) -> list[str]:
    """The words of a question that say what it is about, in order: no question or function words
    (English stopwords and question words; Chinese question words and particles)."""
    if is_chinese(text):
        return [w for w in _ZH_FILLER.sub(" ", text).split() if w]
    out = []
    for word in _WORDS.findall(text):
        if word.lower() in _EN_QUESTION or not content_terms(word):
            continue
        out.append(word.rstrip(".,;:"))
    return out


def names(text: str) -> list[str]:
    """The salient words that name the thing asked about: words with a digit (X200, Q7), acronyms
    (RMA, HEPA), capitalised words inside the sentence (Northwind); in Chinese also the words
    before the first 的 (the possessor: "Q7 空气净化器的滤网" is about the Q7)."""
    if is_chinese(text):
        head = salient(_ZH_REFERS.sub(" ", text.split("的", 1)[0])) if "的" in text else []
        return head + [w for w in salient(text) if re.search(r"\d|[A-Z]{2}", w) and w not in head]
    words = _WORDS.findall(text)
    first = words[0] if words else ""
    return [
        w.rstrip(".,;:")
        for w in salient(text)
        if re.search(r"\d", w) or (len(w) > 1 and w.isupper()) or (w[:1].isupper() and w != first)
    ]


def by_rules(question: str, previous: list[str]) -> str:
    """``question`` with words of the previous user questions appended when it refers back (the
    latest question first, then earlier ones while they too were follow-ups). Which words: the
    previous question's names (what it was about: "its warranty" after a question on the X200 gets
    "X200"); if the follow-up names its own thing ("What about the Z10?"), the other words (what was
    asked); if the previous question named nothing, all its salient words."""
    if not refers_back(question):
        return question
    own = names(question)
    words: list[str] = []
    seen = {w.casefold() for w in salient(question)}
    for turn in reversed(previous[-TURNS:]):
        found = names(turn)
        pick = [w for w in salient(turn) if w not in found] if own else found
        if not found:
            pick = salient(turn)
        for word in pick:
            if word.casefold() not in seen:
                seen.add(word.casefold())
                words.append(word)
        if not refers_back(turn):
            break  # this one stood alone: what came before it is an older topic
    if not words:
        return question
    return f"{question} {' '.join(words[:CONTEXT_WORDS])}"

"""What a sentence asserts, for checking it against a passage (``rag.claims``): its hard facts
(numbers in digits, words or Chinese numerals, dates, versions; code-like tokens; capitalised
names), whether it is negated, its clauses, words with opposites, and whether it is trivial
(greetings, refusals: nothing to check). English and Chinese.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.text import CJK, STOPWORDS, content_terms, stem

_SMALL = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
_EN_NUMBERS = {w: i for i, w in enumerate(_SMALL.split() + ["seventeen", "eighteen", "nineteen", "twenty"]) if i != 1}
_EN_NUMBERS |= {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "ninety": 90, "hundred": 100, "thousand": 1000}
_MONTHS = {
    m: i
    for i, m in enumerate(
        "january february march april may june july august september october november december".split(),  # noqa: SIM905
        start=1,
    )
}
_ZH_DIGITS = dict(zip("零一二两三四五六七八九", (0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9), strict=True))
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000}
_NUMBER = re.compile(r"(?<![A-Za-z_\d.])\d+(?:[.,:/-]\d+)*")
_ZH_NUMBER = re.compile("[零一二两三四五六七八九十][零一二两三四五六七八九十百千万]*")
_WORD = re.compile(r"[A-Za-z][A-Za-z]+")
_CODE = re.compile(r"`([^`]+)`|(--?[A-Za-z][\w-]*)|((?:[\w.-]*/)+[\w.-]+|[A-Za-z0-9_.=-]*[A-Za-z0-9_][A-Za-z0-9_.=-]*)")
_DEFAULT = re.compile(r"\bdefault|默认|缺省", re.I)
_EN_NEG = re.compile(r"\b(?:not|no|never|cannot|without|none|nor|neither|nothing|unable|non)\b|n't\b", re.I)
_ZH_NEG = re.compile("不|没|无|非|未|禁止|勿")
# Not negations: other words written with a negating character, and comparisons ("no more than 25").
_NOT_NEG = re.compile(
    r"不同|不仅|不过|不断|不少|不久|不管|不论|不但|无线|无论|非常|除非|未来|不超过|不足|不到|不少于|不低于|不高于|不多于"
    r"|\bno(?:t)? (?:more|less|fewer|later|earlier|longer|shorter) than\b",
    re.I,
)
_CLAUSE = re.compile(
    r"[,;:()，；：、（）]|--|\b(?:but|while|although|unless|otherwise|because)\b|但是?|而且|并且|否则|尽管|因为"
)
# Words of opposite meaning: a clause using one where its source clause uses another says the opposite.
_OPPOSITES = [
    frozenset(g.split())
    for g in (
        "enabl disabl",
        "true false",
        "alway never",
        "increas decreas reduc",
        "higher lower",
        "more less fewer",
        "befor after",
        "maximum minimum",
        "abov below",
        "accept refus reject",
        "open close",
        "recommend deprec",
        "hour daili weekli monthli yearli annual",
        "启用 禁用",
        "开启 关闭",
        "增加 减少 降低",
        "最高 最低",
        "以上 以下",
        "之前 之后",
        "高于 低于",
        "每小时 每天 每周 每月 每年",
        "顶部 底部 背部 正面 侧面",
    )
]
_TRIVIAL = re.compile(
    r"^(?:hello|hi|sure|thanks|thank you|you're welcome|here is|here are|in summary|i hope this helps|"
    r"i (?:cannot|can't|could not|couldn't) find|i don't know|the (?:documents|sources) do not say|"
    r"the (?:documents|sources) say:|according to the (?:documents|sources)[:,]|"  # lead-ins (quote mode's)
    r"你好|谢谢|抱歉|对不起|以下是|文档中没有|资料中没有|我无法|我不知道|文档中的相关内容|根据文档)",
    re.I,
)


_ZH_GROUP_WORDS = frozenset(w for g in _OPPOSITES for w in g if CJK.match(w))


@dataclass
class Facts:
    numbers: set[str]  # each number as written (normalised) and its parts: "2025-11-18", "2025", "11", "18"
    wholes: set[str]  # the claim side: each number as written
    codes: set[str]  # code-like tokens, lower-cased
    names: set[str]  # capitalised words, lower-cased
    default: bool


def _norm(number: str) -> str:
    number = re.sub(r"(?<=\d),(?=\d{3}\b)", "", number)
    return re.sub(r"\d+", lambda m: str(int(m.group())), number)


def _zh_value(run: str) -> int:
    total, section, digit = 0, 0, 0
    for ch in run:
        if ch in _ZH_DIGITS:
            digit = _ZH_DIGITS[ch]
        elif ch == "万":
            total += (section + digit) * 10000
            section, digit = 0, 0
        else:
            section += (digit or 1) * _ZH_UNITS[ch]
            digit = 0
    return total + section + digit


def _is_code(token: str) -> bool:
    core = token.strip(".-=")
    if len(core) < 2:
        return False
    has_digit, has_alpha = any(c.isdigit() for c in core), any(c.isalpha() for c in core)
    return (
        "_" in core
        or "/" in core
        or "=" in core
        or (has_digit and has_alpha)
        or (core.isupper() and has_alpha)
        or any(c.isupper() for c in core[1:])
        and any(c.islower() for c in core)
        or core.count("-") >= 2
        or ("." in core and has_alpha and not core.endswith("."))
    )


def facts(text: str) -> Facts:
    wholes = {_norm(m.group()) for m in _NUMBER.finditer(text)}
    wholes |= {str(_zh_value(m.group())) for m in _ZH_NUMBER.finditer(text) if m.group() != "一"}
    low = text.lower()
    for word in _WORD.findall(low):
        if word in _EN_NUMBERS:
            wholes.add(str(_EN_NUMBERS[word]))
        elif word in _MONTHS and (word != "may" or re.search(r"\bMay\b", text)):
            wholes.add(str(_MONTHS[word]))
    numbers = wholes | {p for w in wholes for p in re.split(r"[-/]", w) if p}  # dates, ranges: 2025-11-18
    codes: set[str] = set()
    for m in _CODE.finditer(text):
        if m.group(1):
            codes |= {t.lower() for t in m.group(1).split() if len(t) > 1}
        elif m.group(2):
            codes.add(m.group(2).lower())
        elif _is_code(m.group(3)) and not _NUMBER.fullmatch(m.group(3)):
            codes.add(m.group(3).strip(".-=").lower())
    names = set()
    chinese = bool(CJK.search(text))
    if chinese:
        codes |= {w.lower() for w in re.findall(r"[A-Za-z][\w.-]*[A-Za-z0-9]", text)}
    for m in re.finditer(r"[A-Z][a-z]+", text):
        first = not text[: m.start()].strip() or text[: m.start()].rstrip()[-1:] in ".:!?\"'("
        before, after = text[m.start() - 1 : m.start()], text[m.end() : m.end() + 1]
        if (chinese or not first) and not (before.isalnum() or after.isalnum() or after in "_-"):
            word = m.group().lower()
            if word not in STOPWORDS and word not in _MONTHS:
                names.add(word)
    return Facts(numbers, wholes, codes, names, bool(_DEFAULT.search(text)))


def numbers_missing(claim: Facts, window: Facts) -> str | None:
    return next((n for n in sorted(claim.wholes) if n not in window.numbers), None)


def names_missing(wanted: set[str], have: set[str], text: str) -> str | None:
    low = text.lower()
    for name in sorted(wanted):
        if name in have or re.search(rf"(?<![a-z0-9_]){re.escape(name)}(?![a-z0-9_])", low):
            continue
        if stem(name) in content_terms(low):
            continue
        return name
    return None


def negated(text: str) -> bool:
    text = _NOT_NEG.sub(" ", text)
    return bool(_EN_NEG.search(text) or _ZH_NEG.search(text))


def opposite(claim: str, source: str) -> bool:
    """Does ``claim`` use a word whose opposite (and not the word itself) ``source`` uses?"""
    a, b = _stems(claim), _stems(source)
    return any((a & g) and (b & g) and not (a & b & g) for g in _OPPOSITES)


def _stems(text: str) -> set[str]:
    words = {stem(w) for w in re.findall(r"[a-z]+", text.lower())}
    return words | {g for g in _ZH_GROUP_WORDS if g in text}


def clauses(text: str) -> list[str]:
    return [c for c in _CLAUSE.split(text) if c.strip()]


def trivial(claim: str, terms: set[str]) -> bool:
    if _TRIVIAL.match(claim.strip()):
        return True
    f = facts(claim)
    return len(terms) < 3 and not (f.wholes or f.codes or f.names)

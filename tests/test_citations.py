"""Citation markers in a token stream (MarkerFilter) and content attribution (attribute)."""

from __future__ import annotations

import pytest

from rag.citations import Attribution, MarkerFilter, attribute


def stream(n_sources: int, deltas: list[str]) -> tuple[str, MarkerFilter]:
    """Feed ``deltas`` one by one, then flush; return everything emitted."""
    f = MarkerFilter(n_sources)
    out = [f.feed(d) for d in deltas]
    out.append(f.flush())
    return "".join(out), f


# -- MarkerFilter --------------------------------------------------------------------------


def test_valid_markers_pass_unchanged() -> None:
    text = "The warranty is 3 years [1]. The battery is covered for 12 months [2][3]. Both apply [1, 3]."
    out, f = stream(3, [text])
    assert out == text
    assert f.cited == [1, 2, 3]
    assert f.dropped == []


@pytest.mark.parametrize(
    ("text", "expected", "dropped"),
    [
        ("Fact [7].", "Fact .", ["[7]"]),
        ("Fact [0].", "Fact .", ["[0]"]),
        ("Fact [4] and [2].", "Fact  and [2].", ["[4]"]),
        ("Fact [1, 9].", "Fact [1].", ["[1, 9]"]),
        ("Fact [9,2].", "Fact [2].", ["[9,2]"]),
        ("Fact [8, 9].", "Fact .", ["[8, 9]"]),
        ("Fact [10].", "Fact .", ["[10]"]),
    ],
)
def test_out_of_range_markers_are_dropped(text: str, expected: str, dropped: list[str]) -> None:
    out, f = stream(3, [text])
    assert out == expected
    assert f.dropped == dropped
    assert all(k in (1, 2, 3) for k in f.cited)


@pytest.mark.parametrize(
    ("deltas", "expected"),
    [
        (["Fact ", "[", "7", "]", " end."], "Fact  end."),
        (["Fact [", "0", "]."], "Fact ."),
        (["Fact [1", ", ", "9", "]."], "Fact [1]."),
        (["Fact [", "1", "0]", "."], "Fact ."),
        (["Fact ", "[", "2", "]", " end."], "Fact [2] end."),
    ],
)
def test_markers_split_across_deltas(deltas: list[str], expected: str) -> None:
    f = MarkerFilter(3)
    emitted = []
    for d in deltas:
        piece = f.feed(d)
        emitted.append(piece)
        # Nothing out of range is ever emitted, not even half a marker.
        assert not any(bad in piece for bad in ("7", "9", "0]", "[0", "10"))
    emitted.append(f.flush())
    assert "".join(emitted) == expected


def test_any_split_point_gives_the_same_output() -> None:
    text = "Setup takes 2 minutes [1]. Warranty [7] is [2, 8] long; see array[idx] and [3]. Also [0]!"
    whole, _ = stream(3, [text])
    assert whole == "Setup takes 2 minutes [1]. Warranty  is [2] long; see array[idx] and [3]. Also !"
    for i in range(len(text) + 1):
        out, f = stream(3, [text[:i], text[i:]])
        assert out == whole, i
        assert f.cited == [1, 2, 3]
    out, f = stream(3, list(text))  # one character per delta
    assert out == whole
    assert f.cited == [1, 2, 3]


@pytest.mark.parametrize(
    "text",
    ["value = array[idx] + 1", "see [note] here", "[a, b]", "list[str] | None", "[ ]", "a [b] [c1]", "x[-1]"],
)
def test_brackets_that_are_not_markers_are_not_eaten(text: str) -> None:
    assert stream(3, [text])[0] == text
    assert stream(3, list(text))[0] == text
    f = MarkerFilter(3)
    assert f.feed(text) + f.flush() == text
    assert f.cited == [] and f.dropped == []


def test_held_text_is_released_when_it_stops_looking_like_a_marker() -> None:
    f = MarkerFilter(3)
    assert f.feed("array[") == "array"  # could still become a marker
    assert f.feed("idx] ok") == "[idx] ok"


def test_flush_releases_held_text() -> None:
    f = MarkerFilter(3)
    assert f.feed("see [") == "see "
    assert f.flush() == "["
    assert f.flush() == ""  # nothing held twice

    f = MarkerFilter(3)
    assert f.feed("ends with [1, 2") == "ends with "
    assert f.flush() == "[1, 2"  # never closed: not a marker, released verbatim
    assert f.cited == []


def test_held_text_does_not_grow_without_bound() -> None:
    f = MarkerFilter(3)
    out = f.feed("[" + " " * 100)  # longer than any real marker
    assert out == "[" + " " * 100
    assert f.flush() == ""


def test_cited_in_order_of_first_appearance() -> None:
    out, f = stream(4, ["Battery [3]. Lamp [1]", ". Again [3]", ". Both [4, 2]", ". Bad [9]."])
    assert f.cited == [3, 1, 4, 2]
    assert "[9]" not in out
    assert f.dropped == ["[9]"]


def test_no_sources_drops_every_marker() -> None:
    out, f = stream(0, ["I cannot find that ", "[", "1", "] in the documents."])
    assert out == "I cannot find that  in the documents."
    assert f.cited == []


def test_long_marker_list_streamed_char_by_char_is_still_filtered() -> None:
    text = "Facts [1, 2, 3, 4, 5, 6, 7, 8, 9] end."
    whole, _ = stream(3, [text])
    assert whole == "Facts [1, 2, 3] end."  # in one delta it works
    out, f = stream(3, list(text))
    assert out == whole


# -- attribute ------------------------------------------------------------------------------

SOURCES = [
    "The X200 delivers a bright image of 600 lumens at a native resolution of 1280 x 720 pixels.",
    "The X200 is covered by a limited warranty of 3 years (36 months) from the date of purchase. "
    "The warranty covers defects in materials and workmanship under normal use.",
    "Q7 的 HEPA 滤网建议每六个月更换一次。如果您居住在交通繁忙的路段附近，建议缩短为每四个月更换一次。",
    "Q7 保修期为两年，自购买之日起计算。在保修期内，因材料或工艺缺陷导致的故障，我们将免费为您维修或更换。",
]


def test_sentence_copied_from_a_source_is_attributed_as_inferred() -> None:
    answer = "The warranty covers defects in materials and workmanship under normal use."
    assert attribute(answer, SOURCES, cited=[]) == [Attribution(2, True)]


def test_cited_sources_come_first_and_are_not_repeated() -> None:
    answer = "It is very bright [1]. The warranty covers defects in materials and workmanship under normal use."
    assert attribute(answer, SOURCES, cited=[1]) == [Attribution(1, False), Attribution(2, True)]
    assert attribute(answer, SOURCES, cited=[2, 1]) == [Attribution(2, False), Attribution(1, False)]


def test_unrelated_text_gets_no_attribution() -> None:
    answer = "Bananas are yellow fruit grown in tropical countries. Penguins cannot fly at all."
    assert attribute(answer, SOURCES, cited=[]) == []


def test_sentence_with_its_own_marker_is_not_re_attributed() -> None:
    answer = "The warranty covers defects in materials and workmanship under normal use [1]."
    assert attribute(answer, SOURCES, cited=[1]) == [Attribution(1, False)]


def test_short_sentences_are_not_attributed() -> None:
    assert attribute("The X200. 600 lumens.", SOURCES, cited=[]) == []


def test_chinese_sentence_is_attributed_by_cjk_bigrams() -> None:
    answer = "在保修期内，因材料或工艺缺陷导致的故障，我们将免费为您维修或更换。"
    assert attribute(answer, SOURCES, cited=[]) == [Attribution(4, True)]
    answer = "HEPA 滤网建议每六个月更换一次。"
    assert attribute(answer, SOURCES, cited=[]) == [Attribution(3, True)]


def test_chinese_unrelated_text_is_not_attributed() -> None:
    assert attribute("今天天气很好，我们一起去公园散步吧。", SOURCES, cited=[]) == []


@pytest.mark.parametrize("sep", [".[1] ", ". [1] ", ".[1]\n"])
def test_marker_after_the_period_belongs_to_the_previous_sentence(sep: str) -> None:
    copied = "The warranty covers defects in materials and workmanship under normal use."
    answer = "The X200 delivers 600 lumens" + sep + copied
    assert attribute(answer, SOURCES, cited=[1]) == [Attribution(1, False), Attribution(2, True)]

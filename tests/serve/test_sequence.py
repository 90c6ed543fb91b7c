"""StopMatcher: stop strings found across token boundaries, nothing after them sent, nothing held back for good."""

from __future__ import annotations

from mmv.serve.sequence import StopMatcher


def feed(stops: list[str], pieces: list[str]) -> tuple[str, bool, str]:
    matcher, sent = StopMatcher(stops), ""
    for piece in pieces:
        text, stopped = matcher.push(piece)
        sent += text
        if stopped:
            return sent, True, ""
    return sent, False, matcher.flush()


def test_a_stop_string_split_over_pieces_ends_the_text_before_it():
    assert feed(["END"], ["Hello E", "N", "D and more"]) == ("Hello ", True, "")
    assert feed(["b", "xyz"], ["aaxy", "zb"]) == ("aa", True, "")  # the earliest stop wins


def test_a_false_start_is_sent_once_it_cannot_be_a_stop():
    matcher = StopMatcher(["END"])
    assert matcher.push("Hello E") == ("Hello ", False)  # "E" may begin "END": held
    assert matcher.push("X") == ("EX", False)
    assert feed(["END"], ["tail E"]) == ("tail ", False, "E")  # flushed when the reply ends by length

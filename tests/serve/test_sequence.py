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


def test_the_first_token_is_sent_even_when_it_shows_no_text_yet():
    import threading

    import torch

    from mmv.sampling import SamplingConfig, TokenSampler
    from mmv.serve.prompt import Prompt
    from mmv.serve.sequence import GenerationRequest, Sequence, TextDelta
    from mmv.tokenizer import load_tokenizer
    from tests.conftest import TOKENIZER_DIR

    tokenizer = load_tokenizer(TOKENIZER_DIR)
    events = []
    sampling = SamplingConfig(max_new_tokens=8, temperature=0, stop_on_eos=False)
    request = GenerationRequest(Prompt([1, 832], [], 8), sampling, [], events.append)
    prompt = torch.tensor([[1, 832]])
    sampler = TokenSampler(sampling, prompt, torch.ones_like(prompt), len(tokenizer))
    row = Sequence(request, sampler, tokenizer, threading.Lock(), 2, None, 0)
    word = tokenizer.encode("hello", add_special_tokens=False)[0]
    for token in (1, 1, word):  # <|im_start|> shows nothing (special tokens are skipped)
        logits = torch.zeros(1, len(tokenizer))
        logits[0, token] = 1.0
        row.accept(logits)
    assert [type(e) for e in events] == [TextDelta, TextDelta]
    assert events[0].text == "" and events[1].text == tokenizer.decode([word])

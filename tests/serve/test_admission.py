"""Which joining requests share a prefill: similar lengths together, a long prompt not widening short ones."""

from __future__ import annotations

from mmv.sampling import SamplingConfig
from mmv.serve.admission import Joining, batches, prefill_groups
from mmv.serve.prompt import Prompt
from mmv.serve.sequence import GenerationRequest


def test_prompts_of_similar_length_share_one_prefill():
    assert prefill_groups([90, 92, 90, 20]) == [[3, 0, 2, 1]]


def test_a_long_prompt_is_not_padded_onto_short_ones():
    # 10 and 12 together pad 2 tokens; 500 beside them would pad ~1000 for 522 real ones
    assert prefill_groups([500, 10, 12]) == [[1, 2], [0]]
    assert prefill_groups([7]) == [[0]]
    assert prefill_groups([]) == []


def test_every_group_pads_at_most_its_real_tokens():
    lengths = [3, 40, 41, 5, 300, 90, 7, 88, 1000, 2]
    groups = prefill_groups(lengths)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    for group in groups:
        assert max(lengths[i] for i in group) * len(group) <= 2 * sum(lengths[i] for i in group)


def test_a_request_with_a_prefix_is_prefilled_alone():
    def joining(length: int, prefix: object = None) -> Joining:
        request = GenerationRequest(Prompt([1] * length, [], 4), SamplingConfig(max_new_tokens=4), [], print)
        return Joining(request, prefix=prefix)

    fresh, short, resumed = joining(30), joining(28), joining(30, prefix=object())
    assert batches([fresh, resumed, short]) == [[resumed], [short, fresh]]

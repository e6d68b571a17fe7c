"""The random-weights copy behind every sanity row: seeded, vision only, and the user's model untouched."""

import torch

from captum_clip.core.randomise import randomised_vision_copy

from ..conftest import assert_unchanged, snapshot


def test_every_vision_weight_is_drawn_again_reproducibly_and_the_text_tower_kept(tiny_bundles):
    for bundle in tiny_bundles.values():
        before = snapshot(bundle.model)
        state = torch.get_rng_state()
        first, again, other = (randomised_vision_copy(bundle, seed) for seed in (0, 0, 1))
        assert torch.equal(torch.get_rng_state(), state)  # the global random state is restored
        assert_unchanged(bundle.model, before)
        originals = dict(bundle.model.named_parameters())
        for name, parameter in first.model.named_parameters():
            if name.startswith("visual."):
                assert not torch.equal(parameter, originals[name]), name
                assert torch.equal(parameter, dict(again.model.named_parameters())[name]), name
            else:
                assert torch.equal(parameter, originals[name]), name
        assert any(not torch.equal(p, q) for p, q in zip(first.model.visual.parameters(), other.model.visual.parameters()))
        assert first.name.endswith("(random weights)") and not first.model.training


def test_the_copy_shares_the_text_tower_and_keeps_the_precision(tiny_bundles):
    import dataclasses

    bundle = dataclasses.replace(tiny_bundles["vit"], precision="bf16")
    copy = randomised_vision_copy(bundle, 0)
    assert copy.precision == "bf16" and copy.preprocess is bundle.preprocess
    assert copy.model.token_embedding.weight is bundle.model.token_embedding.weight  # shared, only read
    assert copy.model.visual.conv1.weight is not bundle.model.visual.conv1.weight

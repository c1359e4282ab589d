from __future__ import annotations

import pytest
import torch

from medklip import MedKLIP, MedKLIPConfig
from medklip.labels import UNCERTAIN, UNMENTIONED
from medklip.models import MedKLIPCriterion, MedKLIPOutput, pair_counts

CRITERION = MedKLIPCriterion()

SMALL = dict(backbone="resnet18", image_size=64, d_model=32, num_layers=2, num_heads=4,
             dim_feedforward=64, text_dim=24)


def small_model(q: int = 5, p: int = 9, **overrides) -> MedKLIP:
    torch.manual_seed(0)
    cfg = MedKLIPConfig(**{**SMALL, **overrides})
    return MedKLIP(cfg, torch.randn(q, cfg.text_dim), torch.randn(p, cfg.text_dim))


@pytest.mark.parametrize("backbone,size", [("resnet18", 64), ("resnet18", 96), ("resnet18", 100), ("resnet50", 128),
                                                 ("local", 96), ("local", 100), ("local", 77)])
@pytest.mark.parametrize("stride", [16, 8])
def test_patch_grid_is_derived_from_image_size(backbone: str, size: int, stride: int) -> None:
    model = small_model(backbone=backbone, image_size=size, feature_stride=stride).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    h, w = model.config.patch_grid
    assert out.patch_grid == (h, w)
    assert out.heatmaps.shape == (2, 5, h, w)
    assert all(a.shape == (2, 5, h * w) for a in out.attentions)
    assert len(out.attentions) == model.config.num_layers


def test_output_shapes_and_probabilities() -> None:
    model = small_model().eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, 64, 64))
    assert out.logits.shape == (3, 5, 2)
    assert out.position_features.shape == (3, 5, 24)
    assert out.position_logits.shape == (3, 5, 9)
    torch.testing.assert_close(out.probs, out.logits.softmax(-1)[..., 1])
    torch.testing.assert_close(out.heatmaps.sum((-1, -2)), torch.ones(3, 5))  # attention rows sum to 1


def test_new_query_needs_no_retraining() -> None:
    model = small_model().eval()
    images = torch.randn(2, 3, 64, 64)
    new = torch.randn(1, 24)
    model.add_queries(["covid-19"], new, ["It is a contagious disease..."])
    assert model.entity_names[-1] == "covid-19" and model.query_index("COVID-19") == 5
    with torch.no_grad():
        out = model(images)
        alone = model(images, queries=new)
    assert out.logits.shape == (2, 6, 2)
    assert alone.logits.shape == (2, 1, 2)


def test_release_initialisation() -> None:
    model = small_model()
    weights = torch.cat([model.fusion.layers[0].linear1.weight.flatten(), model.position_head.weight.flatten(),
                         model.fusion.layers[1].cross_attn.in_proj_weight.flatten()])
    assert abs(weights.std().item() - 0.02) < 0.002
    assert torch.count_nonzero(model.existence_head.bias) == 0
    assert torch.count_nonzero(model.fusion.layers[0].self_attn.in_proj_bias) == 0
    assert torch.count_nonzero(model.fusion.layers[0].self_attn.out_proj.bias) == 0


def test_loss_ignores_uncertain_and_unmentioned() -> None:
    model = small_model().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    labels = torch.tensor([[1, 0, UNCERTAIN, UNMENTIONED, 1], [0, UNMENTIONED, 1, UNCERTAIN, 0]])
    index = torch.randint(0, 9, (2, 5, 8))
    loss = CRITERION(out, labels, index, model.position_embeddings)
    known = torch.tensor([[1, 1, 0, 0, 1], [1, 0, 1, 0, 1]], dtype=torch.bool)
    ce = torch.nn.functional.cross_entropy(out.logits[known], labels[known])
    torch.testing.assert_close(loss.existence, ce)
    present = labels == 1
    scores = (model.position_embeddings[index[present]] * out.position_features[present][:, None]).sum(-1)
    cl = torch.nn.functional.cross_entropy(scores, torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(loss.position, cl)
    torch.testing.assert_close(loss.total, ce + cl)
    assert (loss.num_existence, loss.num_position) == (6, 3)
    # changing an ignored label changes nothing
    labels2 = labels.clone()
    labels2[0, 2] = UNMENTIONED
    torch.testing.assert_close(CRITERION(out, labels2, index, model.position_embeddings).total, loss.total)


def test_loss_normalised_by_a_larger_batch_is_the_share_of_its_mean() -> None:
    """What DDP and validation rely on: sums divided by the pair counts of the whole batch."""
    model = small_model().eval()
    with torch.no_grad():
        out = model(torch.randn(4, 3, 64, 64))
    labels = torch.tensor([[1, 0, 2, 1, 0]] * 2 + [[0, 0, 1, -1, 1]] * 2)
    index = torch.randint(0, 9, (4, 5, 8))
    whole = CRITERION(out, labels, index, model.position_embeddings)
    halves = [MedKLIPOutput(out.logits[s], out.probs[s], out.position_features[s], out.position_logits[s], [],
                            None, out.patch_grid) for s in (slice(0, 2), slice(2, 4))]
    counts = pair_counts(labels)
    parts = [CRITERION(h, labels[s], index[s], model.position_embeddings, counts)
             for h, s in zip(halves, (slice(0, 2), slice(2, 4)))]
    torch.testing.assert_close(parts[0].total + parts[1].total, whole.total)
    torch.testing.assert_close(parts[0].existence + parts[1].existence, whole.existence)


def test_loss_without_present_entities_is_zero_not_nan() -> None:
    model = small_model()
    out = model(torch.randn(2, 3, 64, 64), need_attentions=False)
    labels = torch.full((2, 5), UNMENTIONED)
    loss = CRITERION(out, labels, torch.zeros(2, 5, 8, dtype=torch.long), model.position_embeddings)
    assert loss.total.item() == 0.0 and loss.num_existence == 0
    loss.total.backward()  # still differentiable (needed under DDP)


def test_gradients_reach_the_backbone_and_not_the_text_embeddings() -> None:
    model = small_model().train()
    out = model(torch.randn(2, 3, 64, 64), need_attentions=False)
    loss = CRITERION(out, torch.tensor([[1, 0, 1, 0, 1]] * 2), torch.randint(0, 9, (2, 5, 8)), model.position_embeddings)
    loss.total.backward()
    assert model.image_encoder.backbone.conv1.weight.grad.abs().sum() > 0
    assert model.query_projection.weight.grad.abs().sum() > 0
    assert not model.entity_embeddings.requires_grad
    assert "entity_embeddings" not in model.state_dict()


def test_wrong_inputs_are_explained() -> None:
    model = small_model()
    with pytest.raises(ValueError, match=r"\[B,3,H,W\]"):
        model(torch.randn(2, 1, 64, 64))
    with pytest.raises(ValueError, match="text_dim"):
        model.set_queries(torch.randn(3, 7))
    out = model(torch.randn(1, 3, 64, 64), need_attentions=False)
    with pytest.raises(ValueError, match="exist_labels"):
        CRITERION(out, torch.zeros(1, 4), None, model.position_embeddings)


def test_scaled_attention_initialisation_gives_each_entity_its_own_pooling() -> None:
    d = SMALL["d_model"]
    release = small_model(q=8)
    scaled = small_model(q=8, init="scaled-attention")
    for layer in scaled.fusion.layers:
        for attn in (layer.self_attn, layer.cross_attn):
            assert abs(attn.in_proj_weight[: 2 * d].std().item() - 0.1) < 0.01  # query, key
            assert abs(attn.in_proj_weight[2 * d:].std().item() - 0.02) < 0.004  # value: the release's
    assert abs(scaled.existence_head.weight.std().item() - 0.02) < 0.005
    assert scaled.image_encoder.patch_fc1.weight.std().item() > 1.5 * release.image_encoder.patch_fc1.weight.std().item()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        spread = {name: m.eval()(images).attentions[-1].std(dim=1).mean().item()  # across entities
                  for name, m in (("release", release), ("scaled", scaled))}
    assert spread["scaled"] > 10 * spread["release"]
    with pytest.raises(ValueError, match="init must be one of"):
        MedKLIPConfig(init="xavier")


def test_span_query_init_reads_an_unseen_description_only_through_the_training_queries() -> None:
    """``query_init: span``: the training queries' projections start as with the release's init;
    a text direction orthogonal to all of them maps to nothing (only the bias), at the start and
    after training steps (the gradient lies in the queries' span; AdamW's scaling leaks little),
    where the release's init maps it through its random weights."""
    release, span = small_model(q=5), small_model(q=5, query_init="span")
    queries = span.entity_embeddings
    torch.testing.assert_close(span.query_projection(queries), release.query_projection(queries), atol=1e-6, rtol=0)
    assert torch.linalg.matrix_rank(span.query_projection.weight) == 5
    inside = torch.randn(5) @ queries
    outside = torch.randn(SMALL["text_dim"])
    outside -= torch.linalg.lstsq(queries.T, outside).solution @ queries  # orthogonal to every query
    assert outside.norm() > 1
    images, targets = torch.randn(4, 3, 64, 64), torch.randint(0, 2, (4, 5))
    for model in (release, span):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for _ in range(5):
            logits = model.train()(images, need_attentions=False).logits
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
    proj = span.query_projection
    with torch.no_grad():
        leak = (proj(outside) - proj.bias).norm() / (proj(inside) - proj.bias).norm()
        rel = release.query_projection
        random_reading = (rel(outside) - rel.bias).norm() / (rel(inside) - rel.bias).norm()
        torch.testing.assert_close(proj(inside + outside), proj(inside), atol=0.05 * proj(inside).norm().item(), rtol=0)
    # measured 0.063 against 0.58: the release's init reads it through its random N(0, 0.02) weights
    assert leak < 0.2 * random_reading
    with pytest.raises(ValueError, match="query_init must be one of"):
        MedKLIPConfig(query_init="zeros")


def test_null_key_gives_queries_somewhere_else_to_attend(tmp_path) -> None:
    """``null_key``: one learned key / value beside the patches; heatmaps are the patches' share
    (rows sum to less than 1), the fused kernel gives the same logits, and the option is saved."""
    model = small_model(null_key=True).eval()
    attn = model.fusion.layers[0].cross_attn
    assert attn.bias_k is not None and attn.bias_k.shape == (1, 1, SMALL["d_model"])
    assert small_model().fusion.layers[0].cross_attn.bias_k is None  # the release: no null key
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(images)
        fused = model(images, need_attentions=False)
        attn.bias_v.add_(1.0)  # the null value takes part in every query's output ...
        moved = model(images)
    h, w = model.config.patch_grid
    assert out.heatmaps.shape == (2, 5, h, w)
    total = out.heatmaps.sum((-1, -2))
    assert bool((total < 1).all()) and bool((total > 0).all())
    torch.testing.assert_close(fused.logits, out.logits)
    assert (moved.logits - out.logits).abs().max().item() > 1e-4
    torch.testing.assert_close(moved.heatmaps, out.heatmaps)  # ... and not in where the patches' share goes
    model.save_pretrained(tmp_path / "m")
    loaded = MedKLIP.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.null_key
    with torch.no_grad():
        torch.testing.assert_close(loaded(images).logits, moved.logits)


def _field_of_patch(trunk: torch.nn.Module, row: int, col: int) -> tuple[int, int, int, int]:
    """Rows and columns of the input pixels that a trunk's patch feature (row, col) depends on."""
    x = torch.randn(1, 3, 96, 96, requires_grad=True)
    trunk.eval()(x)[0, :, row, col].sum().backward()
    assert x.grad is not None
    g = x.grad.abs().sum((0, 1))
    rows, cols = torch.nonzero(g.sum(1)).flatten(), torch.nonzero(g.sum(0)).flatten()
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


def test_local_trunk_patches_see_their_own_neighbourhood_only() -> None:
    """The local trunk's patch (2, 3) at 96 px depends on a 35-pixel square around its own 16-pixel
    patch (rows 32-47, columns 48-63); a ResNet-18 patch depends on the whole image."""
    torch.manual_seed(0)
    local = MedKLIP(MedKLIPConfig(**{**SMALL, "backbone": "local", "image_size": 96}),
                    torch.randn(3, 24), torch.randn(4, 24)).image_encoder.backbone
    r0, r1, c0, c1 = _field_of_patch(local, 2, 3)
    assert r1 - r0 + 1 <= 35 and c1 - c0 + 1 <= 35
    assert r0 <= 32 and r1 >= 47 and c0 <= 48 and c1 >= 63
    resnet = small_model(image_size=96).image_encoder.backbone
    assert _field_of_patch(resnet, 2, 3) == (0, 95, 0, 95)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="has none"):
        MedKLIPConfig(backbone="local", backbone_weights="resnet18.pth")
    with pytest.raises(ValueError, match="backbone"):
        MedKLIPConfig(backbone="vgg16")
    with pytest.raises(ValueError, match="divisible"):
        MedKLIPConfig(d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="unknown model config keys"):
        MedKLIPConfig.from_dict({"layers": 3})


def test_from_knowledge_base_with_the_offline_encoder(minilm) -> None:
    from medklip.knowledge import KnowledgeBase

    kb = KnowledgeBase.default()
    model = MedKLIP.from_knowledge_base(MedKLIPConfig(**{**SMALL, "text_dim": 768}), kb, minilm)
    assert model.config.text_dim == 384
    assert len(model.entity_names) == 75 and len(model.position_names) == 51
    assert model.entity_texts[20] == kb.description("pneumonia")
    assert model.position_texts[1] == "It is located at left_hilar"
    assert model.text_encoder_info["dim"] == 384
    torch.testing.assert_close(model.entity_embeddings[8], minilm.encode([kb.description("effusion")])[0])


def test_the_fixture_model_responds_to_its_input(minilm) -> None:
    """The tiny fixture model behind the equality tests separates images: any two of four random
    images differ by >= 0.1 in some probability and some heatmap cell, an all-zero image by more;
    so a reversed batch, a zeroed image or a wrong resize cannot pass a 1e-4 tolerance unseen."""
    from tests.conftest import make_tiny_model

    model = make_tiny_model(minilm).eval()
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(4, 3, 64, 64, generator=g) - 0.45) / 0.25
    with torch.no_grad():
        out, zero = model(x), model(torch.zeros_like(x))
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    assert min((out.probs[i] - out.probs[j]).abs().max().item() for i, j in pairs) >= 0.1
    assert min((out.heatmaps[i] - out.heatmaps[j]).abs().max().item() for i, j in pairs) >= 0.1
    assert (zero.probs[0] - out.probs[0]).abs().max() >= 0.1


def test_dropout_per_sample_does_not_depend_on_the_batch() -> None:
    """With a seed per image, an image's dropout masks (residual, feed-forward, attention, feature)
    are its own: the same rows whatever the batch order or size, other rows for another seed, the
    caller's random stream untouched; in eval mode the seeds change nothing."""
    torch.manual_seed(0)
    model = small_model(dropout=0.5).train()
    patches, grid = torch.randn(3, 4, model.config.d_model), (2, 2)
    seeds = [11, 22, 33]
    state = torch.get_rng_state()
    out = model.decode(patches, grid, dropout_seeds=seeds, need_attentions=True)
    assert torch.equal(torch.get_rng_state(), state)
    swapped = model.decode(patches[[2, 0]], grid, dropout_seeds=[33, 11], need_attentions=True)
    alone = model.decode(patches[1:2], grid, dropout_seeds=[22], need_attentions=True)
    assert torch.equal(swapped.logits, out.logits[[2, 0]]) and torch.equal(alone.logits, out.logits[1:2])
    assert torch.equal(swapped.heatmaps, out.heatmaps[[2, 0]])
    other = model.decode(patches, grid, dropout_seeds=[11, 99, 33], need_attentions=True)
    assert torch.equal(other.logits[[0, 2]], out.logits[[0, 2]])
    assert (other.logits[1] - out.logits[1]).abs().max() > 1e-3  # dropout is on: another seed, other masks
    model.eval()
    assert torch.equal(model.decode(patches, grid, dropout_seeds=seeds).logits, model.decode(patches, grid).logits)
    with pytest.raises(ValueError, match="2 dropout seeds for 3 images"):
        model.train().decode(patches, grid, dropout_seeds=[1, 2])

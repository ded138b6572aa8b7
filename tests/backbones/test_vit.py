import pytest
import torch

from ptft.backbones import ViT
from ptft.backbones.vit import resize_position_embedding, sincos_position_embedding


def tiny_vit(**kwargs):
    return ViT(**{"image_size": 32, "patch_size": 8, "depth": 2, "width": 32, "heads": 2, **kwargs})


def test_shapes_of_pooled_features_feature_map_and_token_subsets():
    vit = tiny_vit()
    images = torch.randn(3, 3, 32, 32)
    assert vit(images).shape == (3, 32)
    assert vit.forward_features(images).shape == (3, 32, 4, 4) and vit.feature_stride == 8
    keep = torch.tensor([[0, 5, 9]] * 3)
    assert vit.tokens(images, keep).shape == (3, 1 + 3, 32)


def test_encoding_a_subset_equals_encoding_those_patches_alone():
    """Without a class token and with one block, attention only mixes the kept tokens."""
    vit = tiny_vit(class_token=False, pool="mean").eval()
    images = torch.randn(2, 3, 32, 32)
    keep = torch.tensor([[3, 1, 7], [0, 15, 2]])
    tokens, _ = vit.embed(images)
    expected = vit.encode(torch.stack([tokens[i, keep[i]] for i in range(2)]))
    torch.testing.assert_close(vit.tokens(images, keep), expected)


def test_mean_pool_and_learned_positions():
    vit = tiny_vit(pool="mean", position_embedding="learned")
    assert isinstance(vit.position_embedding, torch.nn.Parameter)
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(vit(images), vit.forward_features(images).mean((2, 3)))  # mean of the patch tokens
    cls = tiny_vit()
    torch.testing.assert_close(cls(images), cls.tokens(images)[:, 0])  # the class token


def test_sincos_embedding_is_distinct_per_position_and_bounded():
    embedding = sincos_position_embedding(4, 4, 32)
    assert embedding.shape == (16, 32) and embedding.abs().max() <= 1
    assert torch.cdist(embedding, embedding).fill_diagonal_(1).min() > 0.1  # no two positions alike


def test_position_interpolation_keeps_the_grid_and_other_sizes_run():
    learned = torch.randn(16, 8)
    assert torch.equal(resize_position_embedding(learned, (4, 4), (4, 4)), learned)
    resized = resize_position_embedding(learned, (4, 4), (8, 8))
    # a smooth upsampling: each original value is recovered by averaging its 2x2 block of new positions
    blocks = resized.reshape(4, 2, 4, 2, 8).mean((1, 3)).reshape(16, 8)
    assert (blocks - learned).abs().mean() < 0.25 * learned.abs().mean()
    vit = tiny_vit(position_embedding="learned")
    assert vit.forward_features(torch.randn(1, 3, 48, 48)).shape == (1, 32, 6, 6)  # fine-tuning at another size
    assert tiny_vit().forward_features(torch.randn(1, 3, 48, 48)).shape == (1, 32, 6, 6)


@pytest.mark.parametrize("kwargs, message", [
    ({"image_size": 36}, "image_size 36 is not divisible by patch_size 8"),
    ({"width": 36, "heads": 5}, "width 36 must be divisible by heads 5"),
    ({"width": 30}, "sin-cos position embedding needs a width divisible by 4, got 30"),
    ({"class_token": False}, "pool must be 'mean', or 'cls' with class_token: true"),
    ({"drop_path": 1.0}, "drop_path must be in"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_vit(**kwargs)


def test_inputs_the_patches_do_not_tile_are_named():
    with pytest.raises(ValueError, match=r"image size \(30, 30\) is not divisible by the ViT's patch_size 8"):
        tiny_vit()(torch.randn(1, 3, 30, 30))


def test_drop_path_increases_with_depth_and_is_off_in_eval():
    vit = ViT(image_size=32, patch_size=8, depth=4, width=32, heads=2, drop_path=0.3)
    assert [round(b.drop_path.p, 3) for b in vit.blocks] == [0.0, 0.1, 0.2, 0.3]
    images = torch.randn(2, 3, 32, 32)
    vit.eval()
    assert torch.equal(vit(images), vit(images))


def test_layer_groups_cover_every_parameter_once_in_depth_order():
    vit = tiny_vit()
    groups = vit.layer_groups()
    assert len(groups) == 2 + 2  # embeddings, 2 blocks, final norm
    names = [n for group in groups for n in group]
    assert sorted(names) == sorted(n for n, _ in vit.named_parameters()) and len(names) == len(set(names))
    assert "patch_embed.weight" in groups[0] and all(n.startswith("blocks.1.") for n in groups[2])


def test_fine_tuning_at_another_image_size_interpolates_the_learned_positions(tmp_path):
    from ptft.handoff import load_backbone
    from ptft.tasks import Classification, MaskedAutoencoderPretraining

    pretrained = tiny_vit(position_embedding="learned")
    task = MaskedAutoencoderPretraining(pretrained, decoder_width=32, decoder_depth=1, decoder_heads=2)
    path = tmp_path / "mae.ckpt"
    torch.save({"state_dict": task.state_dict(), "ptft": {"backbone": pretrained.spec()}}, path)
    larger = load_backbone(path, tiny_vit(position_embedding="learned", image_size=48))
    assert larger.position_embedding.shape == (36, 32)
    torch.testing.assert_close(larger.position_embedding.data, resize_position_embedding(pretrained.position_embedding.data, (4, 4), (6, 6)))
    torch.testing.assert_close(larger.patch_embed.weight, pretrained.patch_embed.weight)
    model = Classification(num_classes=3, pretrained=str(path), backbone=tiny_vit(position_embedding="learned", image_size=48))
    assert model(torch.randn(2, 3, 48, 48)).shape == (2, 3)
    with pytest.raises(ValueError, match="patch_size 8 there, 4 here.*only covers another image size"):
        Classification(num_classes=3, pretrained=str(path), backbone=tiny_vit(patch_size=4))


def test_class_token_position_is_a_separate_parameter_that_mae_layer_groups_and_resizing_keep():
    assert "class_position" not in tiny_vit().state_dict()  # the default layout's keys are unchanged
    vit = tiny_vit(class_token_position=True, position_embedding="learned", norm_eps=1e-12, activation="gelu_tanh").eval()
    assert vit.class_position.shape == (1, 32) and vit.norm.eps == 1e-12 and vit.blocks[0].norm1.eps == 1e-12
    images = torch.randn(2, 3, 32, 32)
    first = vit.tokens(images)[:, :1]
    with torch.no_grad():
        vit.class_position.add_(1.0)
    assert not torch.allclose(vit.tokens(images)[:, :1], first)  # the class token gets its position
    groups = vit.layer_groups()
    assert "class_position" in groups[0] and sorted(n for g in groups for n in g) == sorted(n for n, _ in vit.named_parameters())
    assert vit.tokens(images, torch.tensor([[0, 5, 9]] * 2)).shape == (2, 1 + 3, 32)
    larger = vit.with_fine_tuning_options({"image_size": 48})
    torch.testing.assert_close(larger.class_position, vit.class_position)
    assert larger(torch.randn(2, 3, 48, 48)).shape == (2, 32)
    with pytest.raises(ValueError, match="class_token_position: true needs class_token: true"):
        tiny_vit(class_token=False, pool="mean", class_token_position=True)

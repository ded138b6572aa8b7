"""SimCLR, BYOL and DINO: their pure losses, heads, the shared EMA, and a training step of each on
hand-built view lists (the multi-view DataModule is tested with the data)."""

import math

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, Dataset

from ptft.backbones import ResNet, ViT
from ptft.data.spec import DataSpec
from ptft.ema import EMACopy, cosine_momentum, ema_update_, warmup_momentum
from ptft.errors import ConfigError
from ptft.pretext.byol_loss import byol_loss
from ptft.pretext.dino_loss import dino_loss, teacher_probabilities, update_center
from ptft.pretext.nt_xent import nt_xent
from ptft.pretext.projection_heads import DINOHead
from ptft.tasks import BYOLPretraining, DINOPretraining, GANPretraining, SimCLRPretraining


# --- NT-Xent -----------------------------------------------------------------------------------

def test_nt_xent_matches_the_hand_computed_loss():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[3.0, 4.0], [-1.0, 0.0]])
    t = 0.5
    u = F.normalize(torch.cat([z1, z2]), dim=1)  # samples 0, 1 (view 1), 2, 3 (view 2); positives 0-2, 1-3
    losses = []
    for anchor, positive in [(0, 2), (1, 3), (2, 0), (3, 1)]:
        others = [j for j in range(4) if j != anchor]
        denominator = sum(math.exp(float(u[anchor] @ u[j]) / t) for j in others)
        losses.append(-math.log(math.exp(float(u[anchor] @ u[positive]) / t) / denominator))
    assert nt_xent(z1, z2, t).item() == pytest.approx(sum(losses) / 4, rel=1e-6)


def test_nt_xent_does_not_depend_on_the_batch_order():
    z1, z2 = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)), torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    order = torch.randperm(6, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(nt_xent(z1, z2, 0.2), nt_xent(z1[order], z2[order], 0.2))
    assert not torch.allclose(nt_xent(z1, z2, 0.2), nt_xent(z1, z2[order], 0.2))  # pairs matter


def _gathered_nt_xent(rank, world, init_file, z1, z2, out):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    n = len(z1) // world
    local1 = z1[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    local2 = z2[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    loss = nt_xent(local1, local2, 0.3, gather=True)
    loss.backward()
    torch.save({"loss": loss.detach(), "grad1": local1.grad, "grad2": local2.grad}, f"{out}.{rank}")
    torch.distributed.destroy_process_group()


def test_nt_xent_with_gathered_negatives_is_the_loss_of_the_concatenated_batch(tmp_path):
    world = 2
    z1, z2 = torch.randn(8, 6, generator=torch.Generator().manual_seed(0)), torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    torch.multiprocessing.spawn(_gathered_nt_xent, args=(world, tmp_path / "init", z1, z2, tmp_path / "out"), nprocs=world)
    full1, full2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    expected = nt_xent(full1, full2, 0.3)
    expected.backward()
    results = [torch.load(tmp_path / f"out.{rank}") for rank in range(world)]
    # DDP averages the ranks' gradients: the mean of the ranks' losses and gradients is the whole batch's
    torch.testing.assert_close(sum(r["loss"] for r in results) / world, expected.detach())
    torch.testing.assert_close(torch.cat([r["grad1"] for r in results]) / world, full1.grad)
    torch.testing.assert_close(torch.cat([r["grad2"] for r in results]) / world, full2.grad)
    assert not torch.allclose(results[0]["loss"], nt_xent(z1[:4], z2[:4], 0.3))  # the other rank's negatives count


# --- BYOL and DINO losses ----------------------------------------------------------------------

def test_byol_loss_is_two_minus_two_cosine_and_detaches_the_target():
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]], requires_grad=True)
    z = torch.tensor([[0.0, 5.0], [2.0, 2.0]], requires_grad=True)
    loss = byol_loss(p, z)
    assert loss.item() == pytest.approx(((2 - 0) + (2 - 2)) / 2)
    loss.backward()
    assert p.grad is not None and z.grad is None


def test_dino_centering_and_the_center_update():
    logits = torch.tensor([[1.0, 2.0, 3.0], [3.0, 0.0, 0.0]])
    center = torch.tensor([[0.5, -1.0, 2.0]])
    torch.testing.assert_close(teacher_probabilities(logits, center, 0.5), torch.softmax((logits - center) / 0.5, dim=-1))
    new = update_center(center, logits, momentum=0.9)
    torch.testing.assert_close(new, 0.9 * center + 0.1 * torch.tensor([[2.0, 1.0, 1.5]]))
    assert new.shape == (1, 3)


def test_dino_loss_compares_every_student_view_with_every_other_teacher_view():
    g = torch.Generator().manual_seed(0)
    teacher = [torch.randn(4, 5, generator=g) for _ in range(2)]
    student = [torch.randn(4, 5, generator=g) for _ in range(3)]  # 2 global + 1 local
    center = torch.randn(1, 5, generator=g)
    q = [torch.softmax((t - center) / 0.04, -1) for t in teacher]
    log_p = [torch.log_softmax(s / 0.1, -1) for s in student]
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]  # (teacher view, student view), same-view pairs skipped
    expected = sum((-q[t] * log_p[s]).sum(-1).mean() for t, s in pairs) / len(pairs)
    torch.testing.assert_close(dino_loss(student, teacher, center, 0.1, 0.04), expected)


# --- EMA ---------------------------------------------------------------------------------------

def test_the_ema_update_is_exact_with_buffers_copied():
    online, target = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        for i, (o, t) in enumerate(zip(online.parameters(), target.parameters())):
            o.copy_(torch.randn(3)), t.copy_(torch.randn(3))
    online(torch.randn(8, 3))  # moves the running statistics and num_batches_tracked
    before = [p.clone() for p in target.parameters()]
    ema_update_(target, online, 0.9)
    for t, b, o in zip(target.parameters(), before, online.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o)
    for t, o in zip(target.buffers(), online.buffers()):
        assert torch.equal(t, o)


def test_the_cosine_momentum_rises_from_base_to_one():
    assert cosine_momentum(0, 100, 0.99) == pytest.approx(0.99)
    assert cosine_momentum(50, 100, 0.99) == pytest.approx(0.995)
    assert cosine_momentum(100, 100, 0.99) == cosine_momentum(200, 100, 0.99) == 1.0


def test_the_gan_ema_keeps_averaged_model_keys_and_values():
    generator = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))

    def old_average(averaged, current, num_averaged):  # the GAN's former AveragedModel avg_fn
        if not averaged.is_floating_point():
            return current
        return torch.lerp(current, averaged, torch.clamp((1 + num_averaged) / (10 + num_averaged), max=0.9).to(averaged.dtype))

    old = AveragedModel(generator, avg_fn=old_average, use_buffers=True)
    new = EMACopy(generator, warmup_momentum(0.9), average_buffers=True)
    assert list(new.state_dict()) == list(old.state_dict())
    for _ in range(4):
        with torch.no_grad():
            for p in generator.parameters():
                p.add_(torch.randn_like(p))
        generator(torch.randn(6, 4))
        old.update_parameters(generator)
        new.update_parameters(generator)
    for (name, a), b in zip(old.state_dict().items(), new.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_gan_checkpoint_keys_are_unchanged():
    from ptft.backbones import DCGANEncoder

    model = GANPretraining(DCGANEncoder(base_width=8, num_layers=2), image_size=16, latent_dim=16, generator_width=8, num_grid_images=4)
    keys = [k for k in model.state_dict() if k.startswith("generator_ema.")]
    expected = ["generator_ema." + k for k in AveragedModel(model.generator, use_buffers=True).state_dict()]
    assert keys == expected and "generator_ema.n_averaged" in keys
    assert any(k.startswith("generator_ema.module.") for k in keys)


# --- config checks -----------------------------------------------------------------------------

def tiny_resnet():
    return ResNet("resnet18", small_images=True)


def tiny_vit():
    return ViT(image_size=16, patch_size=4, depth=1, width=32, heads=2)


def simclr(backbone=None, **kwargs):
    return SimCLRPretraining(backbone or tiny_vit(), projection_dim=8, projection_hidden_dim=16, **kwargs)


def byol(backbone=None, **kwargs):
    return BYOLPretraining(backbone or tiny_vit(), projection_dim=8, projection_hidden_dim=16, **kwargs)


def dino(backbone=None, **kwargs):
    kwargs = {"out_dim": 32, "hidden_dim": 16, "bottleneck_dim": 8, **kwargs}
    return DINOPretraining(backbone or tiny_vit(), **kwargs)


def spec(views):
    data = DataSpec("image", num_classes=3, image_size=16)
    data.views = views  # the multi-view DataModule's field
    return data


@pytest.mark.parametrize("out_dim", [0, -3])
def test_dino_refuses_a_non_positive_out_dim(out_dim):
    with pytest.raises(ConfigError, match="model.out_dim"):
        dino(out_dim=out_dim)
    with pytest.raises(ConfigError, match="model.out_dim"):
        DINOHead(8, out_dim)


@pytest.mark.parametrize("make", [simclr, byol, dino])
def test_single_view_data_is_refused(make):
    with pytest.raises(ConfigError, match="set data.views"):
        make().check_data(spec(None))


@pytest.mark.parametrize("make, views, message", [
    (simclr, (3, 0), "exactly 2 global crops"),
    (byol, (1, 0), "exactly 2 global crops"),
    (byol, (2, 4), "does not use local crops"),
    (dino, (1, 6), "at least 2 global crops"),
])
def test_view_counts_are_checked(make, views, message):
    with pytest.raises(ConfigError, match=message):
        make().check_data(spec(views))


def test_accepted_view_counts():
    simclr().check_data(spec((2, 0)))
    byol().check_data(spec((2, 0)))
    dino().check_data(spec((2, 4)))
    dino().check_data(spec((4, 0)))


# --- training steps ----------------------------------------------------------------------------

class Views(Dataset):
    """Hand-built multi-view samples: ``([global, global, local...], label)``."""

    def __init__(self, n_local=0, size=16, local_size=8):
        self.n_local, self.size, self.local_size = n_local, size, local_size

    def __len__(self):
        return 16

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        views = [torch.rand(3, self.size, self.size, generator=g) * 2 - 1 for _ in range(2)]
        views += [torch.rand(3, self.local_size, self.local_size, generator=g) * 2 - 1 for _ in range(self.n_local)]
        return views, i % 3


class EMARecorder(pl.Callback):
    """Checks at every optimizer step: the target moved exactly to m * target + (1 - m) * online."""

    def __init__(self, target, online):
        self.target, self.online, self.checked = target, online, 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.step = trainer.global_step
        self.before = [p.detach().clone() for p in self.target(pl_module).parameters()]
        assert all(p.grad is None and not p.requires_grad for p in self.target(pl_module).parameters())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        m = cosine_momentum(self.step, trainer.estimated_stepping_batches, pl_module.base_momentum)
        for t, b, o in zip(self.target(pl_module).parameters(), self.before, self.online(pl_module).parameters()):
            torch.testing.assert_close(t, m * b + (1 - m) * o)
        for t, o in zip(self.target(pl_module).buffers(), self.online(pl_module).buffers()):
            assert torch.equal(t, o)
        self.checked += 1


def fit(model, n_local=0, max_steps=2, callbacks=(), local_size=8):
    pl.seed_everything(0)
    trainer = pl.Trainer(max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", callbacks=list(callbacks))
    trainer.fit(model, train_dataloaders=DataLoader(Views(n_local, local_size=local_size), batch_size=4))
    return trainer


@pytest.mark.parametrize("backbone", [tiny_resnet, tiny_vit])
def test_simclr_trains_with_a_finite_loss(backbone):
    trainer = fit(simclr(backbone(), temperature=0.5))
    assert math.isfinite(trainer.callback_metrics["train/loss"].item())
    assert "train/z_std" in trainer.callback_metrics


@pytest.mark.parametrize("backbone", [tiny_resnet, tiny_vit])
def test_byol_trains_and_its_target_is_an_exact_ema_without_gradients(backbone):
    model = byol(backbone(), base_momentum=0.9)
    recorder = EMARecorder(lambda m: torch.nn.ModuleList([m.target_backbone, m.target_projector]),
                           lambda m: torch.nn.ModuleList([m.backbone, m.projector]))
    trainer = fit(model, max_steps=3, callbacks=[recorder])
    assert recorder.checked == 3
    assert math.isfinite(trainer.callback_metrics["train/loss"].item())
    assert 0.9 <= trainer.callback_metrics["train/momentum"].item() < 1
    assert model.handoff_modules()["backbone"] is model.backbone
    assert any(not torch.equal(a, b) for a, b in zip(model.backbone.parameters(), model.target_backbone.parameters()))


@pytest.mark.parametrize("backbone, n_local", [(tiny_resnet, 2), (tiny_vit, 2), (tiny_vit, 0)])
def test_dino_trains_on_multi_crop_views_with_an_exact_ema_teacher(backbone, n_local):
    model = dino(backbone(), base_momentum=0.9, warmup_teacher_temp=0.02, teacher_temp=0.06, warmup_teacher_temp_epochs=2)
    recorder = EMARecorder(lambda m: torch.nn.ModuleList([m.backbone, m.teacher_head]),
                           lambda m: torch.nn.ModuleList([m.student_backbone, m.student_head]))
    last_layer = model.student_head.last_layer.parametrizations.weight.original1.detach().clone()
    trainer = fit(model, n_local=n_local, max_steps=3, callbacks=[recorder])
    assert recorder.checked == 3
    metrics = trainer.callback_metrics
    assert math.isfinite(metrics["train/loss"].item())
    assert metrics["train/teacher_temp"].item() == pytest.approx(0.02)  # epoch 0 of the warm-up
    assert 0 <= metrics["train/teacher_entropy"].item() <= math.log(32) + 1e-4
    assert not torch.equal(model.center, torch.zeros_like(model.center))
    torch.testing.assert_close(model.student_head.last_layer.parametrizations.weight.original1, last_layer)  # frozen in epoch 0
    assert model.handoff_modules()["backbone"] is model.backbone  # the teacher
    assert not any(p.requires_grad for p in model.backbone.parameters())


def test_dino_teacher_temperature_warms_up_linearly():
    model = dino(warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=3)
    temps = [model.teacher_temp_at(epoch) for epoch in range(5)]
    assert temps == pytest.approx([0.04, 0.05, 0.06, 0.07, 0.07])


def test_a_single_view_batch_is_refused_at_the_step():
    with pytest.raises(ConfigError, match="single images"):
        simclr().views_of((torch.zeros(2, 3, 16, 16), torch.zeros(2)))


def test_a_dino_checkpoint_hands_off_the_teacher(tmp_path):
    from ptft.handoff import load_backbone

    model = dino(base_momentum=0.5)
    trainer = fit(model, n_local=2, max_steps=2)
    trainer.save_checkpoint(tmp_path / "dino.ckpt")
    backbone = load_backbone(str(tmp_path / "dino.ckpt"))
    teacher, student = model.backbone.state_dict(), model.student_backbone.state_dict()
    assert all(torch.equal(v, teacher[k]) for k, v in backbone.state_dict().items())
    assert any(not torch.equal(v, student[k]) for k, v in backbone.state_dict().items())

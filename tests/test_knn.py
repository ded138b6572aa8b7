import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DistributedSampler

from conftest import small_encoder
from ptft.callbacks import KNNMonitor
from ptft.callbacks.knn import unpadded
from ptft.data import ImageFolderDataModule
from ptft.knn import knn_predict
from ptft.tasks import AutoencoderPretraining


def test_knn_is_perfect_on_separable_clusters():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 16, generator=generator) * 10
    labels = torch.arange(5).repeat_interleave(40)
    train = centres[labels] + torch.randn(200, 16, generator=generator)
    query_labels = torch.arange(5).repeat(10)
    queries = centres[query_labels] + torch.randn(50, 16, generator=generator)
    assert torch.equal(knn_predict(train, labels, queries, num_classes=5, k=20, chunk_size=7), query_labels)


def test_votes_are_weighted_by_similarity():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[1.0, 0.05]])  # one very close neighbour of class 0 outweighs two far ones of class 1
    assert knn_predict(train, labels, query, num_classes=2, k=3, temperature=0.07).item() == 0
    assert knn_predict(train, labels, query, num_classes=2, k=3, temperature=100.0).item() == 1  # near-uniform weights: majority


def test_monitor_logs_knn_accuracy_during_pretraining(image_tree, tmp_path):
    pl.seed_everything(0)
    dm = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=8, num_workers=0)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         callbacks=[KNNMonitor(k=5)], default_root_dir=tmp_path)
    model = AutoencoderPretraining(small_encoder())
    trainer.fit(model, datamodule=dm)
    assert trainer.callback_metrics["val/knn_acc"].item() == pytest.approx(1.0)  # the classes differ in colour
    assert model.backbone.training  # the monitor puts the backbone back in train mode


def test_bad_monitor_settings_are_named():
    with pytest.raises(ValueError, match="k >= 1"):
        KNNMonitor(k=0)


@pytest.mark.parametrize("world, total", [(2, 7), (3, 10), (4, 4), (3, 2)])
def test_the_distributed_samplers_padding_is_dropped_from_gathered_features(world, total):
    # what each rank of an unshuffled DistributedSampler encodes, gathered as all_gather does: (world, per rank)
    dealt = [list(DistributedSampler(range(total), num_replicas=world, rank=r, shuffle=False)) for r in range(world)]
    gathered = torch.tensor(dealt)
    assert gathered.numel() > total or total % world == 0  # the padding exists unless the ranks divide the data
    assert unpadded(gathered, total).tolist() == list(range(total))  # every sample once, in dataset order
    features = torch.stack([gathered.float(), -gathered.float()], dim=-1)  # trailing dimensions go along
    assert unpadded(features, total)[:, 1].tolist() == [-float(i) for i in range(total)]

"""Weighted k-nearest-neighbour classification on L2-normalised features (Wu et al. 2018, as
used by DINO and lightly's benchmarks): the standard monitor of self-supervised backbones."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Class of each query: the k most cosine-similar training samples vote with weight
    exp(similarity / temperature)."""
    train = F.normalize(train_features.float(), dim=1)
    k = min(k, len(train))
    predictions = []
    for queries in F.normalize(query_features.float(), dim=1).split(chunk_size):
        similarity, index = (queries @ train.T).topk(k, dim=1)
        votes = torch.zeros(len(queries), num_classes, device=queries.device)
        votes.scatter_add_(1, train_labels[index], (similarity / temperature).exp())
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)

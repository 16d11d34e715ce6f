"""Distances and statistics on objects, shared by environments and evaluation; imports nothing else of the package."""

# Distances between integer rows (sequences or vectors, padded with -1): Hamming and edit.

from __future__ import annotations

import torch


def hamming_matrix(a: torch.Tensor, b: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """(Na, Nb) number of positions where rows of a and b differ."""
    parts = [(a[i:i + chunk, None, :] != b[None, :, :]).sum(dim=-1) for i in range(0, len(a), chunk)]
    return torch.cat(parts) if parts else torch.zeros(0, len(b), dtype=torch.long, device=a.device)


def edit_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) Levenshtein distance between row i of a and row i of b (tokens >= 0, -1 padding
    after the end). Vectorised over rows: one dynamic-programming table per pair."""
    n = a.shape[0]
    la, lb = (a >= 0).sum(dim=1), (b >= 0).sum(dim=1)
    wa, wb = a.shape[1], b.shape[1]
    # row[j] = distance between a[:i] and b[:j]; prefixes past a row's length are never read
    row = torch.arange(wb + 1, device=a.device).expand(n, -1).clone()
    answer = torch.where(la == 0, lb, torch.zeros_like(la))
    for i in range(1, wa + 1):
        new = torch.empty_like(row)
        new[:, 0] = i
        substitute = row[:, :-1] + (a[:, i - 1:i] != b).long()
        delete = row[:, 1:] + 1
        best = torch.minimum(substitute, delete)
        for j in range(1, wb + 1):
            new[:, j] = torch.minimum(best[:, j - 1], new[:, j - 1] + 1)
        row = new
        done = la == i
        answer = torch.where(done, row.gather(1, lb[:, None]).squeeze(1), answer)
    return answer


def edit_distance_matrix(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """(Na, Nb) Levenshtein distances."""
    ia, ib = torch.meshgrid(torch.arange(len(a), device=a.device), torch.arange(len(b), device=a.device),
                            indexing="ij")
    ia, ib = ia.flatten(), ib.flatten()
    out = torch.cat([edit_distance(a[ia[i:i + chunk]], b[ib[i:i + chunk]])
                     for i in range(0, len(ia), chunk)]) if len(ia) else torch.zeros(0, dtype=torch.long,
                                                                                     device=a.device)
    return out.view(len(a), len(b))

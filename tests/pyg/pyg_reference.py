"""Float64 brute-force references with torch_cluster's semantics (as pyengine documents them).

Written for the tests from the definitions (torch_cluster itself does not build for
current torch): neighbour lists per query, ordered by (distance, index).
"""

from __future__ import annotations

import math

import torch


def clouds(batch, n):
    return torch.zeros(n, dtype=torch.long) if batch is None else batch.long().cpu()


def pair_dist(x, y, cosine=False):
    x, y = x.double().cpu(), y.double().cpu()
    if x.dim() == 1:
        x, y = x[:, None], y[:, None]
    if cosine:
        nx, ny = x.norm(dim=1), y.norm(dim=1)
        dot = y @ x.T
        den = ny[:, None] * nx[None, :]
        return torch.where(den > 0, 1 - dot / torch.where(den > 0, den, torch.ones_like(den)), torch.ones_like(den))
    if x.shape[1] == 0:
        return torch.zeros(y.shape[0], x.shape[0], dtype=torch.float64)
    return torch.cdist(y, x, compute_mode="donot_use_mm_for_euclid_dist")  # exact, not the matmul form


def ref_knn(x, y, k, bx=None, by=None, cosine=False, exclude_self=False):
    """Per query: [(dist, j), ...] of its min(k, n) nearest points of its cloud."""
    bx, by = clouds(bx, x.shape[0]), clouds(by, y.shape[0])
    D = pair_dist(x, y, cosine)
    out = []
    for i in range(y.shape[0]):
        cand = [(float(D[i, j]), j) for j in range(x.shape[0]) if bx[j] == by[i] and not (exclude_self and j == i)]
        cand.sort()
        out.append(cand[:k])
    return out


def ref_radius(x, y, r, bx=None, by=None, max_num=None, exclude_self=False):
    """Per query: sorted point indices within r (<= r), the nearest max_num kept (ties: lower index)."""
    bx, by = clouds(bx, x.shape[0]), clouds(by, y.shape[0])
    D = pair_dist(x, y)
    out = []
    for i in range(y.shape[0]):
        cand = [(float(D[i, j]), j) for j in range(x.shape[0])
                if bx[j] == by[i] and float(D[i, j]) <= r and not (exclude_self and j == i)]
        cand.sort()
        if max_num is not None:
            cand = cand[:max_num]
        out.append(sorted(j for _, j in cand))
    return out


def ref_fps(pos, ptr, counts, start):
    """Farthest point sampling, one cloud at a time, float64, ties to the lowest index."""
    pos = pos.double().cpu()
    out = []
    for b in range(len(ptr) - 1):
        p0, p1 = int(ptr[b]), int(ptr[b + 1])
        c = int(counts[b])
        if c == 0:
            continue
        P = pos[p0:p1]
        cur = int(start[b])
        mind = torch.full((p1 - p0,), math.inf, dtype=torch.float64)
        out.append(p0 + cur)
        for _ in range(1, c):
            mind = torch.minimum(mind, ((P - P[cur]) ** 2).sum(1))
            cur = int(torch.argmax(mind))  # first maximum
            out.append(p0 + cur)
    return torch.tensor(out, dtype=torch.long)


def edges_by_row(edge_index, num_rows, row=0):
    """Row-major lists of the other end, from a (2, E) edge_index grouped by `row`."""
    lists = [[] for _ in range(num_rows)]
    for a, b in edge_index.T.tolist():
        (r, c) = (a, b) if row == 0 else (b, a)
        lists[r].append(c)
    return lists

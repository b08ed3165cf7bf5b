// Every pyengine op schema, in one place. Device kernels register themselves
// in <family>/<family>_{cpu.cpp,cuda.cu}; fake (meta) kernels and autograd are
// registered from Python (pyengine/ops/).
#include <torch/library.h>

TORCH_LIBRARY(pyengine, m) {
  // segment: CSR reductions and sparse-dense products. row_ptr is int64 (M+1).
  // arg: winning edge per (row, channel) for max/min when need_arg (for backward), else empty.
  m.def("segment_reduce(Tensor src, Tensor row_ptr, str reduce, bool need_arg=True) -> (Tensor out, Tensor arg)");
  m.def("segment_reduce_backward(Tensor grad_out, Tensor row_ptr, Tensor arg, str reduce, int num_edges) -> Tensor");
  m.def("segment_softmax(Tensor scores, Tensor row_ptr) -> Tensor");
  m.def("segment_softmax_backward(Tensor grad_out, Tensor out, Tensor row_ptr) -> Tensor");
  m.def("spmm(Tensor row_ptr, Tensor col, Tensor? values, Tensor x) -> Tensor");
  m.def("csr_sddmm(Tensor row_ptr, Tensor col, Tensor a, Tensor b) -> Tensor");
  m.def("csr_transpose(Tensor row_ptr, Tensor col, int num_cols) -> (Tensor row_ptr_t, Tensor col_t, Tensor perm)");

  // neighbors: k-d tree over points (N, d), d in {2, 3}. A tree is four tensors:
  //   perm (N,) int64      points in tree order
  //   nodes (K, 4) int64   per node: begin, end (range of perm), left, right child (-1 for leaves)
  //   bounds (K, 2, d)     tight bounding box per node (min row, max row), dtype of points
  //   roots (B,) int64     root node of each batch (points sorted by batch, batch_ptr (B+1,))
  // Queries are sorted by batch too (query_ptr (B+1,)); neighbors never cross batches.
  // Radius results are CSR over queries, each row sorted by point index.
  m.def("kdtree_build(Tensor points, Tensor batch_ptr, int leaf_size) -> (Tensor perm, Tensor nodes, Tensor bounds, Tensor roots)");
  m.def("kdtree_radius(Tensor points, Tensor perm, Tensor nodes, Tensor bounds, Tensor roots, Tensor queries, Tensor query_ptr, Tensor radius, int max_neighbors) -> (Tensor row_ptr, Tensor col)");
  m.def("kdtree_radius_multi(Tensor points, Tensor perm, Tensor nodes, Tensor bounds, Tensor roots, Tensor queries, Tensor query_ptr, float[] radii, int max_neighbors) -> Tensor[]");
  m.def("kdtree_knn(Tensor points, Tensor perm, Tensor nodes, Tensor bounds, Tensor roots, Tensor queries, Tensor query_ptr, int k) -> (Tensor dist, Tensor idx)");
}

// integral (GNO): fused kernel integral out_i = reduce_{e in row i} k(x_i, y_j[, f_j]) * f_j * w_j with the
// kernel MLP k evaluated per edge inside the kernel. params: every Linear's weight (row-major) then bias, flat;
// dims = [in, hidden..., out]. Backward recomputes the MLP; need = which of (y, x, f_y, weights) get gradients
// (the others come back empty); grad_params is always computed.
TORCH_LIBRARY_FRAGMENT(pyengine, m) {
  m.def("gno_integral(Tensor y, Tensor x, Tensor row_ptr, Tensor col, Tensor? f_y, Tensor? weights, Tensor? edge_weights, Tensor params, int[] dims, str activation, str transform, str reduction) -> Tensor");
  m.def("gno_integral_backward(Tensor grad_out, Tensor y, Tensor x, Tensor row_ptr, Tensor col, Tensor? f_y, Tensor? weights, Tensor? edge_weights, Tensor params, int[] dims, str activation, str transform, str reduction, bool[5] need) -> (Tensor grad_y, Tensor grad_x, Tensor grad_f_y, Tensor grad_weights, Tensor grad_edge_weights, Tensor grad_params)");
}

// integral / attention: fused CSR attention over per-source keys and values,
// q (M, H, Dk), k (N, H, Dk), v (N, H, Dv), optional additive score bias (E, H).
// lse (M, H) is the per-row log-sum-exp (float32, or float64 for float64 inputs).
// Backward takes the transposed CSR (csr_transpose) and delta = <grad_out, out> - grad_lse.
// integral / local: per-row basis-weighted sums a[i, b, :] = sum_e psi[e, b] * w[col_e] * f[col_e, :].
TORCH_LIBRARY_FRAGMENT(pyengine, m) {
  m.def("csr_attention(Tensor row_ptr, Tensor col, Tensor q, Tensor k, Tensor v, Tensor? bias, float scale) -> (Tensor out, Tensor lse)");
  m.def("csr_attention_backward(Tensor grad_out, Tensor row_ptr, Tensor col, Tensor row_ptr_t, Tensor col_t, Tensor perm, Tensor q, Tensor k, Tensor v, Tensor? bias, Tensor lse, Tensor delta, float scale) -> (Tensor grad_q, Tensor grad_k, Tensor grad_v, Tensor grad_bias)");
  m.def("local_basis_aggregate(Tensor row_ptr, Tensor col, Tensor psi, Tensor f, Tensor? weights) -> Tensor");
  m.def("local_basis_aggregate_backward(Tensor grad_out, Tensor row_ptr, Tensor col, Tensor row_ptr_t, Tensor col_t, Tensor perm, Tensor psi, Tensor f, Tensor? weights, bool need_psi, bool need_f, bool need_weights) -> (Tensor grad_psi, Tensor grad_f, Tensor grad_weights)");
}

// nufft: non-uniform FFT types 1 and 2 (pyengine/ops/nufft.py). Points (M, d) real,
// 2*pi-periodic, d in {1, 2, 3}; values / fine grids complex (B, ...), same precision.
// grid: fine-grid size per dimension; bins: bin size (nodes) per dimension; perm and
// bin_ptr (int64, (M,) and (prod(ceil(grid / bins)) + 1,)) come from nufft_sort.
// width, beta: the ES kernel exp(beta * (sqrt(1 - z^2) - 1)) over width nodes.
TORCH_LIBRARY_FRAGMENT(pyengine, m) {
  m.def("nufft_sort(Tensor points, int[] grid, int[] bins) -> (Tensor perm, Tensor bin_ptr)");
  m.def("nufft_spread(Tensor points, Tensor values, Tensor perm, Tensor bin_ptr, int[] grid, int[] bins, int width, float beta) -> Tensor");
  m.def("nufft_interp(Tensor points, Tensor fine, Tensor perm, Tensor bin_ptr, int[] bins, int width, float beta) -> Tensor");
  // Kernel Fourier transform at frequencies -n_modes//2 .. (n_modes-1)//2 on a grid of nf nodes (float64, CPU).
  m.def("nufft_kernel_ft(int n_modes, int nf, int width, float beta) -> Tensor");
  // The transforms nufft1/nufft2 are not ops: they are Python composites of these
  // primitives and torch.fft, with autograd (pyengine/ops/nufft.py).
}

// issue 18 (PyG / torch_cluster / torch_scatter drop-ins):
// bruteforce: exhaustive kNN for any dimension d >= 1 (feature-space graphs), clouds by offsets
//   point_ptr / query_ptr (B+1,); dist (M, k) ascending (Euclidean, or 1 - cosine similarity),
//   idx (M, k) int64, rows padded with (inf, -1) where a cloud has fewer than k points.
// sampling: farthest point sampling; out_ptr (B+1,) sample offsets, start (B,) first sample
//   per cloud (local index); returns global point indices (out_ptr[-1],).
// segment: log-softmax over CSR rows and its backward.
TORCH_LIBRARY_FRAGMENT(pyengine, m) {
  m.def("knn_bruteforce(Tensor points, Tensor queries, Tensor point_ptr, Tensor query_ptr, int k, bool cosine=False) -> (Tensor dist, Tensor idx)");
  m.def("fps(Tensor points, Tensor ptr, Tensor out_ptr, Tensor start) -> Tensor");
  m.def("segment_log_softmax(Tensor scores, Tensor row_ptr) -> Tensor");
  m.def("segment_log_softmax_backward(Tensor grad_out, Tensor out, Tensor row_ptr) -> Tensor");
}
// segment: (log-)softmax over the groups of an unsorted int64 index (E,) in [0, num_nodes), no sort.
TORCH_LIBRARY_FRAGMENT(pyengine, m) {
  m.def("index_softmax(Tensor src, Tensor index, int num_nodes, bool log=False) -> Tensor");
  m.def("index_softmax_backward(Tensor grad_out, Tensor out, Tensor index, int num_nodes, bool log=False) -> Tensor");
}

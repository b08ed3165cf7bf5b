#pragma once
// The GPU k-d tree: build and queries written with Thrust algorithms and
// __host__ __device__ functors, templated on a Backend that supplies the
// execution policy. kdtree_cuda.cu instantiates it with the CUDA policy
// (CUB radix sorts and scans underneath, temporary memory from torch's
// caching allocator); with Thrust's sequential host policy the very same code
// runs on the CPU, which is how the GPU algorithm is checked on machines
// without a GPU (the thrust_host back end of tests/cuda_emulation.py).
//
// Build (why a sort-built k-d tree rather than a cell grid: the tree is the
// format every other op consumes, KDTree / kd_partition included, and a grid
// degrades on clustered CAD surfaces where one cell size cannot fit both a
// fillet and a flat panel). The tree is built level by level, all nodes of one
// depth at once: a segmented reduction gives every node its tight box, then
// one radix sort by (node, coordinate on the node's widest side) puts every
// splitting node's lower half first; node ranges and child ids follow from the
// sizes alone (kdtree_layout.h), so the result has exactly the CPU layout.
//
// Queries: one thread per query in Morton order of the queries (neighboring
// threads walk the same nodes), radius search as count then fill without
// reallocation, rows sorted by point index in place.
#include "neighbors/kdtree_build_cuda.cuh"
#include "neighbors/kdtree_query_cuda.cuh"

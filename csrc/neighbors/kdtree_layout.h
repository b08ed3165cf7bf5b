#pragma once
// The node layout every k-d tree build shares (CPU and CUDA). Node ids are the
// pre-order of each batch's tree, batch after batch; a node over n points
// splits at begin + n / 2 while n > leaf_size, so the whole layout (ranges and
// child ids) depends only on the batch sizes and leaf_size, never on the
// coordinates: the left child of node id is id + 1 and the right child is
// id + 1 + count_nodes(n / 2, leaf_size).
#include <cstdint>

#include "common/macros.h"

namespace pyengine::neighbors {

// Nodes of the tree over n >= 1 points. Median splits halve sizes with
// rounding, so all nodes of one depth have size a or a + 1: O(log n) steps.
PYE_HD int64_t count_nodes(int64_t n, int64_t leaf) {
  int64_t a = n, na = 1, nb = 0, total = 0;  // na nodes of size a, nb of size a + 1
  while (na + nb > 0) {
    total += na + nb;
    const int64_t sa = a > leaf ? na : 0;  // the ones that split (the others are leaves)
    const int64_t sb = a + 1 > leaf ? nb : 0;
    if (a % 2 == 0) {  // a = 2h -> (h, h); a + 1 -> (h, h + 1)
      na = 2 * sa + sb;
      nb = sb;
    } else {  // a = 2h + 1 -> (h, h + 1); a + 1 -> (h + 1, h + 1)
      na = sa;
      nb = sa + 2 * sb;
    }
    a /= 2;
  }
  return total;
}

}  // namespace pyengine::neighbors

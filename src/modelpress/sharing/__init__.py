"""Parameter sharing: clustered codebooks with entropy-coded indices (Deep Compression), hashed weights
(HashedNets) and cross-layer tying. The `Share` step (recipe key ``share``) and its parts."""

from modelpress.sharing.config import Share
from modelpress.sharing.kmeans import kmeans_1d
from modelpress.sharing.modules import ClusteredConv2d, ClusteredLinear, HashedConv2d, HashedLinear
from modelpress.sharing.step import apply_share

__all__ = ["ClusteredConv2d", "ClusteredLinear", "HashedConv2d", "HashedLinear", "Share", "apply_share",
           "kmeans_1d"]

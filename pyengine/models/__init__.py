"""Model families on one interface: ``build(name, in_channels, out_channels, coord_dim, **config)``.

Every model maps ``(points (N, d), features (N, C_in), queries (M, d)) -> (M, C_out)``
for one geometry; ``forward_samples`` runs a list of :class:`pyengine.data.Sample`.
"""

from .base import GraphCache, OperatorModel
from .gaot import GAOT, GAOTConfig, from_official
from .gaot_fast import GAOTFast, GAOTFastConfig
from .gino import GINO, GINOConfig
from .gno import GNO, GNOConfig
from .gnot import GNOT, GNOTConfig
from .mgno import MgNO, MgNOConfig
from .mgtfno import MGTFNO, MGTFNOConfig
from .registry import available, build, make_config
from .rigno import RIGNO, RIGNOConfig
from .thinning import Thinning
from .mppde import MPPDE, MPPDEConfig  # issue 20
from .nuno import NUNO, NUNOConfig  # issue 20

__all__ = [
    "GAOT", "GAOTConfig", "GAOTFast", "GAOTFastConfig", "GINO", "GINOConfig", "GNO", "GNOConfig", "GraphCache", "OperatorModel", "RIGNO",
    "RIGNOConfig", "Thinning", "available", "build", "from_official", "make_config",
    "GNOT", "GNOTConfig", "MgNO", "MgNOConfig", "MGTFNO", "MGTFNOConfig",
]
__all__ += ["MPPDE", "MPPDEConfig", "NUNO", "NUNOConfig"]  # issue 20

"""Datasets from users' own simulation results: VTU/VTK/MSH/XDMF (meshio), VTP and OpenFOAM
cases (vtk), PLY/STL/OBJ with sidecar .npy/.npz fields.

Modules, one concern each:

* :mod:`.manifest`: folder, glob or CSV/JSON manifest -> :class:`SampleSpec` list;
* :mod:`.readers`, :mod:`.vtk_io`: files -> :class:`MeshRecord` (points, cells, point/cell data);
* :mod:`.assemble`: fields by name at points or cell centres, surface or volume samples;
* :mod:`.surface`: area vectors, vertex normals, cell-to-point averaging;
* :mod:`.dataset`: :class:`FileDataset`, the user-facing entry;
* :mod:`.cache`, :mod:`.loader`: one streaming preprocessing pass into memory-mapped arrays,
  and the ``torch.utils.data`` Dataset/sampler that trains from them;
* :mod:`.frames`: per-geometry ("unit") or dataset-level coordinate frames.
"""

from .assemble import SampleArrays, assemble, select_fields
from .cache import FileCache, build_cache
from .config import FileDatasetConfig, ForceConfig, file_config_from_dict
from .dataset import FileDataset
from .frames import CoordinateFrame
from .loader import CachedSamples, LoadedItem, ShardedBatchSampler, make_loader
from .manifest import SampleSpec, discover
from .readers import attach_fields, read_record, read_sidecar
from .records import DataFileError, MeshRecord
from .surface import area_vectors, cell_to_point, vertex_normals
from .vtk_io import read_openfoam, read_vtp, write_vtp

__all__ = ["CachedSamples", "CoordinateFrame", "DataFileError", "FileCache", "FileDataset", "FileDatasetConfig",
           "ForceConfig", "LoadedItem", "MeshRecord", "SampleArrays", "SampleSpec", "ShardedBatchSampler",
           "area_vectors", "assemble", "attach_fields", "build_cache", "cell_to_point", "discover",
           "file_config_from_dict", "make_loader", "read_openfoam", "read_record", "read_sidecar", "read_vtp",
           "select_fields", "vertex_normals", "write_vtp"]

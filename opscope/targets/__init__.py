"""Target specs: what a device is (peaks or a PE array, memory levels, efficiencies, energies).

``load_target(name_or_path)`` resolves a shipped name (``opscope/targets/specs/*.toml``), ``host``
(detected at run time), a spec in ``user_spec_dir()`` (``host-measured`` once probed), or a path to
a TOML file.  See ``opscope.targets.loader`` for the file format.
"""

from opscope.targets.host import detect_host
from opscope.targets.loader import (
    list_targets,
    load_spec_file,
    load_target,
    save_target,
    spec_from_dict,
    user_spec_dir,
)
from opscope.targets.spec import DTYPES, TARGET_KINDS, MemoryLevel, PEArray, TargetSpec
from opscope.targets.tvm import tvm_target, tvm_target_dict

__all__ = [
    "DTYPES", "TARGET_KINDS", "MemoryLevel", "PEArray", "TargetSpec", "detect_host", "list_targets",
    "load_spec_file", "load_target", "save_target", "spec_from_dict", "tvm_target", "tvm_target_dict",
    "user_spec_dir",
]

"""Checking (AST -> typed IR) and, in `netc.compiler.lower`, lowering to JAX.

Importing this package does not import JAX: `netc check` must answer at once.
"""

from .check import check_file, check_module, check_source
from .ir import Net, Node
from .layers import KINDS, ShapeError
from .settings import TrainConfig

__all__ = ["KINDS", "Net", "Node", "ShapeError", "TrainConfig", "check_file", "check_module",
           "check_source"]

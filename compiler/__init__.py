"""Checking (AST -> typed IR) and, in `netc.compiler.lower`, lowering to JAX.

Importing this package does not import JAX: `netc check` must answer at once.
"""

from .check import check_file, check_module, check_source
from .ir import Net, Node
from .ops import OPS, ShapeError
from .settings import TrainConfig

__all__ = ["OPS", "Net", "Node", "ShapeError", "TrainConfig", "check_file", "check_module",
           "check_source"]

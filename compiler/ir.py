"""The typed IR: what the checker produces and what the summary, lowering and runtime walk.

A `Node` is either a leaf layer (kind in layers.KINDS) or a block: `sequence` (a chain; also a
def call's scope), `residual` (children: body, shortcut-or-None) or `concat` (children: the
branches). Every node knows its input and output shape, parameters, state and MACs.

A sequence's attrs record what the chain was written as (for `netc draw`; nothing else reads
them): a def call's scope has {"def": NAME, "args": {param: value}}, and a chain holding
repeats has {"repeats": ((start, stop, count), ...)}: children start..stop-1 are the `count`
copies of one `repeat` (a repeat opens no scope, so its copies sit in the chain it is in;
ranges of nested repeats lie inside their outer one's).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from netc.dsl.diagnostics import Diagnostic
from netc.dsl.nodes import Span

Shape = tuple[int, ...]
BLOCKS = ("sequence", "residual", "concat")


@dataclass(frozen=True)
class Node:
    name: str  # the full, unique, readable name: "bottleneck_2/conv_3"; "" for the top level
    kind: str
    attrs: dict
    in_shape: Shape
    out_shape: Shape
    span: Span
    params: dict[str, Shape] = field(default_factory=dict)
    state: dict[str, Shape] = field(default_factory=dict)
    macs: int = 0
    children: tuple[Node | None, ...] = ()

    @property
    def is_block(self) -> bool:
        return self.kind in BLOCKS

    def leaves(self) -> Iterator[Node]:
        """Leaf layers in execution order (a residual's body, then its shortcut)."""
        if not self.is_block:
            yield self
            return
        for child in self.children:
            if child is not None:
                yield from child.leaves()

    @property
    def param_count(self) -> int:
        return sum(math.prod(s) for leaf in self.leaves() for s in leaf.params.values())

    @property
    def state_count(self) -> int:
        return sum(math.prod(s) for leaf in self.leaves() for s in leaf.state.values())

    @property
    def total_macs(self) -> int:
        return sum(leaf.macs for leaf in self.leaves())


@dataclass(frozen=True)
class Net:
    """A checked spec: the model as a tree of Nodes, its training settings and its warnings."""

    name: str
    input_shape: Shape
    body: Node
    train: object  # settings.TrainConfig
    warnings: tuple[Diagnostic, ...]
    filename: str
    source: str
    frozen: frozenset[str] = frozenset()  # names of the leaves that `freeze` holds fixed

    @property
    def output_shape(self) -> Shape:
        return self.body.out_shape

    def leaves(self) -> list[Node]:
        return list(self.body.leaves())

    @property
    def params(self) -> int:
        return self.body.param_count

    @property
    def frozen_params(self) -> int:
        """Parameters of frozen layers (never trained; BN statistics are counted apart)."""
        return sum(math.prod(s) for leaf in self.leaves() if leaf.name in self.frozen
                   for s in leaf.params.values())

    @property
    def state(self) -> int:
        return self.body.state_count

    @property
    def macs(self) -> int:
        return self.body.total_macs

    @property
    def activation_bytes(self) -> int:
        """float32 bytes of the input and every leaf's output, for one example."""
        return 4 * (math.prod(self.input_shape) + sum(math.prod(x.out_shape)
                                                       for x in self.leaves()))

    @property
    def head(self) -> Node:
        """The last leaf layer: it decides the default loss."""
        return self.leaves()[-1]

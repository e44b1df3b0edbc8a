"""Dataflows: which operands stay in a PE, and so what every MAC costs in register traffic.

Every MAC reads an input and a weight and reads and writes a partial sum.  An operand the dataflow
keeps in the PE (*held*) is read from the PE's register file on every MAC (a partial sum is read and
written); an operand it streams arrives over the array from the buffer or a neighbour and is counted
as array delivery by the mapping (``opscope.analytical.mapping``), not as register traffic.

==================  ==============================  =====================  ==================
dataflow            held in the PE's registers      register words / MAC   spatial (H x W)
==================  ==============================  =====================  ==================
row-stationary      weights, inputs, partial sums   4 (i, w, psum r + w)   r (x c, k or p) x p or k
weight-stationary   weights                         1 (w)                  c, r, s x k
output-stationary   partial sums                    2 (psum r + w)         p, q x k
==================  ==============================  =====================  ==================

``row-stationary-folded`` is row-stationary with nn_dataflow's folding rule: the output rows are
folded onto the height left over by the filter rows before anything else, and a layer whose folded
rows need all of it (``ceil(P / width) >= height // R``) puts only output rows on the array, never
channels.  Its mappings are a part of row-stationary's, so the search uses it only when it is named
(to reproduce nn_dataflow's mappings); row-stationary may spread output channels over that height
and move less from DRAM.

Row-stationary is Eyeriss's (Chen et al., ISCA 2016): a PE runs a 1-D convolution of one filter row
over one input row, so the filter row (``s``) and the whole output row (``q``) are processed inside
the PE, filter rows (``r``) go down the array's height and output rows (``p``) across its width.
Inputs and partial sums stream through a sliding window: the registers hold ``s`` inputs and one
partial sum per output channel, not the whole row.  In the other two, the streamed operands pass one
step at a time (a PE's tile of their loops is 1); the buffer level's loop order decides how long the
held operand stays.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from opscope.targets.spec import DATAFLOWS

#: the loops of the mapping's layer form (see ``opscope.analytical.layer``)
LOOPS = ("g", "n", "k", "c", "p", "q", "r", "s")


@dataclass(frozen=True)
class Dataflow:
    name: str
    #: tensors ("input", "weight", "output") kept in the PE's registers
    held: frozenset[str]
    #: register-file words each MAC touches (reads, plus the partial-sum write)
    register_words_per_mac: int
    #: loops that may be spread over the array's height, width and instances
    height_loops: tuple[str, ...]
    width_loops: tuple[str, ...]
    instance_loops: tuple[str, ...]
    #: loops whose whole (remaining) extent runs inside one PE, and loops a PE may block further
    pe_full_loops: tuple[str, ...]
    pe_free_loops: tuple[str, ...]
    #: loops that must go onto the height first, as far as it allows (row-stationary's filter rows)
    height_first: tuple[str, ...] = ()
    #: loops streamed through the PE: the registers hold one step of them, not the whole tile
    streamed: tuple[str, ...] = ()
    #: nn_dataflow's folding: when the output rows folded onto the spare height fill it, only they
    #: go on the array (height and width)
    rows_first: bool = False


ROW_STATIONARY = Dataflow(
    name="row-stationary", held=frozenset({"input", "weight", "output"}), register_words_per_mac=4,
    height_loops=("c", "k", "p"), width_loops=("p", "k"), instance_loops=("n", "p", "k"),
    pe_full_loops=("q", "s", "r"), pe_free_loops=("g", "n", "k", "c"), height_first=("r",), streamed=("q",),
)
WEIGHT_STATIONARY = Dataflow(
    name="weight-stationary", held=frozenset({"weight"}), register_words_per_mac=1,
    height_loops=("c", "r", "s"), width_loops=("k",), instance_loops=("n", "p", "k"),
    pe_full_loops=(), pe_free_loops=("g", "k", "c", "r", "s"),
)
OUTPUT_STATIONARY = Dataflow(
    name="output-stationary", held=frozenset({"output"}), register_words_per_mac=2,
    height_loops=("p", "q"), width_loops=("k",), instance_loops=("n", "p", "k"),
    pe_full_loops=(), pe_free_loops=("g", "n", "k", "p", "q"),
)

ROW_STATIONARY_FOLDED = replace(ROW_STATIONARY, name="row-stationary-folded", rows_first=True)

BY_NAME = {d.name: d for d in (ROW_STATIONARY, WEIGHT_STATIONARY, OUTPUT_STATIONARY, ROW_STATIONARY_FOLDED)}
assert tuple(BY_NAME) == DATAFLOWS

#: words per MAC when nothing says which operands stay in the PE: every operand in the registers
DEFAULT_REGISTER_WORDS = 4


def dataflow(name: str) -> Dataflow:
    try:
        return BY_NAME[name]
    except KeyError:
        from opscope.errors import OpscopeError

        raise OpscopeError(f"unknown dataflow {name!r}; known: {', '.join(DATAFLOWS)}") from None

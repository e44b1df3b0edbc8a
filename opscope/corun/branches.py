"""Independent branches of a model, found in its fused Relax dataflow graph.

The graph is read from the ``main`` function of a fused Relax module (``Workload.ir_module``): one
node per binding, an edge from each binding to those that use its variable.  A *fork-join region*
starts at a value with several consumers (the fork) and ends at the first node that every
consumer reaches (the join).  The branches of the region are, for each consumer, the kernels it
reaches before the join that no other consumer reaches: they depend on nothing in the other
branches, so they may run at the same time.  Examples: a ResNet downsample block (the 1x1
shortcut conv vs the 3x3 conv of the main path, joined at the residual add); in a transformer
layer the Q, K and V projections (fork at the layer input).

An identity shortcut gives an empty branch, and a region is kept only with two or more non-empty
branches.  Regions with the same kernels (repeated blocks) are counted once, with ``count``.
"""

from __future__ import annotations

from dataclasses import dataclass

from opscope.errors import OpscopeError


@dataclass(frozen=True)
class Branch:
    """Kernels of one branch in execution order: binding names and the PrimFunc each calls."""

    bindings: tuple[str, ...]
    funcs: tuple[str, ...]


@dataclass(frozen=True)
class Region:
    """A fork-join region with its independent branches."""

    fork: str
    join: str
    branches: tuple[Branch, ...]
    count: int = 1

    @property
    def signature(self) -> tuple[tuple[str, ...], ...]:
        return tuple(sorted(b.funcs for b in self.branches))

    def describe(self) -> str:
        parts = [" > ".join(b.funcs) for b in self.branches]
        return f"{self.fork} -> [{' | '.join(parts)}] -> {self.join}"


@dataclass(frozen=True)
class _Node:
    name: str
    func: str | None  # the called PrimFunc for call_tir bindings, else None
    inputs: tuple[str, ...]  # names of the variables it uses


def dataflow_nodes(mod, func_name: str = "main") -> list[_Node]:
    """The bindings of ``func_name`` as nodes, in program (topological) order."""
    from tvm import relax

    try:
        func = mod[func_name]
    except (KeyError, ValueError, AttributeError):
        raise OpscopeError(f"the model's Relax module has no function {func_name!r}") from None
    if not isinstance(func, relax.Function):
        raise OpscopeError(f"{func_name!r} is not a Relax function")
    call_tir = relax.op.get("relax.call_tir") if hasattr(relax.op, "get") else None
    nodes = []
    names: dict = {}  # Relax variable -> unique display name (name hints may repeat)

    def name_of(v) -> str:
        if v not in names:
            base = getattr(v, "name_hint", None) or getattr(v, "name", None) or "v"
            taken = set(names.values())
            cand, k = str(base), 1
            while cand in taken:
                cand, k = f"{base}#{k}", k + 1
            names[v] = cand
        return names[v]

    for p in func.params:
        name_of(p)
    for block in getattr(func.body, "blocks", ()):
        for b in block.bindings:
            value = b.value
            used = tuple(dict.fromkeys(name_of(v) for v in relax.analysis.free_vars(value)))
            fname = None
            if isinstance(value, relax.Call) and _is_call_tir(value, call_tir):
                fname = getattr(value.args[0], "name_hint", None)
            nodes.append(_Node(name_of(b.var), fname, used))
    if not nodes:
        raise OpscopeError(f"Relax function {func_name!r} has no bindings (is the module fused?)")
    return nodes


def _is_call_tir(call, call_tir_op) -> bool:
    op = call.op
    name = getattr(op, "name", "")
    return name == "relax.call_tir" or (call_tir_op is not None and op.same_as(call_tir_op))


def find_regions(mod, func_name: str = "main") -> list[Region]:
    """Every fork-join region with at least two non-empty independent branches, deduplicated."""
    nodes = dataflow_nodes(mod, func_name)
    return regions_from_nodes(nodes)


def regions_from_nodes(nodes: list[_Node]) -> list[Region]:
    index = {n.name: i for i, n in enumerate(nodes)}
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for v in n.inputs:
            consumers.setdefault(v, []).append(i)

    def reach(start: int) -> set[int]:
        seen, stack = set(), [start]
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            stack.extend(consumers.get(nodes[i].name, ()))
        return seen

    def ancestors(target: int) -> set[int]:
        seen, stack = set(), [target]
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            stack.extend(index[v] for v in nodes[i].inputs if v in index)
        return seen

    found: dict[tuple, Region] = {}
    for fork, users in consumers.items():
        succ = sorted(set(users))
        if len(succ) < 2:
            continue
        desc = [reach(s) for s in succ]
        common = set.intersection(*desc)
        if not common:
            continue
        join = min(common)
        before_join = ancestors(join) - {join}
        branches = []
        for k, d in enumerate(desc):
            others = set().union(*(desc[j] for j in range(len(desc)) if j != k))
            own = sorted(i for i in d - others if i in before_join and nodes[i].func is not None)
            if own:
                branches.append(Branch(tuple(nodes[i].name for i in own), tuple(nodes[i].func for i in own)))
        if len(branches) < 2:
            continue
        region = Region(fork, nodes[join].name, tuple(branches))
        sig = region.signature
        if sig in found:
            prev = found[sig]
            found[sig] = Region(prev.fork, prev.join, prev.branches, prev.count + 1)
        else:
            found[sig] = region
    return list(found.values())

"""Architecture diagrams in the style of the papers' figures: blocks top to bottom, branches side by side.

The graph comes from ``torch.fx`` (leaf modules kept whole), so concatenations and
additions are real nodes: an inception module is drawn as parallel branches that
merge in a ``concat`` block, a residual block as a body with a shortcut beside it.
BatchNorm, activations, dropout and reshapes are folded into the block before them
(``conv 3x3/2 · BN · ReLU``). Each block shows its output shape. Models FX cannot
trace are drawn as the chain of their layers. SVG is written as text; PNG needs
matplotlib (``pip install 'striate[diagram]'``).
"""

from __future__ import annotations

import html
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from striate.errors import ModelError
from striate.models.inspect import layer_table

BOX_H, ROW_GAP, COL_GAP, MARGIN, CHAR_W, FONT_PX = 34, 26, 18, 20, 7.3, 12  # pixels; CHAR_W: monospace 12 px
FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"
COLORS = {"input": "#e8e8e8", "conv": "#cfe2f3", "pool": "#f4cccc", "linear": "#d9ead3", "merge": "#fff2cc",
          "other": "#ead1dc"}
_FOLD_MODULES = {nn.BatchNorm1d: "BN", nn.BatchNorm2d: "BN", nn.LocalResponseNorm: "LRN", nn.GroupNorm: "GN",
                 nn.LayerNorm: "LN", nn.Dropout: "dropout", nn.Dropout2d: "dropout", nn.Flatten: "flatten",
                 nn.Identity: ""}
# Functions and tensor methods folded into the block before them, with the word they add to its label.
_RESHAPES = {"flatten": "flatten", "view": "reshape", "reshape": "reshape", "dropout": "dropout", "contiguous": "",
             "squeeze": "", "unsqueeze": "", "permute": "", "transpose": ""}


@dataclass
class _Node:
    key: str
    kind: str  # input, conv, pool, linear, merge, other
    label: str
    shape: tuple[int, ...] | None
    preds: list[str]
    title: str = ""  # module path, shown as a tooltip in the SVG
    row: int = 0
    x: float = 0.0


@dataclass
class Diagram:
    """A laid-out diagram: boxes and orthogonal arrows in pixel coordinates."""

    title: str
    width: float
    height: float
    box_w: float
    nodes: list[_Node] = field(default_factory=list)
    edges: list[list[tuple[float, float]]] = field(default_factory=list)

    def top(self, node: _Node) -> float:
        """The y of a node's top edge."""
        return MARGIN + 30 + node.row * (BOX_H + ROW_GAP)

    def to_svg(self) -> str:
        """The diagram as a standalone SVG document."""
        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width:.0f}" height="{self.height:.0f}" '
               f'viewBox="0 0 {self.width:.0f} {self.height:.0f}" font-family="{FONT}" font-size="{FONT_PX}">',
               '<rect width="100%" height="100%" fill="white"/>',
               f'<text x="{MARGIN}" y="{MARGIN + 12}" font-weight="bold">{html.escape(self.title)}</text>']
        for points in self.edges:
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            out.append(f'<polyline points="{pts}" fill="none" stroke="#555" stroke-width="1.2"/>')
            tri = " ".join(f"{x:.1f},{y:.1f}" for x, y in _arrowhead(points[-1]))
            out.append(f'<polygon points="{tri}" fill="#555"/>')
        for n in self.nodes:
            x0, y0 = n.x - self.box_w / 2, self.top(n)
            tip = f"<title>{html.escape(n.title)}</title>" if n.title else ""
            out.append(f'<g>{tip}<rect x="{x0:.1f}" y="{y0:.1f}" width="{self.box_w:.1f}" height="{BOX_H}" rx="5" '
                       f'fill="{COLORS[n.kind]}" stroke="#333"/>')
            for i, line in enumerate(_lines(n)):
                fill = "#444" if i else "black"
                out.append(f'<text x="{n.x:.1f}" y="{y0 + 14 + i * 14:.1f}" text-anchor="middle" fill="{fill}">'
                           f'{html.escape(line)}</text>')
            out.append("</g>")
        out.append("</svg>")
        return "\n".join(out) + "\n"

    def to_png(self, path: Path, scale: float = 2.0) -> None:
        """Render the same drawing with matplotlib into a PNG file."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            from matplotlib.patches import FancyBboxPatch, Polygon
        except ImportError:
            raise ModelError("PNG diagrams need matplotlib", "pip install 'striate[diagram]', or write .svg") from None
        dpi = 100 * scale
        fig = plt.figure(figsize=(self.width / 100, self.height / 100), dpi=dpi)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, self.width)
        ax.set_ylim(self.height, 0)
        ax.axis("off")
        pt = FONT_PX * 72 / 100  # one pixel of the layout is 1/100 inch
        font: dict[str, Any] = {"family": "monospace", "fontsize": pt}
        ax.text(MARGIN, MARGIN + 12, self.title, fontweight="bold", va="baseline", **font)
        for points in self.edges:
            ax.plot([p[0] for p in points], [p[1] for p in points], color="#555", lw=1.0)
            ax.add_patch(Polygon(_arrowhead(points[-1]), closed=True, color="#555"))
        for n in self.nodes:
            ax.add_patch(FancyBboxPatch((n.x - self.box_w / 2, self.top(n)), self.box_w, BOX_H,
                                        boxstyle="round,pad=0,rounding_size=5", fc=COLORS[n.kind], ec="#333", lw=0.8))
            for i, line in enumerate(_lines(n)):
                ax.text(n.x, self.top(n) + 14 + i * 14, line, ha="center", va="baseline",
                        color="#444" if i else "black", **font)
        fig.savefig(path, dpi=dpi, facecolor="white")
        plt.close(fig)

    def save(self, path: str | Path) -> Path:
        """Write the diagram as .svg (text) or .png (matplotlib), chosen by the file's suffix."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".svg", ".png"):
            raise ModelError(f"cannot write a diagram as {path.name!r}", "name the file .svg or .png")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if suffix == ".svg":
                path.write_text(self.to_svg(), encoding="utf-8")
            else:
                self.to_png(path)
        except OSError as exc:
            raise ModelError(f"cannot write the diagram to {path}: {exc.strerror or exc}",
                             "choose a writable path for --diagram") from None
        return path


def diagram(model: nn.Module, input_shape: tuple[int, ...], title: str = "") -> Diagram:
    """Lay out ``model``'s architecture for inputs of ``input_shape`` (C, H, W)."""
    try:
        nodes = _fx_nodes(model, input_shape)
    except Exception:  # noqa: BLE001 - FX cannot trace every forward (data-dependent control flow); draw a chain
        nodes = _chain_nodes(model, input_shape)  # runs the model plainly: a real shape error surfaces here
    nodes = _fold(nodes)
    return _layout(nodes, title)


# -- graph extraction -------------------------------------------------------------------------------

class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return not any(True for _ in m.children())


def _fx_nodes(model: nn.Module, input_shape: tuple[int, ...]) -> list[_Node]:
    was_training = model.training
    model.eval()
    try:
        graph = _LeafTracer().trace(model)
        gm = fx.GraphModule(model, graph)
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
        from torch.fx.passes.shape_prop import ShapeProp

        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
    modules = dict(model.named_modules())
    nodes: list[_Node] = []
    kept: set[str] = set()
    for node in graph.nodes:
        meta = node.meta.get("tensor_meta")
        if node.op == "output" or not hasattr(meta, "shape"):
            continue
        preds = [a.name for a in node.all_input_nodes if a.name in kept]
        shape = tuple(meta.shape[1:])
        if node.op == "placeholder":
            kind, label = "input", "input"
        elif node.op == "call_module":
            kind, label = _describe_module(modules[str(node.target)])
        else:
            kind, label = _describe_function(node.target, len(preds))
        if node.op != "placeholder" and not preds:
            continue  # constants and parameters read with get_attr
        kept.add(node.name)
        nodes.append(_Node(node.name, kind, label, shape, preds, str(node.target) if node.op == "call_module" else ""))
    return nodes


def _chain_nodes(model: nn.Module, input_shape: tuple[int, ...]) -> list[_Node]:
    modules = dict(model.named_modules())
    nodes = [_Node("input", "input", "input", tuple(input_shape), [])]
    for i, row in enumerate(layer_table(model, input_shape)):
        kind, label = _describe_module(modules[row.name]) if row.name in modules else ("other", row.type)
        nodes.append(_Node(f"n{i}", kind, label, row.output_shape, [nodes[-1].key], row.name))
    return nodes


def _describe_module(m: nn.Module) -> tuple[str, str]:
    """(kind, label) of a leaf module; kind "fold" marks layers drawn inside the block before them."""
    for cls, short in _FOLD_MODULES.items():
        if isinstance(m, cls):
            return "fold", short
    if type(m).__module__ == "torch.nn.modules.activation" or type(m).__name__ == "ScaledTanh":
        return "fold", type(m).__name__
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        label = f"conv {kh}x{kw}" + (f"/{m.stride[0]}" if m.stride[0] > 1 else "")
        return "conv", label + (f" g{m.groups}" if m.groups > 1 else "")
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        size = m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size, m.output_size)
        return "pool", ("avg" if isinstance(m, nn.AdaptiveAvgPool2d) else "max") + f"pool to {size[0]}x{size[1]}"
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
        s = m.stride if isinstance(m.stride, int) else m.stride[0]
        return "pool", ("max" if isinstance(m, nn.MaxPool2d) else "avg") + f"pool {k}x{k}" + (f"/{s}" if s > 1 else "")
    if isinstance(m, nn.Linear):
        return "linear", "linear"
    return "other", type(m).__name__


def _describe_function(target: Any, n_inputs: int) -> tuple[str, str]:
    name = getattr(target, "__name__", str(target))
    if target in (torch.cat, torch.concat) or name in ("cat", "concat"):
        return "merge", "concat"
    if target in (operator.add, operator.iadd, torch.add) or name in ("add", "add_"):
        return ("merge", "add") if n_inputs > 1 else ("fold", "")
    if name.rstrip("_") in ("relu", "relu6", "gelu", "silu", "tanh", "sigmoid", "leaky_relu", "elu", "hardswish"):
        return "fold", name.rstrip("_").replace("relu", "ReLU")
    if name in _RESHAPES:
        return "fold", _RESHAPES[name]
    if "pool" in name:
        return "pool", name
    if name in ("linear", "conv2d"):
        return ("linear" if name == "linear" else "conv"), name
    return ("fold", name) if n_inputs == 1 else ("other", name)


def _fold(nodes: list[_Node]) -> list[_Node]:
    """Merge "fold" nodes into the block before them when that block feeds only them."""
    users: dict[str, int] = {}
    for n in nodes:
        for p in n.preds:
            users[p] = users.get(p, 0) + 1
    rep: dict[str, str] = {}
    by_key: dict[str, _Node] = {}
    out: list[_Node] = []
    for n in nodes:
        n.preds = list(dict.fromkeys(rep.get(p, p) for p in n.preds))
        target = by_key.get(n.preds[0]) if len(n.preds) == 1 else None
        if n.kind == "fold" and target is not None and target.kind != "input" and users.get(target.key, 0) <= 1:
            if n.label and not target.label.endswith(n.label):
                target.label += f" · {n.label}"
            target.shape = n.shape
            users[target.key] = users.get(n.key, 0)
            rep[n.key] = target.key
            continue
        if n.kind == "fold":
            n.kind = "other"
            n.label = n.label or "reshape"
        by_key[n.key] = n
        out.append(n)
    return out


# -- layout -----------------------------------------------------------------------------------------

def _layout(nodes: list[_Node], title: str) -> Diagram:
    if not nodes:
        raise ModelError("the model has no layers to draw", "check the model builds and runs")
    box_w = max(120.0, max(max(len(s) for s in _lines(n)) for n in nodes) * CHAR_W + 16)
    by_key = {n.key: n for n in nodes}
    users: dict[str, list[_Node]] = {n.key: [] for n in nodes}
    for n in nodes:
        for p in n.preds:
            users[p].append(n)
        n.row = max((by_key[p].row + 1 for p in n.preds), default=0)
    pitch = box_w + COL_GAP
    placed: set[str] = set()
    for n in nodes:  # topological order: forks spread their single-input successors, joins sit between inputs
        if n.key not in placed:
            n.x = sum(by_key[p].x for p in n.preds) / len(n.preds) if n.preds else 0.0
        starts = [u for u in users[n.key] if len(u.preds) == 1]
        for i, u in enumerate(starts):
            u.x = n.x + (i - (len(starts) - 1) / 2) * pitch
            placed.add(u.key)
    rows: dict[int, list[_Node]] = {}
    for n in nodes:
        rows.setdefault(n.row, []).append(n)
    for row in rows.values():  # nested forks can collide: push blocks apart within a row
        row.sort(key=lambda n: n.x)
        for a, b in zip(row, row[1:]):
            b.x = max(b.x, a.x + pitch)
    shift = MARGIN + box_w / 2 - min(n.x for n in nodes)
    for n in nodes:
        n.x += shift
    d = Diagram(title, 0, 0, box_w, nodes)
    lanes = 0
    for n in nodes:
        for src in (by_key[k] for k in n.preds):
            sx, sb, tx, tt = src.x, d.top(src) + BOX_H, n.x, d.top(n)
            between = [m for r in range(src.row + 1, n.row) for m in rows.get(r, [])]
            free = lambda x: all(abs(m.x - x) > box_w / 2 + 4 for m in between)  # noqa: B023
            if not between and sx == tx:
                d.edges.append([(sx, sb), (tx, tt)])
            elif not between or free(sx):
                d.edges.append([(sx, sb), (sx, tt - ROW_GAP / 2), (tx, tt - ROW_GAP / 2), (tx, tt)])
            elif free(tx):
                d.edges.append([(sx, sb), (sx, sb + ROW_GAP / 2), (tx, sb + ROW_GAP / 2), (tx, tt)])
            else:  # a shortcut around blocks: a lane right of everything it passes
                lanes += 1
                lane = max(m.x for m in between) + box_w / 2 + 10 * lanes
                d.edges.append([(sx, sb), (sx, sb + ROW_GAP / 2), (lane, sb + ROW_GAP / 2),
                                (lane, tt - ROW_GAP / 2), (tx, tt - ROW_GAP / 2), (tx, tt)])
    right = max([n.x + box_w / 2 for n in nodes] + [p[0] for e in d.edges for p in e])
    d.width = max(right + MARGIN, MARGIN * 2 + len(title) * CHAR_W)
    d.height = d.top(max(nodes, key=lambda n: n.row)) + BOX_H + MARGIN
    return d


def _lines(n: _Node) -> list[str]:
    shape = "×".join(str(s) for s in n.shape) if n.shape else ""
    return [n.label, shape]


def _arrowhead(tip: tuple[float, float]) -> list[tuple[float, float]]:
    x, y = tip
    return [(x - 4, y - 7), (x + 4, y - 7), (x, y)]

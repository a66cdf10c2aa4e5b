"""The encode-method registry (:mod:`featx.methods` re-exports it): encode methods by name: what ``featx encode --method NAME`` computes, from which layers and
with which models. See docs/architecture.md, "add an encode method".

A method is a function registered with :func:`method`; it receives the run's :class:`Context`
and the float32 activations of the layers it ``reads`` (by role), and returns (B, d):

| role | layer | shape passed |
|---|---|---|
| ``local`` | layer t of the cross-layer pair (the PCA's layer) | (B, V, C, H, W) |
| ``guide`` | layer t+1 | (B, V, K, h, w) |
| ``fc`` | ``--fc-layer`` (fc7, else pool) | (B, V, C[, 1, 1]) |
| ``fisher`` | the GMM's pyramid layer | one (B, N_s, C) per scale |
| ``region`` | the guidance's pyramid layer (scheme 2) | one (B, N_s, C) per scale |

V counts the view's CNN inputs (4 for blocks:2x2, 10 for jitter, 50 for crops:5). ``view``
fixes the view a method reads (``whole``, ``jitter``, ``pyramid``); without one it runs on each of ``--views``.
Unless ``normalised``, the plan normalises the result: L2, after a signed square root where
the method's paper applies one (``power_default``; ``--power-norm/--no-power-norm`` override
every method's). The fc baselines take L2 alone (Yoo et al. Table 2: fc7 representations "are
finally l2-normalized"; the power transform is their separate Table 3b trick); cross-layer
pooling and the local poolings take the signed square root and L2 (Liu et al. §3.2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from featx.encoders import CrossLayerGrid, concat_normalized, normalize, project_subarrays
from featx.errors import InputError

ROLES = ("local", "guide", "fc", "fisher", "region")
GRID_VIEWS = ("whole", "blocks", "jitter", "centre", "crops")


@dataclass(frozen=True)
class Method:
    name: str
    compute: Callable[..., torch.Tensor]
    reads: tuple[str, ...]  # roles of the layers passed to compute, in order
    needs: frozenset[str] = frozenset()  # model files: "pca", "gmm", "guidance"
    view: str | None = None  # the one view it reads; None: each of --views
    normalised: bool = False  # compute returns the final, normalised vector
    power: bool = False  # signed square root even with --no-power-norm (sum-sqrt)
    power_default: bool = True  # the paper's normalisation: signed square root before L2


METHODS: dict[str, Method] = {}


def method(name: str, *, reads: tuple[str, ...], needs: tuple[str, ...] = (),
           view: str | None = None, normalised: bool = False, power: bool = False,
           power_default: bool = True):
    """Register the decorated function as encode method ``name``."""
    unknown = set(reads) - set(ROLES)
    if unknown:
        raise ValueError(f"method {name!r} reads unknown roles {sorted(unknown)}")

    def register(compute: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        if name in METHODS:
            raise ValueError(f"encode method {name!r} is registered twice")
        METHODS[name] = Method(name, compute, tuple(reads), frozenset(needs), view,
                               normalised, power, power_default)
        return compute

    return register


def get_methods(names) -> tuple[Method, ...]:
    if not names:
        raise InputError(f"no method given; valid: {', '.join(METHODS)}")
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise InputError(f"unknown method {unknown[0]!r}; valid: {', '.join(METHODS)}")
    return tuple(METHODS[n] for n in names)


@dataclass(frozen=True)
class Context:
    """What an encode run resolved from its inputs: the layer of each role and the models.

    ``pca_conv`` is the local layer's PCA as conv2d weights and bias
    (:meth:`featx.fit.PCA.as_conv`); ``fisher_pca`` projects pyramid vectors that were stored
    unprojected (None when extract --project did it); ``guidance`` is scheme 2's trained
    guidance layer (:class:`featx.fit.Guidance`), applied to the pyramid scales
    ``guidance_scales``, whose vectors ``region_pca`` projects when stored unprojected.
    """

    layers: Mapping[str, str] = field(default_factory=dict)  # role -> layer
    grid: CrossLayerGrid | None = None
    pca_conv: tuple[torch.Tensor, torch.Tensor] | None = None
    gmm: object | None = None
    fisher_pca: object | None = None
    pyramid_sizes: tuple[int, ...] = ()  # input size of each pyramid scale
    # per scale, (centre of row 0, stride) in pixels of the Fisher layer's map (None: unknown)
    pyramid_geometry: tuple | None = None
    guidance: object | None = None
    guidance_scales: tuple[int, ...] = ()
    region_pca: object | None = None

    def project(self, acts: torch.Tensor) -> torch.Tensor:
        """PCA-reduced subarrays at the cross-layer positions: (B, C, H, W) -> (B, D', h, w)."""
        return project_subarrays(acts, *self.pca_conv, self.grid)

    def fisher_features(self, scales: list[torch.Tensor]) -> list[torch.Tensor]:
        """Pyramid vectors in the GMM's (PCA-reduced) space."""
        if self.fisher_pca is None:
            return scales
        return [self.fisher_pca.transform(x.flatten(0, 1)).view(*x.shape[:2], -1)
                for x in scales]

    def region_features(self, scales: list[torch.Tensor]) -> list[torch.Tensor]:
        """The guidance's pyramid scales, in its (PCA-reduced) space."""
        chosen = [scales[s] for s in self.guidance_scales]
        if self.region_pca is None:
            return chosen
        return [self.region_pca.transform(x.flatten(0, 1)).view(*x.shape[:2], -1)
                for x in chosen]


@dataclass(frozen=True)
class EncodePlan:
    """Methods x views in output order, and how each block is normalised and joined."""

    methods: tuple[Method, ...]
    views: tuple[str, ...]
    context: Context
    power_norm: bool | None = None  # None: each method's own (power_default)
    l2: bool = True

    @property
    def blocks(self) -> list[tuple[Method, str]]:
        return [(m, v) for m in self.methods for v in ((m.view,) if m.view else self.views)]

    def power(self, m: Method) -> bool:
        """Whether block method ``m`` takes the signed square root before L2."""
        return m.power or (m.power_default if self.power_norm is None else self.power_norm)

    def normalisation(self) -> list[str]:
        """What each block's vector went through: 'sqrt+l2', 'l2', 'sqrt' or 'none' (the
        Fisher methods normalise themselves: the improved FV's sqrt+l2)."""
        out = []
        for m, _ in self.blocks:
            if m.normalised:
                out.append("sqrt+l2")
                continue
            parts = ["sqrt"] * self.power(m) + ["l2"] * self.l2
            out.append("+".join(parts) or "none")
        return out

    def reads(self) -> set[tuple[str, str]]:
        """(view, layer) of every array the plan reads."""
        return {(v, self.context.layers[role]) for m, v in self.blocks for role in m.reads}

    def encode_blocks(self, acts: Mapping[tuple[str, str], object]) -> list[torch.Tensor]:
        """acts[(view, layer)] -> the normalised blocks (B, d_i), one per :attr:`blocks`."""
        out = []
        for m, view in self.blocks:
            vec = m.compute(self.context, *(acts[(view, self.context.layers[r])] for r in m.reads))
            if not m.normalised:
                vec = normalize(vec, power=self.power(m), l2=self.l2)
            out.append(vec)
        return out

    def join(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        """Unit-norm blocks joined with equal weight; unnormalised ones as they are."""
        if len(blocks) == 1:
            return blocks[0]
        return concat_normalized(blocks) if self.l2 else torch.cat(blocks, 1)

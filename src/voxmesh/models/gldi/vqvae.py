"""GLDiTalker's stage 1: the graph-enhanced spatio-temporal VQ-VAE.

Encoder, for every frame: SpiralConv blocks down a quadric-decimated mesh pyramid
(fine to coarse, one block a level, the pyramid's averaging matrices between levels);
each level's features are pooled into a few learned "slots" (:class:`SlotPooling`) and
all levels' slots are fused by one linear layer into a vector a frame. Then in time:
optional down-sampling by ``2^q`` (strided convolutions), a transformer with the
symmetric ALiBi bias, and a projection to ``parts x code_dim`` a latent frame, quantised
against one shared codebook (:class:`voxmesh.models.layers.quantizer.VectorQuantizer`).
With ``region_parts`` (e.g. ``{upper_face: 2}``) the last parts of a frame are computed
from one region's motion alone (:class:`RegionEncoder`), so that small motion there
(blinks, brows) gets codes of its own instead of drowning in the lips' quantisation error.

Decoder, the mirror: projection, transformer, up-sampling in time, then for every frame
a linear map to the coarsest level's vertex features and SpiralConv blocks up the
pyramid (barycentric up-sampling matrices), each finer level also receiving the frame
vector spread over its vertices by learned slot weights (:class:`SlotScatter`). Each
level has a per-vertex head that adds its displacement to the up-sampled displacement of
the coarser levels (a Laplacian pyramid); the full-resolution level has no spiral in the
decoder (it would be the most expensive layer of the model, HEAD.md's compute budget).

Why slots: mean pooling over a level would keep the average of the face and lose where
things move; flattening the full-resolution level would be a dense layer of
``V x channels`` inputs. A slot is a softmax over a level's vertices, initialised as a
Gaussian blob around a farthest-point-sampled centre and then learned, so the encoder
keeps "what moves where" at every level for ``slots x channels`` numbers. The decoder's
slot weights go the other way (each vertex a softmax over slots) and carry detail past
the coarse levels: decimation can merge the two lips, so an open mouth cannot be
rebuilt from coarse features alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from voxmesh.errors import VoxmeshError
from voxmesh.mesh.pyramid import MeshPyramid
from voxmesh.models.gldi.blocks import TemporalTransformer
from voxmesh.models.layers.quantizer import Quantized, VectorQuantizer
from voxmesh.models.layers.spiral_conv import SpiralConv, sparse_vertex_matmul
from voxmesh.models.layers.stats import fold_running_stats

# ---- the channels-first layout -------------------------------------------------------------
#
# Inside the mesh encoder and decoder, features are laid out ``[C, V, N]`` (channels,
# vertices, frames) instead of ``[N, V, C]``. With a few channels a vertex, a spiral gather
# of ``[N, V, C]`` copies rows of C floats and its backward pass scatters them one by one;
# in ``[C, V, N]`` every gathered row is the N frames of one vertex (a long contiguous
# copy), the spiral convolution becomes one matrix product ``[O, C*L] @ [C*L, V*N]``, and
# slot pooling and the per-vertex output layer are single matrix products too. The
# results equal :class:`SpiralConv`'s own forward on ``[N, V, C]`` (same weights).

def spiral_conv_channels_first(conv: SpiralConv, x: torch.Tensor) -> torch.Tensor:
    """``conv`` applied to ``x [C, V_in, N]``, giving ``[out_channels, V, N]``."""
    vertices, length = conv.spirals.shape
    channels, _, frames = x.shape
    # rows (c, l), columns (v, n): the l-th spiral neighbour of every vertex, all frames
    gathered = x.index_select(1, conv.spirals.t().reshape(-1)).reshape(channels * length, vertices * frames)
    # SpiralConv's weight reads its input as (l, c), c fastest; reorder to (c, l)
    weight = conv.linear.weight.reshape(-1, length, channels).transpose(1, 2).reshape(-1, channels * length)
    if conv.linear.bias is None:
        out = weight @ gathered
    else:
        out = torch.addmm(conv.linear.bias[:, None], weight, gathered)
    return out.reshape(-1, vertices, frames)


# ---- slots ----------------------------------------------------------------------------------

def farthest_points(vertices: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` vertices of ``vertices [V, 3]`` spread by farthest-point
    sampling from vertex 0 (deterministic)."""
    chosen = [0]
    distance = np.linalg.norm(vertices - vertices[0], axis=1)
    for _ in range(1, count):
        nxt = int(np.argmax(distance))
        chosen.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(vertices - vertices[nxt], axis=1))
    return np.asarray(chosen, dtype=np.int64)


def slot_logits(vertices: np.ndarray, count: int) -> torch.Tensor:
    """``[K, V]`` initial logits: ``-d^2 / (2 sigma^2)`` from each of ``K`` farthest-point
    centres, with ``sigma`` the mean distance from a centre to its nearest other centre."""
    vertices = np.asarray(vertices, dtype=np.float64)
    count = min(int(count), len(vertices))
    centres = vertices[farthest_points(vertices, count)]
    d2 = ((centres[:, None] - vertices[None]) ** 2).sum(-1)  # [K, V]
    if count > 1:
        between = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(-1))
        np.fill_diagonal(between, np.inf)
        sigma = float(between.min(axis=1).mean())
    else:
        sigma = float(np.sqrt(d2.max()) or 1.0)
    sigma = max(sigma, 1e-6)
    return torch.from_numpy(-d2 / (2.0 * sigma ** 2)).float()


def displacement_slot_weights(vertices: np.ndarray, slots: int) -> torch.Tensor:
    """``[3, K, V]`` initial weights of displacement slots over ``vertices [V, 3]``: one
    weighting of the raw displacement a coordinate, each started as the Gaussian blobs of
    :func:`slot_logits` (at most ``V`` slots)."""
    blobs = torch.softmax(slot_logits(vertices, slots), dim=1)
    return blobs[None].repeat(3, 1, 1).contiguous()


def read_displacement_slots(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Displacement ``x [3, V, N]`` read through slot ``weights [3, K, V]``: ``[3 K, N]``."""
    return torch.matmul(weights.to(x.dtype), x).reshape(-1, x.shape[-1])


class SlotPooling(nn.Module):
    """``[C, V, N] -> [C, K, N]``: each slot a learned weighting of the vertices.

    The weights start as a softmax over the vertices around the slot's centre (a
    weighted mean) and are free after that, so a slot can also learn contrasts such as
    upper lip minus lower lip, which a mean cancels."""

    def __init__(self, vertices: np.ndarray, slots: int):
        super().__init__()
        self.weight = nn.Parameter(torch.softmax(slot_logits(vertices, slots), dim=1).contiguous())  # [K, V]

    @property
    def num_slots(self) -> int:
        return int(self.weight.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.weight.to(x.dtype), x)


class SlotScatter(nn.Module):
    """``[C, K, N] -> [C, V, N]``: each vertex a learned weighting of the slots.

    The weights start as each vertex's softmax over the slot blobs but are free after
    that (they may turn negative or grow): a vertex on the lower lip can learn to follow
    a slot that its neighbour on the upper lip ignores, which a convex mixture learns
    far more slowly."""

    def __init__(self, vertices: np.ndarray, slots: int):
        super().__init__()
        self.weight = nn.Parameter(torch.softmax(slot_logits(vertices, slots).t(), dim=1).contiguous())  # [V, K]

    @property
    def num_slots(self) -> int:
        return int(self.weight.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.weight.to(x.dtype), x)


# ---- pyramid plumbing -----------------------------------------------------------------------

class SamplingMatrix(nn.Module):
    """A pyramid's sparse ``[V_out, V_in]`` matrix kept as dense index and value buffers
    (they move with ``.to(device)`` and broadcast under DDP, which sparse buffers do
    not), applied with :func:`sparse_vertex_matmul` over the vertex axis of
    ``[C, V_in, N]``, giving ``[C, V_out, N]``."""

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        matrix = matrix.coalesce()
        self.register_buffer("indices", matrix.indices().clone(), persistent=False)
        self.register_buffer("values", matrix.values().clone().float(), persistent=False)
        self.shape = tuple(int(s) for s in matrix.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        matrix = torch.sparse_coo_tensor(self.indices, self.values.to(x.dtype), self.shape, is_coalesced=True,
                                         check_invariants=False)
        return sparse_vertex_matmul(matrix, x)  # [C, V, N]: vertices second to last, frames as channels


def per_frame(function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int | None) -> torch.Tensor:
    """``function`` over ``x [N, ...]`` in chunks of ``chunk`` items. While gradients are
    recorded, each chunk is checkpointed (recomputed in the backward pass), so the
    spiral gathers of only one chunk are alive at a time: peak memory bounded by the
    chunk instead of the batch, for about a third more compute. ``None``: one piece."""
    if chunk is None or x.shape[0] <= chunk:
        return function(x)
    pieces = []
    for start in range(0, x.shape[0], chunk):
        piece = x[start:start + chunk]
        if torch.is_grad_enabled():
            pieces.append(checkpoint(function, piece, use_reentrant=False))
        else:
            pieces.append(function(piece))
    return torch.cat(pieces, dim=0)


# ---- spatial encoder and decoder ------------------------------------------------------------

class MeshEncoder(nn.Module):
    """Frames' displacements ``[N, V, 3]`` -> one vector a frame ``[N, hidden]``.

    Level ``i``: ``ELU(SpiralConv(c_{i-1} -> c_i))`` (``c_{-1} = 3``), slot pooling of the
    result, then the averaging matrix to level ``i + 1``. The slots of all levels are
    concatenated and fused by a linear layer."""

    def __init__(self, pyramid: MeshPyramid, spirals: list[np.ndarray], channels: list[int], slots: list[int],
                 hidden: int, displacement_slots: int = 0):
        super().__init__()
        levels = len(pyramid.levels)
        # Displacement slots: learned weightings of the raw full-resolution displacement, one
        # a coordinate (the encoder's side of the decoder's displacement slots); they see
        # small, local motion (eyelids, lip rims) before any convolution or averaging.
        self.displacement_readout = None
        if displacement_slots > 0:
            self.displacement_readout = nn.Parameter(
                displacement_slot_weights(pyramid.levels[0][0], displacement_slots))  # [3, K, V]
        self.convs = nn.ModuleList()
        self.pools = nn.ModuleList()
        previous = 3
        for level in range(levels):
            self.convs.append(SpiralConv(previous, channels[level], spirals[level]))
            self.pools.append(SlotPooling(pyramid.levels[level][0], slots[level]))
            previous = channels[level]
        self.down = nn.ModuleList(SamplingMatrix(m) for m in pyramid.down)
        pooled = sum(pool.num_slots * c for pool, c in zip(self.pools, channels))
        if self.displacement_readout is not None:
            pooled += 3 * self.displacement_readout.shape[1]
        self.fuse = nn.Linear(pooled, hidden)

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        frames = motion.shape[0]
        x = motion.permute(2, 1, 0).contiguous()  # [3, V, N]
        pooled = []
        if self.displacement_readout is not None:
            pooled.append(read_displacement_slots(self.displacement_readout, x))  # [3 K, N]
        for level, (conv, pool) in enumerate(zip(self.convs, self.pools)):
            x = F.elu(spiral_conv_channels_first(conv, x))
            pooled.append(pool(x).reshape(-1, frames))  # [C_i * K_i, N]
            if level < len(self.down):
                x = self.down[level](x)
        return self.fuse(torch.cat(pooled, dim=0).t())


class RegionEncoder(nn.Module):
    """Frames' displacements ``[N, V, 3]`` -> ``[N, hidden]`` from one region's vertices
    alone (e.g. the upper face): learned displacement slots over the region (one set a
    coordinate, started as Gaussian blobs) and a two-layer MLP.

    Why: a latent part computed from the whole face spends its code on the lips, whose
    motion is ten times larger; eyelid and brow motion then vanishes in quantisation
    even though the continuous latents carry it. A part that sees only the region has
    nothing else to encode, so its codes must tell blinks and brows apart."""

    def __init__(self, vertices: np.ndarray, indices: np.ndarray, slots: int, hidden: int):
        super().__init__()
        indices = np.asarray(indices, dtype=np.int64)
        self.register_buffer("indices", torch.from_numpy(indices), persistent=False)
        self.readout = nn.Parameter(displacement_slot_weights(np.asarray(vertices)[indices], slots))  # [3, K, V_region]
        self.mlp = nn.Sequential(nn.Linear(3 * self.readout.shape[1], hidden), nn.GELU(), nn.Linear(hidden, hidden))

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        x = motion[:, self.indices].permute(2, 1, 0)  # [3, V_region, N]
        return self.mlp(read_displacement_slots(self.readout, x).t())


class LinearMeshEncoder(nn.Module):
    """The ablation of :class:`MeshEncoder`: one linear layer from the flattened frame
    ``[N, V, 3]`` to ``[N, hidden]`` (CodeTalker's motion embedding), no graph."""

    def __init__(self, num_vertices: int, hidden: int):
        super().__init__()
        self.linear = nn.Linear(num_vertices * 3, hidden)

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        return self.linear(motion.reshape(motion.shape[0], -1))


class MeshDecoder(nn.Module):
    """One vector a frame ``[N, hidden]`` -> the frames' displacements ``[N, V, 3]``.

    A linear layer gives the coarsest level's vertex features; at each level ``i`` from
    coarse to fine, ``ELU(SpiralConv(c_i -> c_{i-1}))``, the barycentric up-sampling to
    level ``i - 1``, plus the frame vector scattered over that level's vertices by
    learned slot weights. Every level also has a zero-initialised per-vertex head that
    outputs a displacement; the displacement is up-sampled with the features and each
    finer level adds its own (a Laplacian pyramid): coarse levels say how the face
    moves, fine levels add detail, and the loss reaches every level directly, which makes
    the deep, narrow path train several times faster. An untrained decoder outputs the
    template."""

    def __init__(self, pyramid: MeshPyramid, spirals: list[np.ndarray], channels: list[int], slots: list[int],
                 hidden: int, displacement_slots: int = 0):
        super().__init__()
        levels = len(pyramid.levels)
        coarsest = levels - 1
        self.coarse_vertices = pyramid.num_vertices[coarsest]
        self.coarse_channels = channels[coarsest]
        self.coarse = nn.Linear(hidden, self.coarse_channels * self.coarse_vertices)
        self.convs = nn.ModuleList()  # convs[k] runs at level coarsest - k
        self.up = nn.ModuleList()
        self.scatters = nn.ModuleList()
        self.slot_features = nn.ModuleList()
        for level in range(coarsest, 0, -1):
            self.convs.append(SpiralConv(channels[level], channels[level - 1], spirals[level]))
            self.up.append(SamplingMatrix(pyramid.up[level - 1]))
            scatter = SlotScatter(pyramid.levels[level - 1][0], slots[level - 1])
            self.scatters.append(scatter)
            self.slot_features.append(nn.Linear(hidden, channels[level - 1] * scatter.num_slots))
        # heads[k] at level coarsest - k, the last at full resolution. Per vertex, not a
        # spiral: at full resolution a spiral gather of c_0 channels would be the model's
        # most expensive layer, and the up-sampling already mixes neighbours.
        self.heads = nn.ModuleList(nn.Linear(channels[level], 3) for level in range(coarsest, -1, -1))
        for head in self.heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        # Displacement slots at full resolution: K scalars a frame, each moving every vertex
        # along its own learned 3-D direction (a low-rank linear map, like blendshapes). The
        # pyramid cannot carry what decimation merges (two lips that touch at rest move
        # apart); these can. Zero-initialised.
        self.displacement_slots = None
        if displacement_slots > 0:
            self.displacement_slots = nn.Linear(hidden, displacement_slots)
            self.slot_directions = nn.Parameter(torch.zeros(3, pyramid.num_vertices[0], displacement_slots))

    @staticmethod
    def _head(head: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        """Per-vertex ``[C, V, N] -> [3, V, N]`` (one matrix product)."""
        channels, vertices, frames = x.shape
        return torch.addmm(head.bias[:, None], head.weight, x.reshape(channels, vertices * frames)).reshape(3, vertices, frames)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        frames = h.shape[0]
        x = self.coarse(h).reshape(frames, self.coarse_channels, self.coarse_vertices).permute(1, 2, 0).contiguous()
        x = F.elu(x)
        displacement = self._head(self.heads[0], x)
        for k, (conv, up, scatter, slot_features) in enumerate(zip(self.convs, self.up, self.scatters, self.slot_features)):
            # one up-sampling for features and displacement together
            both = up(torch.cat([F.elu(spiral_conv_channels_first(conv, x)), displacement], dim=0))
            x, displacement = both[:-3], both[-3:]
            slots = slot_features(h).reshape(frames, -1, scatter.num_slots).permute(1, 2, 0)  # [C, K, N]
            x = F.elu(x + scatter(slots))
            displacement = displacement + self._head(self.heads[k + 1], x)
        if self.displacement_slots is not None:
            displacement = displacement + torch.matmul(self.slot_directions, self.displacement_slots(h).t())  # [3, V, N]
        return displacement.permute(2, 1, 0)  # [N, V, 3]


# ---- temporal parts -------------------------------------------------------------------------

def pad_to_multiple(x: torch.Tensor, mask: torch.Tensor | None, multiple: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad ``x [B, T, ...]`` in time to a multiple of ``multiple`` frames; the mask
    ``[B, T]`` (all True if None) is padded with False."""
    batch, frames = x.shape[:2]
    if mask is None:
        mask = torch.ones(batch, frames, dtype=torch.bool, device=x.device)
    extra = (-frames) % multiple
    if extra:
        x = torch.cat([x, x.new_zeros((batch, extra) + tuple(x.shape[2:]))], dim=1)
        mask = torch.cat([mask, mask.new_zeros(batch, extra)], dim=1)
    return x, mask.bool()


def downsample_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """``[B, T]`` -> ``[B, T / factor]``: a latent frame is real when any of its frames is."""
    if factor == 1:
        return mask.bool()
    return mask.reshape(mask.shape[0], -1, factor).any(dim=2)


class GraphMotionVQVAE(nn.Module):
    """Motion ``[B, T, V, 3]`` (metres) <-> latents ``[B, T / 2^q, parts, code_dim]``.

    Also keeps per-channel running statistics of the quantised latents (``latent_mean``,
    ``latent_std`` ``[code_dim]``), updated while stage 1 trains, which stage 2 uses to
    give the diffusion model unit-variance targets."""

    def __init__(self, pyramid: MeshPyramid, spirals: list[np.ndarray], cfg: dict[str, Any],
                 region_vertices: dict[str, np.ndarray] | None = None):
        super().__init__()
        levels = len(pyramid.levels)
        channels = [int(c) for c in cfg["mesh_channels"]]
        slots = [int(s) for s in cfg["pool_slots"]]
        if len(channels) != levels or len(slots) != levels:
            raise VoxmeshError(
                f"mesh_channels ({len(channels)} values) and pool_slots ({len(slots)} values) need one value a pyramid "
                f"level, and pyramid_factors {list(cfg['pyramid_factors'])} give {levels} levels; make them agree."
            )
        hidden = int(cfg["hidden_dim"])
        self.num_parts = int(cfg["num_parts"])
        self.code_dim = int(cfg["code_dim"])
        self.downsample = int(cfg["temporal_downsample"])
        self.factor = 2 ** self.downsample
        self.motion_scale = float(cfg["motion_scale"])
        self.chunk = None if cfg["mesh_chunk_frames"] is None else int(cfg["mesh_chunk_frames"])
        self.stats_momentum = float(cfg["latent_stats_momentum"])
        layers, heads, ff, dropout = int(cfg["vq_layers"]), int(cfg["vq_heads"]), int(cfg["vq_ff_dim"]), float(cfg["vq_dropout"])

        if cfg["mesh_encoder"] == "pyramid":
            self.mesh_encoder = MeshEncoder(pyramid, spirals, channels, slots, hidden, int(cfg["displacement_slots"]))
        elif cfg["mesh_encoder"] == "linear":
            self.mesh_encoder = LinearMeshEncoder(pyramid.num_vertices[0], hidden)
        else:
            raise VoxmeshError(f"GLDiTalker mesh_encoder '{cfg['mesh_encoder']}' is unknown; use pyramid or linear.")
        self.temporal_down = nn.ModuleList(nn.Conv1d(hidden, hidden, 4, stride=2, padding=1) for _ in range(self.downsample))
        self.encoder_transformer = TemporalTransformer(hidden, layers, heads, ff, dropout)
        # Region parts: the last latent vectors of a frame, each group computed from one
        # region's motion alone (RegionEncoder); the first ``global_parts`` see the whole face.
        self.region_parts = {str(name): int(count) for name, count in dict(cfg["region_parts"]).items()}
        self.global_parts = self.num_parts - sum(self.region_parts.values())
        if self.global_parts < 1 or any(count < 1 for count in self.region_parts.values()):
            raise VoxmeshError(
                f"GLDiTalker region_parts {self.region_parts} must give each region at least one part and leave at "
                f"least one of the num_parts ({self.num_parts}) for the whole face; raise num_parts or lower the counts."
            )
        region_vertices = region_vertices or {}
        self.region_encoders = nn.ModuleDict()
        self.region_down = nn.ModuleDict()
        self.region_to_latent = nn.ModuleDict()
        for name, count in self.region_parts.items():
            self.region_encoders[name] = RegionEncoder(pyramid.levels[0][0], region_vertices[name],
                                                       int(cfg["region_slots"]), hidden)
            self.region_down[name] = nn.ModuleList(nn.Conv1d(hidden, hidden, 4, stride=2, padding=1)
                                                   for _ in range(self.downsample))
            self.region_to_latent[name] = nn.Linear(hidden, count * self.code_dim)
        self.to_latent = nn.Linear(hidden, self.global_parts * self.code_dim)
        self.quantizer = VectorQuantizer(int(cfg["num_codes"]), self.code_dim, beta=float(cfg["beta"]),
                                         ema_decay=cfg["ema_decay"], dead_code_threshold=float(cfg["dead_code_threshold"]))
        self.from_latent = nn.Linear(self.num_parts * self.code_dim, hidden)
        self.decoder_transformer = TemporalTransformer(hidden, layers, heads, ff, dropout)
        self.temporal_up = nn.ModuleList(nn.Conv1d(hidden, hidden, 3, padding=1) for _ in range(self.downsample))
        self.mesh_decoder = MeshDecoder(pyramid, spirals, channels, slots, hidden, int(cfg["displacement_slots"]))

        # Stage-1 training steps taken; the first ``vq_warmup_steps`` train without quantising.
        self.warmup_steps = int(cfg["vq_warmup_steps"])
        self.register_buffer("training_steps", torch.zeros((), dtype=torch.long))
        # False until the codebook has been set from a training batch's latents
        self.register_buffer("codebook_initialised", torch.zeros((), dtype=torch.bool))
        self.register_buffer("latent_mean", torch.zeros(self.code_dim))
        self.register_buffer("latent_std", torch.ones(self.code_dim))
        self.register_buffer("latent_count", torch.zeros(()))

    # ---- encode / quantise / decode ----------------------------------------------------------
    def encode(self, motion: torch.Tensor, frame_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous latents ``[B, T', P, D]`` and their mask ``[B, T']`` for motion
        ``[B, T, V, 3]`` (T' = ceil(T / 2^q); padded frames are zeroed first)."""
        motion, mask = pad_to_multiple(motion, frame_mask, self.factor)
        batch, frames = motion.shape[:2]
        motion = motion * (mask[..., None, None].to(motion.dtype) * self.motion_scale)
        flat = motion.reshape(batch * frames, *motion.shape[2:])
        h = per_frame(self.mesh_encoder, flat, self.chunk).reshape(batch, frames, -1)
        h, latent_mask = self._downsample(h, mask, self.temporal_down)
        h = self.encoder_transformer(h, latent_mask)
        latent_frames = h.shape[1]
        parts = [self.to_latent(h).reshape(batch, latent_frames, self.global_parts, self.code_dim)]
        for name, count in self.region_parts.items():
            r = self.region_encoders[name](flat).reshape(batch, frames, -1)
            r, _ = self._downsample(r, mask, self.region_down[name])
            parts.append(self.region_to_latent[name](r).reshape(batch, latent_frames, count, self.code_dim))
        z = torch.cat(parts, dim=2)
        # Each latent vector normalised (zero mean, unit variance over its code_dim): the
        # encoder cannot satisfy the commitment loss by shrinking its outputs onto a few
        # codes, the usual way a VQ-VAE's codebook collapses.
        return F.layer_norm(z, (self.code_dim,)), latent_mask

    @staticmethod
    def _downsample(h: torch.Tensor, mask: torch.Tensor, convs: nn.ModuleList) -> tuple[torch.Tensor, torch.Tensor]:
        """``h [B, T, C]`` through the strided convolutions (each halves time), padding zeroed
        first; the result and its mask."""
        for conv in convs:
            h = h * mask[..., None].to(h.dtype)
            mask = downsample_mask(mask, 2)
            h = F.gelu(conv(h.transpose(1, 2)).transpose(1, 2))
        return h, mask

    @property
    def warming_up(self) -> bool:
        """True during the first ``vq_warmup_steps`` training steps of stage 1, when the
        autoencoder trains without its quantiser (see :meth:`GLDiTalker._vqvae_losses`)."""
        return int(self.training_steps) < self.warmup_steps

    def quantize(self, z: torch.Tensor, latent_mask: torch.Tensor | None = None, update: bool = True) -> Quantized:
        """Quantise ``z [B, T', P, D]`` (see :class:`VectorQuantizer`)."""
        mask = None if latent_mask is None else latent_mask[..., None].expand(z.shape[:3])
        if self.training and update and not bool(self.codebook_initialised):
            self._initialise_codebook(z, mask)
        return self.quantizer(z, mask, update=update)

    @torch.no_grad()
    def _initialise_codebook(self, z: torch.Tensor, mask: torch.Tensor | None) -> None:
        """Codes set to random latents of the first quantised training batch
        (:meth:`VectorQuantizer.initialise_from`)."""
        flat = z.detach().reshape(-1, self.code_dim)
        if mask is not None:
            flat = flat[mask.reshape(-1)]
        if self.quantizer.initialise_from(flat):
            self.codebook_initialised.fill_(True)

    def decode(self, codes: torch.Tensor, latent_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Motion ``[B, T' * 2^q, V, 3]`` in metres from latents ``[B, T', P, D]``."""
        batch, frames = codes.shape[:2]
        h = self.decoder_transformer(self.from_latent(codes.reshape(batch, frames, -1)), latent_mask)
        for conv in self.temporal_up:
            h = F.interpolate(h.transpose(1, 2), scale_factor=2, mode="nearest")
            h = F.gelu(conv(h)).transpose(1, 2)
        out_frames = h.shape[1]
        motion = per_frame(self.mesh_decoder, h.reshape(batch * out_frames, -1), self.chunk)
        return motion.reshape(batch, out_frames, *motion.shape[1:]) / self.motion_scale

    # ---- latent statistics ---------------------------------------------------------------------
    @torch.no_grad()
    def update_latent_stats(self, codes: torch.Tensor, latent_mask: torch.Tensor) -> None:
        """Fold the quantised latents ``[B, T', P, D]`` of a training batch into the
        running per-channel mean and std (a plain average over the first batches, then
        an exponential average with ``latent_stats_momentum``)."""
        flat = codes.detach().float()[latent_mask.bool()].reshape(-1, self.code_dim)
        fold_running_stats(self.latent_mean, self.latent_std, self.latent_count, flat, self.stats_momentum)

    def normalize(self, codes: torch.Tensor) -> torch.Tensor:
        """Latents ``[..., D]`` -> zero mean, unit variance per channel."""
        return (codes - self.latent_mean) / self.latent_std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`."""
        return x * self.latent_std + self.latent_mean


__all__ = ["GraphMotionVQVAE", "LinearMeshEncoder", "MeshDecoder", "MeshEncoder", "RegionEncoder", "SlotPooling",
           "SlotScatter", "per_frame", "spiral_conv_channels_first"]

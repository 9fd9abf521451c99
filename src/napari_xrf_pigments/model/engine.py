"""Fast CPU inference for networks made by :func:`~.architecture.build_model`.

The trained Keras model is turned into one compiled function (XLA on TensorFlow, ``jax.jit`` on
JAX) that takes counts on the model grid and returns probabilities. It computes the same
function as the Keras model (up to float32 rounding), with less work:

- preprocessing (count scaling, Eq. 1, max normalisation:
  :func:`~napari_xrf_pigments.preprocess.transform_ops`) runs inside the graph, fused;
- batch normalisation (inference) is a per-channel affine ``s*x + t`` fused with LeakyReLU and
  max-pooling into one pass over each activation, instead of several full passes;
- the single-channel first convolution is computed as a few broadcast multiply-adds at the even
  and odd positions and pooled on the fly, so its full-resolution output never reaches memory;
- kernel-3 convolutions use Winograd F(6,3) (Lavin & Gray 2016): 8 channel-mixing matrix
  products per 6 outputs instead of 18, 2.25x fewer multiply-adds than the direct convolution.
  Probabilities agree with the Keras model to ~1e-7 (checked on first use by
  :class:`.predictor.Predictor`, which falls back to Keras if they do not).

Only ``keras.ops`` is used in the graph, so it runs on any Keras backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..preprocess import transform_ops

#: Outputs per Winograd tile. F(6,3) measured fastest on the 2-core CPU (F(4,3) ~6 % slower,
#: F(8,3) ~30 % slower: its transforms cost more than the products they save).
TILE = 6


def winograd_matrices(m: int, r: int = 3):
    """Toom-Cook matrices of Winograd F(m, r) for cross-correlation (float64).

    ``y = AT @ ((G @ g) * (BT @ d))`` gives the m outputs ``y[i] = sum_k d[i+k] g[k]`` of an
    r-tap kernel ``g`` over ``m + r - 1`` inputs ``d``. Interpolation points: 0, +-1, +-2,
    +-1/2, ... and infinity.

    Returns
    -------
    AT : (m, n), G : (n, r), BT : (n, n) with n = m + r - 1
    """
    n = m + r - 1
    candidates = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 4.0, -4.0, 0.25, -0.25]
    points = candidates[: n - 1]

    def rows(k):  # evaluation of a degree k-1 polynomial at the points, then at infinity
        return np.array([[p**j for j in range(k)] for p in points] + [[0.0] * (k - 1) + [1.0]])

    # Linear convolution is V^-1 diag(E_g g) E_x; correlation is its transpose.
    return rows(m).T, rows(r), np.linalg.inv(rows(n)).T


@dataclass
class _ConvLayer:
    kind: str  # "direct" (1 input channel), "winograd" (kernel 3) or "im2col"
    weights: np.ndarray  # direct: (k, cout); winograd: (TILE+2, cin, cout); im2col: (k*cin, cout)
    bias: np.ndarray  # (cout,)
    kernel_size: int
    pad: tuple[int, int]
    slope: float  # LeakyReLU negative slope
    scale: np.ndarray  # folded batch norm, (cout,)
    shift: np.ndarray  # (cout,)
    pool: bool


@dataclass
class FoldedNetwork:
    """Inference form of a pigment CNN: convolutions with folded batch norms, and heads."""

    n_channels: int
    layers: list[_ConvLayer]
    # output name -> (weights (features, n_pigments), bias (n_pigments,))
    heads: dict[str, tuple[np.ndarray, np.ndarray]]


def fold(keras_model) -> FoldedNetwork | None:
    """Read a :func:`build_model` network into a :class:`FoldedNetwork`.

    Returns None when the network has another structure (the caller then runs Keras itself).
    """
    # lazy: keras loads TensorFlow/JAX
    import keras
    from keras import layers as L

    seq = [layer for layer in keras_model.layers if not isinstance(layer, L.InputLayer)]
    shape = tuple(keras_model.input_shape)
    if len(shape) != 3 or shape[2] != 1 or shape[1] is None:
        return None
    convs = []
    i = 0
    try:
        while True:
            conv, act, norm = seq[i], seq[i + 1], seq[i + 2]
            if not (
                isinstance(conv, L.Conv1D)
                and isinstance(act, L.LeakyReLU)
                and isinstance(norm, L.BatchNormalization)
            ):
                return None
            if (
                tuple(conv.strides) != (1,)
                or tuple(conv.dilation_rate) != (1,)
                or conv.groups != 1
                or conv.padding not in ("same", "valid")
                or conv.data_format != "channels_last"
                or conv.activation.__name__ != "linear"
                or norm.axis not in (-1, 2)
            ):
                return None
            nxt = seq[i + 3]
            pool = isinstance(nxt, L.MaxPooling1D)
            if pool and (
                tuple(nxt.pool_size) != (2,) or tuple(nxt.strides) != (2,) or nxt.padding != "valid"
            ):
                return None
            convs.append(_fold_conv(conv, act, norm, pool))
            i += 4 if pool else 3
            if not pool:
                break
        if not isinstance(seq[i], L.Flatten):
            return None
        i += 1
        if i < len(seq) and isinstance(seq[i], L.Dropout):
            i += 1
        heads = {}
        for dense in seq[i:]:
            if not isinstance(dense, L.Dense) or dense.activation.__name__ != "sigmoid":
                return None
            if not dense.use_bias:
                return None
            w = keras.ops.convert_to_numpy(dense.kernel)
            b = keras.ops.convert_to_numpy(dense.bias)
            heads[dense.name] = (np.asarray(w, np.float32), np.asarray(b, np.float32))
    except IndexError:
        return None
    if not heads or set(heads) != set(keras_model.output_names):
        return None
    return FoldedNetwork(int(shape[1]), convs, heads)


def _fold_conv(conv, act, norm, pool) -> _ConvLayer:
    import keras

    w = np.asarray(keras.ops.convert_to_numpy(conv.kernel), dtype=np.float64)  # (k, cin, cout)
    b = (
        np.asarray(keras.ops.convert_to_numpy(conv.bias), dtype=np.float64)
        if conv.use_bias
        else np.zeros(w.shape[2])
    )
    k, cin, cout = w.shape
    gamma = np.asarray(keras.ops.convert_to_numpy(norm.gamma)) if norm.scale else np.ones(cout)
    beta = np.asarray(keras.ops.convert_to_numpy(norm.beta)) if norm.center else np.zeros(cout)
    mean = np.asarray(keras.ops.convert_to_numpy(norm.moving_mean))
    var = np.asarray(keras.ops.convert_to_numpy(norm.moving_variance))
    scale = gamma / np.sqrt(var + norm.epsilon)
    shift = beta - mean * scale
    # Keras "same" padding for stride 1: k-1 zeros in all, the smaller half on the left.
    pad = ((k - 1) // 2, k - 1 - (k - 1) // 2) if conv.padding == "same" else (0, 0)
    if cin == 1:
        kind, weights = "direct", w[:, 0, :]
    elif k == 3:
        kind, weights = "winograd", np.einsum("jk,kio->jio", winograd_matrices(TILE)[1], w)
    else:
        kind, weights = "im2col", w.reshape(k * cin, cout)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return _ConvLayer(
        kind, f32(weights), f32(b), k, pad, float(act.negative_slope), f32(scale), f32(shift), pool
    )


def make_forward(net: FoldedNetwork, *, reference_counts: float):
    """The inference function ``counts (B, n_channels) float32 -> {output: (B, n_pigments)}``.

    Uses only ``keras.ops``; compile it with the backend's JIT (see :func:`compile_forward`).
    """
    from keras import ops

    consts = []
    for layer in net.layers:
        consts.append(
            {
                "w": ops.convert_to_tensor(layer.weights),
                "b": ops.convert_to_tensor(layer.bias),
                "s": ops.convert_to_tensor(layer.scale),
                "t": ops.convert_to_tensor(layer.shift),
            }
        )
    heads = {
        k: (ops.convert_to_tensor(w), ops.convert_to_tensor(b)) for k, (w, b) in net.heads.items()
    }
    ref = float(reference_counts)

    def activate(y, layer, c):
        return ops.leaky_relu(y, negative_slope=layer.slope) * c["s"] + c["t"]

    def direct(x, layer, c):
        # x (B, L) single channel; output (B, L_out[/2], cout)
        k = layer.kernel_size
        xp = ops.pad(x, [[0, 0], [layer.pad[0], layer.pad[1]]])
        n_out = x.shape[1] + layer.pad[0] + layer.pad[1] - k + 1
        if layer.pool:
            n = n_out // 2

            def at(offset):
                z = c["b"]
                for j in range(k):
                    z = z + xp[:, offset + j : offset + j + 2 * n : 2, None] * c["w"][j]
                return activate(z, layer, c)

            return ops.maximum(at(0), at(1))
        z = c["b"]
        for j in range(k):
            z = z + xp[:, j : j + n_out, None] * c["w"][j]
        return activate(z, layer, c)

    at, _, bt = winograd_matrices(TILE)
    n_pts = TILE + 2

    def combine(matrix, row, terms):
        return sum(float(matrix[row, i]) * terms[i] for i in range(len(terms)) if matrix[row, i])

    def winograd(h, layer, c):
        bsz, n_in, cin = h.shape
        n_out = n_in + layer.pad[0] + layer.pad[1] - 2
        tiles = -(-n_out // TILE)
        right = TILE * tiles + 2 - n_in - layer.pad[0]
        xp = ops.pad(h, [[0, 0], [layer.pad[0], right], [0, 0]])
        d = [xp[:, i : i + TILE * tiles : TILE] for i in range(n_pts)]  # each (B, tiles, cin)
        v = ops.stack([combine(bt, j, d) for j in range(n_pts)])
        m = ops.matmul(ops.reshape(v, (n_pts, bsz * tiles, cin)), c["w"])
        m = ops.reshape(m, (n_pts, bsz, tiles, -1))
        y = [activate(combine(at, r, m) + c["b"], layer, c) for r in range(TILE)]
        if layer.pool:
            # Outputs TILE*t .. TILE*t+TILE-1 pool pairwise: pooling never crosses tiles.
            pairs = [ops.maximum(y[2 * q], y[2 * q + 1]) for q in range(TILE // 2)]
            p = ops.stack(pairs, axis=2)
            return ops.reshape(p, (bsz, TILE // 2 * tiles, -1))[:, : n_out // 2]
        return ops.reshape(ops.stack(y, axis=2), (bsz, TILE * tiles, -1))[:, :n_out]

    def im2col(h, layer, c):
        bsz, n_in, cin = h.shape
        k = layer.kernel_size
        n_out = n_in + layer.pad[0] + layer.pad[1] - k + 1
        xp = ops.pad(h, [[0, 0], [layer.pad[0], layer.pad[1]], [0, 0]])
        cols = ops.concatenate([xp[:, j : j + n_out] for j in range(k)], axis=2)
        y = activate(ops.matmul(cols, c["w"]) + c["b"], layer, c)
        if layer.pool:
            n = n_out // 2
            y = ops.max(ops.reshape(y[:, : 2 * n], (bsz, n, 2, -1)), axis=2)
        return y

    def forward(counts):
        h = transform_ops(counts, reference_counts=ref)
        for layer, c in zip(net.layers, consts):
            if layer.kind == "direct":
                h = direct(h if len(h.shape) == 2 else h[..., 0], layer, c)
            elif layer.kind == "winograd":
                h = winograd(h if len(h.shape) == 3 else h[..., None], layer, c)
            else:
                h = im2col(h if len(h.shape) == 3 else h[..., None], layer, c)
        flat = ops.reshape(h, (h.shape[0], -1))
        return {name: ops.sigmoid(ops.matmul(flat, w) + b) for name, (w, b) in heads.items()}

    return forward


def compile_forward(forward, *, batch_size: int, n_channels: int, jit: bool = True):
    """Compile ``forward`` for a fixed input shape (batch_size, n_channels) float32.

    Returns a callable taking a numpy array and returning a dict of numpy arrays.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(
            forward,
            jit_compile=jit,
            input_signature=[tf.TensorSpec((batch_size, n_channels), tf.float32)],
        )
    elif backend == "jax":
        import jax

        fn = jax.jit(forward)
    else:  # torch / numpy backends: eager keras.ops
        fn = forward

    def run(x):
        out = fn(x)
        return {k: np.asarray(keras.ops.convert_to_numpy(v)) for k, v in out.items()}

    return run

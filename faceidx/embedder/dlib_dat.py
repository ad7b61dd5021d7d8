"""Parser of dlib's serialized DNN files (`.dat`), numpy only.

dlib writes a network as nested wrappers. The file opens with the loss layer
(`add_loss_layer` version, loss details), then each wrapper from the output down to the
input writes its version before its sub-network, so all wrapper versions come first
(outer to inner); then the input layer; then, from the input up, each computational
layer's details followed by its wrapper's bookkeeping (bools and cached tensors).
Tag and skip wrappers write only their version: the graph's topology (which tag an
`add_prev` or `skip` refers to) lives in the C++ type, not in the file, so the caller
supplies the architecture (faceidx/embedder/resnet.py) and checks the layer sequence.

Primitives (dlib/serialize.h, dlib/float_details.h, dlib/dnn/tensor.h):
- integer: a control byte (number of magnitude bytes in the low nibble, 0x80 when
  negative), then the magnitude, little-endian;
- bool: the byte b'1' or b'0'; string: length (integer) then the raw bytes;
- float/double: mantissa (int64) then exponent (int16), value = mantissa * 2**exponent,
  with exponent 32000/32001/32002 meaning +inf/-inf/NaN;
- tensor: version 2, then n, k, rows, cols, then n*k*rows*cols little-endian float32;
- alias tensor (a view): version 1, then n, k, rows, cols, and no data.

Every error names the file and raises faceidx.errors.DataError.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceidx.errors import DataError

FLOAT_INF, FLOAT_NINF, FLOAT_NAN = 32000, 32001, 32002
INPUT_LAYERS = ("input_rgb_image_sized", "input_rgb_image")
ADD_LAYER_VERSION = 2  # general add_layer; tag and skip wrappers write version 1


class DatReader:
    """A cursor over the bytes of a dlib serialized file; every read checks bounds."""

    def __init__(self, data: bytes, path: str | os.PathLike = "<bytes>"):
        self.data = memoryview(data)
        self.pos = 0
        self.path = os.fspath(path)

    def fail(self, message: str) -> DataError:
        return DataError(f"not a valid dlib model file: {message} (at byte {self.pos})", self.path)

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"truncated: wanted {n} bytes, {len(self.data) - self.pos} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def int(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self.take(size), "little") if size else 0
        return -value if control & 0x80 else value

    def bool(self) -> bool:
        byte = self.take(1)[0]
        if byte not in (ord("0"), ord("1")):
            raise self.fail(f"bad bool byte 0x{byte:02x}")
        return byte == ord("1")

    def float(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        if exponent == FLOAT_INF:
            return math.inf
        if exponent == FLOAT_NINF:
            return -math.inf
        if exponent == FLOAT_NAN:
            return math.nan
        if not -32768 <= exponent < FLOAT_INF:
            raise self.fail(f"bad float exponent {exponent}")
        return math.ldexp(float(mantissa), exponent)

    def string(self, max_len: int = 1 << 16) -> str:
        n = self.int()
        if not 0 <= n <= max_len:
            raise self.fail(f"bad string length {n}")
        raw = bytes(self.take(n))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError as err:
            raise self.fail(f"non-ASCII string {raw[:20]!r}") from err

    def peek_string(self) -> str | None:
        """The string at the cursor if one can be read there, else None; never moves."""
        start = self.pos
        try:
            return self.string(max_len=64)
        except DataError:
            return None
        finally:
            self.pos = start

    def dims(self) -> tuple[int, int, int, int]:
        dims = tuple(self.int() for _ in range(4))
        if any(d < 0 for d in dims):
            raise self.fail(f"negative tensor dimension {dims}")
        return dims  # type: ignore[return-value]

    def tensor(self) -> np.ndarray:
        """A tensor as float32 (n, k, rows, cols), a copy owned by numpy."""
        version = self.int()
        if version != 2:
            raise self.fail(f"unsupported tensor version {version} (expected 2)")
        dims = self.dims()
        count = dims[0] * dims[1] * dims[2] * dims[3]
        raw = self.take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dims)

    def alias(self) -> tuple[int, int, int, int]:
        """An alias tensor (a view into a parameter tensor): its dimensions only."""
        version = self.int()
        if version != 1:
            raise self.fail(f"unsupported alias tensor version {version} (expected 1)")
        return self.dims()


@dataclass
class DatLayer:
    """One computational layer, input side first.

    `kind` is the layer family ("con", "affine", "relu", "max_pool", "avg_pool",
    "add_prev", "fc"), `tag` the name dlib wrote ("con_4", "fc_2"...), `attrs` its
    hyper-parameters, `arrays` its weights as float32 arrays in torch's layout:
    con: weight (out, in, kh, kw) and bias (out,); affine: gamma (k,), beta (k,);
    fc: weight (in, out) as dlib stores it (y = x @ W) and bias (out,) when it has one.
    """

    kind: str
    tag: str
    attrs: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)


@dataclass
class DatNetwork:
    """A parsed dlib network: loss, input, wrapper versions (outer first), layers (input first)."""

    path: str
    loss: dict
    input: dict
    wrapper_versions: list[int]
    layers: list[DatLayer]

    def num_params(self) -> int:
        return sum(int(a.size) for layer in self.layers for a in layer.arrays.values())


def _read_loss(r: DatReader) -> dict:
    tag = r.string()
    if tag == "loss_metric_2":
        return {"tag": tag, "margin": r.float(), "distance_threshold": r.float()}
    if tag == "loss_metric_":
        return {"tag": tag}
    raise r.fail(f"unsupported loss layer {tag!r}")


def _read_input(r: DatReader) -> dict:
    tag = r.string()
    if tag not in INPUT_LAYERS:
        raise r.fail(f"unsupported input layer {tag!r}")
    means = (r.float(), r.float(), r.float())
    out = {"tag": tag, "mean_rgb": means}
    if tag == "input_rgb_image_sized":
        out["rows"], out["cols"] = r.int(), r.int()
    return out


def _split_params(r: DatReader, params: np.ndarray, views: list[tuple[str, tuple]]) -> dict:
    """Cut a flat parameter tensor into the named alias views, in order."""
    flat = params.reshape(-1)
    out, offset = {}, 0
    for name, dims in views:
        size = dims[0] * dims[1] * dims[2] * dims[3]
        if offset + size > flat.size:
            raise r.fail(f"view {name} {dims} overruns a parameter tensor of {flat.size} floats")
        out[name] = flat[offset:offset + size].reshape(dims)
        offset += size
    if offset != flat.size:
        raise r.fail(f"parameter tensor has {flat.size} floats, its views use {offset}")
    return out


def _read_con(r: DatReader, tag: str) -> DatLayer:
    params = r.tensor()
    attrs = {"filters": r.int(), "rows": r.int(), "cols": r.int(), "stride_y": r.int(),
             "stride_x": r.int(), "padding_y": r.int(), "padding_x": r.int()}
    views = [("weight", r.alias()), ("bias", r.alias())]
    for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        attrs[name] = r.float()
    parts = _split_params(r, params, views)
    weight = parts["weight"]
    if weight.shape[0] != attrs["filters"] or weight.shape[2:] != (attrs["rows"], attrs["cols"]):
        raise r.fail(f"{tag} filter view {weight.shape} disagrees with its attributes {attrs}")
    return DatLayer("con", tag, attrs, {"weight": weight, "bias": parts["bias"].reshape(-1)})


def _read_affine(r: DatReader, tag: str) -> DatLayer:
    params = r.tensor()
    views = [("gamma", r.alias()), ("beta", r.alias())]
    attrs = {"mode": r.int()}
    parts = _split_params(r, params, views)
    return DatLayer("affine", tag, attrs,
                    {"gamma": parts["gamma"].reshape(-1), "beta": parts["beta"].reshape(-1)})


def _read_pool(r: DatReader, tag: str) -> DatLayer:
    attrs = {"rows": r.int(), "cols": r.int(), "stride_y": r.int(), "stride_x": r.int(),
             "padding_y": r.int(), "padding_x": r.int()}
    return DatLayer(tag.rsplit("_", 1)[0], tag, attrs)


def _read_fc(r: DatReader, tag: str) -> DatLayer:
    attrs = {"outputs": r.int(), "inputs": r.int()}
    params = r.tensor()
    views = [("weight", r.alias()), ("bias", r.alias())]
    attrs["bias_mode"] = r.int()  # 0: has bias, 1: no bias
    for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        attrs[name] = r.float()
    parts = _split_params(r, params, views)
    weight = parts["weight"].reshape(attrs["inputs"], attrs["outputs"])
    arrays = {"weight": weight}
    if parts["bias"].size:
        arrays["bias"] = parts["bias"].reshape(-1)
    return DatLayer("fc", tag, attrs, arrays)


_READERS = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "max_pool_2": _read_pool,
    "avg_pool_2": _read_pool,
    "fc_2": _read_fc,
    "relu_": lambda r, tag: DatLayer("relu", tag),
    "add_prev_": lambda r, tag: DatLayer("add_prev", tag),
}


def _read_layer(r: DatReader) -> DatLayer:
    tag = r.string()
    reader = _READERS.get(tag)
    if reader is None:
        raise r.fail(f"unsupported layer {tag!r} (known: {', '.join(sorted(_READERS))})")
    return reader(r, tag)


def _read_add_layer_state(r: DatReader, version: int, over_input: bool) -> None:
    """Skip an add_layer's bookkeeping after its details: 3 bools and cached tensors."""
    for _ in range(3):
        r.bool()
    r.tensor()  # x_grad
    r.tensor()  # cached_output
    if over_input:
        r.tensor()  # grad_final
        if version >= 3:
            r.int()  # sample expansion factor
    elif version >= 2:
        r.tensor()  # params_grad


def parse_dat_bytes(data: bytes, path: str | os.PathLike = "<bytes>") -> DatNetwork:
    """Parse a whole serialized dlib network (loss layer outermost) from `data`."""
    r = DatReader(data, path)
    if r.int() != 1:
        raise r.fail("expected add_loss_layer version 1 at the start")
    loss = _read_loss(r)
    versions: list[int] = []
    while r.peek_string() not in INPUT_LAYERS:
        version = r.int()
        if version not in (1, 2, 3):
            raise r.fail(f"unexpected wrapper version {version}")
        versions.append(version)
        if len(versions) > 100_000:
            raise r.fail("no input layer found")
    if not versions or versions[-1] not in (2, 3):
        raise r.fail("the input layer is not wrapped by an add_layer")
    inp = _read_input(r)
    layers = [_read_layer(r)]
    _read_add_layer_state(r, versions[-1], over_input=True)
    for version in reversed(versions[:-1]):
        if version != ADD_LAYER_VERSION:
            continue  # tag or skip wrapper: nothing after its sub-network
        layers.append(_read_layer(r))
        _read_add_layer_state(r, version, over_input=False)
    if not r.at_end():
        raise r.fail(f"{len(r.data) - r.pos} unexpected bytes after the network")
    return DatNetwork(os.fspath(path), loss, inp, versions, layers)


def parse_dat(path: str | os.PathLike) -> DatNetwork:
    """Read and parse a dlib `.dat` network file; DataError naming it when missing or damaged."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise DataError("model file not found", path) from err
    except OSError as err:
        raise DataError(f"cannot read model file: {err.strerror or err}", path) from err
    if not data:
        raise DataError("model file is empty", path)
    return parse_dat_bytes(data, path)

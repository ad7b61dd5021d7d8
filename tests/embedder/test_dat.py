"""dlib .dat parser: primitives on hand-made bytes, a tiny whole network, damaged files."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from faceidx.embedder.dlib_dat import DatReader, parse_dat, parse_dat_bytes
from faceidx.errors import DataError


# --- a naive writer, following dlib/serialize.h's description, to build test bytes ---
def w_int(v: int) -> bytes:
    mag = abs(v)
    body = bytearray()
    while True:
        body.append(mag & 0xFF)
        mag >>= 8
        if mag == 0:
            break
    return bytes([len(body) | (0x80 if v < 0 else 0)]) + bytes(body)


def w_float(v: float) -> bytes:
    if v == 0:
        return w_int(0) + w_int(11)  # dlib writes a double zero as mantissa 0, exponent 11
    mant, exp = math.frexp(v)
    m = int(mant * (1 << 53))
    e = exp - 53
    while m & 0xFF == 0:
        m >>= 8
        e += 8
    return w_int(m) + w_int(e)


def w_str(s: str) -> bytes:
    return w_int(len(s)) + s.encode()


def w_tensor(a: np.ndarray) -> bytes:
    a = np.asarray(a, dtype="<f4")
    dims = a.shape + (1,) * (4 - a.ndim)
    return w_int(2) + b"".join(w_int(d) for d in dims) + a.tobytes()


def w_alias(*dims: int) -> bytes:
    dims = dims + (1,) * (4 - len(dims))
    return w_int(1) + b"".join(w_int(d) for d in dims)


EMPTY = w_tensor(np.zeros((0, 0, 0, 0), np.float32))


@pytest.mark.parametrize("value", [0, 1, 2, 127, 128, 255, 256, 4736, 2**31 - 1, 2**40 + 5,
                                   -1, -28, -255, -256, -(2**33)])
def test_int_round_trip(value):
    r = DatReader(w_int(value))
    assert r.int() == value
    assert r.at_end()


def test_int_known_bytes():
    # Bytes read from the real model file: 4736 (con params), -28 (float exponent).
    assert DatReader(b"\x02\x80\x12").int() == 4736
    assert DatReader(b"\x81\x1c").int() == -28
    assert DatReader(b"\x01\x00").int() == 0


@pytest.mark.parametrize("value", [0.0, 1.0, -1.0, 0.04, 0.6, 122.782, -3.5e-7, 1e30])
def test_float_round_trip(value):
    r = DatReader(w_float(value))
    assert r.float() == pytest.approx(value, rel=1e-15, abs=0)


def test_float_mantissa_comes_first():
    # 0xa3d70a * 2**-28 == 0.04 (the metric loss margin in the real file)
    assert DatReader(b"\x03\x0a\xd7\xa3\x81\x1c").float() == pytest.approx(0.04, rel=1e-7)


def test_float_special_values():
    assert DatReader(w_int(0) + w_int(32000)).float() == math.inf
    assert DatReader(w_int(0) + w_int(32001)).float() == -math.inf
    assert math.isnan(DatReader(w_int(0) + w_int(32002)).float())


def test_bool_string_tensor_alias():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) - 7.5
    data = b"1" + b"0" + w_str("con_4") + w_tensor(a) + w_alias(32, 3, 7, 7)
    r = DatReader(data)
    assert r.bool() is True and r.bool() is False
    assert r.string() == "con_4"
    t = r.tensor()
    assert t.dtype == np.float32 and t.shape == (2, 3, 2, 2)
    np.testing.assert_array_equal(t, a)
    assert r.alias() == (32, 3, 7, 7)
    assert r.at_end()


def test_tensor_is_little_endian_float32():
    raw = w_int(2) + b"".join(w_int(d) for d in (1, 1, 1, 2)) + struct.pack("<ff", 1.5, -2.25)
    np.testing.assert_array_equal(DatReader(raw).tensor().ravel(), [1.5, -2.25])


@pytest.mark.parametrize("data, what", [
    (b"", "truncated"), (b"\x03\x01", "truncated"), (b"\x19", "control byte"),
])
def test_bad_ints(data, what):
    with pytest.raises(DataError, match=what):
        DatReader(data, "x.dat").int()


def test_bad_bool_and_truncated_tensor():
    with pytest.raises(DataError, match="bool"):
        DatReader(b"2").bool()
    raw = w_int(2) + b"".join(w_int(d) for d in (1, 1, 1, 4)) + b"\0" * 12
    with pytest.raises(DataError, match="truncated"):
        DatReader(raw).tensor()


# --- a tiny whole network in dlib's nesting: loss(fc(relu(con(input)))) -----------------
def tiny_network(rng) -> tuple[bytes, dict]:
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    fc = rng.normal(size=(4, 2)).astype(np.float32)
    state = b"110" + EMPTY + EMPTY + EMPTY  # add_layer v2 bookkeeping
    data = (
        w_int(1) + w_str("loss_metric_2") + w_float(0.04) + w_float(0.6)  # add_loss_layer
        + w_int(2) + w_int(2) + w_int(3)  # add_layer(fc), add_layer(relu), add_layer(con, input)
        + w_str("input_rgb_image_sized") + w_float(122.782) + w_float(117.001)
        + w_float(104.298) + w_int(150) + w_int(150)
        + w_str("con_4") + w_tensor(np.concatenate([w.ravel(), b]))
        + b"".join(w_int(v) for v in (4, 3, 3, 1, 1, 1, 1))
        + w_alias(4, 3, 3, 3) + w_alias(1, 4) + w_float(1) + w_float(1) + w_float(1) + w_float(0)
        + b"110" + EMPTY + EMPTY + EMPTY + w_int(1)  # over-input add_layer v3
        + w_str("relu_") + state
        + w_str("fc_2") + w_int(2) + w_int(4) + w_tensor(fc.reshape(4, 2, 1, 1))
        + w_alias(4, 2) + w_alias(0, 0, 0, 0) + w_int(1)
        + w_float(1) + w_float(1) + w_float(1) + w_float(0) + state
    )
    return data, {"w": w, "b": b, "fc": fc}


def test_parse_tiny_network():
    data, ref = tiny_network(np.random.default_rng(0))
    net = parse_dat_bytes(data, "tiny.dat")
    assert net.loss == {"tag": "loss_metric_2", "margin": pytest.approx(0.04),
                        "distance_threshold": pytest.approx(0.6)}
    assert net.input["mean_rgb"] == pytest.approx((122.782, 117.001, 104.298))
    assert (net.input["rows"], net.input["cols"]) == (150, 150)
    assert [layer.kind for layer in net.layers] == ["con", "relu", "fc"]
    con, _, fc = net.layers
    assert con.attrs["filters"] == 4 and con.attrs["padding_y"] == 1
    np.testing.assert_array_equal(con.arrays["weight"], ref["w"])
    np.testing.assert_array_equal(con.arrays["bias"], ref["b"])
    np.testing.assert_array_equal(fc.arrays["weight"], ref["fc"])
    assert "bias" not in fc.arrays
    assert net.num_params() == ref["w"].size + ref["b"].size + ref["fc"].size


def test_tiny_network_damaged(tmp_path):
    data, _ = tiny_network(np.random.default_rng(1))
    for cut in (1, 30, len(data) // 2, len(data) - 1):
        with pytest.raises(DataError, match="tiny.dat"):
            parse_dat_bytes(data[:cut], "tiny.dat")
    with pytest.raises(DataError, match="unexpected bytes"):
        parse_dat_bytes(data + b"\x00", "tiny.dat")
    bad = data.replace(b"relu_", b"relux")
    with pytest.raises(DataError, match="unsupported layer 'relux'"):
        parse_dat_bytes(bad, "tiny.dat")


def test_missing_empty_and_garbage_files(tmp_path):
    with pytest.raises(DataError, match="not found") as err:
        parse_dat(tmp_path / "nope.dat")
    assert "nope.dat" in str(err.value)
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.dat: model file is empty"):
        parse_dat(empty)
    garbage = tmp_path / "garbage.dat"
    garbage.write_bytes(b"<html>not a model</html>")
    with pytest.raises(DataError, match="garbage.dat"):
        parse_dat(garbage)


def test_real_model_file():
    from faceidx.embedder.weights import dlib_resnet_path

    net = parse_dat(dlib_resnet_path())
    kinds = [layer.kind for layer in net.layers]
    assert kinds.count("con") == 29 and kinds.count("affine") == 29
    assert kinds.count("add_prev") == 14 and kinds[-1] == "fc"
    assert net.num_params() == 5_614_592
    assert net.loss["distance_threshold"] == pytest.approx(0.6)


def test_real_model_truncated_names_file(tmp_path):
    from faceidx.embedder.weights import dlib_resnet_path

    data = dlib_resnet_path().read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="cut.dat.*truncated"):
        parse_dat(cut)

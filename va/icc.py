"""ICC profiles va writes itself: the RGB space a HEIF image's ``nclx`` box names (its primaries), as
the matrix-and-curves profile littleCMS converts from (ICC.1, version 2 layout)."""

from __future__ import annotations

import struct

#: The white of the profile connection space (D50), as ICC profiles state it.
D50 = (0.9642, 1.0, 0.8249)
#: The Bradford cone response matrix, by which a colour is adapted from one white to another (the
#: adaptation ICC profiles make their colorants with).
BRADFORD = ((0.8951, 0.2664, -0.1614), (-0.7502, 1.7135, 0.0367), (0.0389, -0.0685, 1.0296))

Matrix = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]
Triple = tuple[float, float, float]


def _xyz(x: float, y: float) -> Triple:
    """The XYZ of chromaticity ``x, y`` at luminance 1."""
    return (x / y, 1.0, (1 - x - y) / y)


def _inverse(m: Matrix) -> Matrix:
    (a, b, c), (d, e, f), (g, h, i) = m
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    return (
        ((e * i - f * h) / det, (c * h - b * i) / det, (b * f - c * e) / det),
        ((f * g - d * i) / det, (a * i - c * g) / det, (c * d - a * f) / det),
        ((d * h - e * g) / det, (b * g - a * h) / det, (a * e - b * d) / det),
    )


def _apply(m: Matrix, v: Triple) -> Triple:
    return (
        m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
        m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
        m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2],
    )


def colorants(primaries: list[tuple[float, float]], white: tuple[float, float]) -> list[Triple]:
    """The XYZ of full red, green and blue of an RGB space of ``primaries`` (x, y each) and ``white``
    (x, y), adapted (Bradford) to D50: the colorants (``rXYZ``, ``gXYZ``, ``bXYZ``) of its profile."""
    red, green, blue = (_xyz(x, y) for x, y in primaries)
    to_xyz: Matrix = (
        (red[0], green[0], blue[0]),
        (red[1], green[1], blue[1]),
        (red[2], green[2], blue[2]),
    )
    scale = _apply(_inverse(to_xyz), _xyz(*white))  # each primary's luminance, so that they add up to white
    source_cone, d50_cone = _apply(BRADFORD, _xyz(*white)), _apply(BRADFORD, D50)
    back = _inverse(BRADFORD)
    adapted = []
    for column, factor in zip((red, green, blue), scale, strict=True):
        cone = _apply(BRADFORD, (column[0] * factor, column[1] * factor, column[2] * factor))
        gained = (
            cone[0] * d50_cone[0] / source_cone[0],
            cone[1] * d50_cone[1] / source_cone[1],
            cone[2] * d50_cone[2] / source_cone[2],
        )
        adapted.append(_apply(back, gained))
    return adapted


def _s15(value: float) -> bytes:
    """An ICC ``s15Fixed16Number``."""
    return struct.pack(">i", round(value * 65536))


def srgb_curve(points: int = 1024) -> list[int]:
    """The sRGB tone curve (IEC 61966-2-1), sampled as an ICC ``curv`` table."""
    curve = []
    for index in range(points):
        value = index / (points - 1)
        linear = value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4
        curve.append(round(linear * 65535))
    return curve


def matrix_profile(name: str, rgb_colorants: list[Triple], gamma: float | None = None) -> bytes:
    """An ICC v2 RGB display profile: a matrix of ``rgb_colorants`` (D50) and three curves, a ``gamma``
    or (None) the sRGB curve, as phones and cameras embed in their pictures."""
    xyz = [b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in triple) for triple in (D50, *rgb_colorants)]
    curve = srgb_curve() if gamma is None else [round(gamma * 256)]
    trc = b"curv\0\0\0\0" + struct.pack(f">I{len(curve)}H", len(curve), *curve)
    text = f"{name}\0".encode()
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67)
    tags = [
        (b"desc", desc),
        (b"cprt", b"text\0\0\0\0" + b"No copyright, use freely\0"),
        (b"wtpt", xyz[0]),
        (b"rXYZ", xyz[1]),
        (b"gXYZ", xyz[2]),
        (b"bXYZ", xyz[3]),
        (b"rTRC", trc),
        (b"gTRC", trc),
        (b"bTRC", trc),
    ]
    table, data, placed = b"", b"", {}  # a body several tags share (the three curves) is written once
    for signature, body in tags:
        if body not in placed:
            placed[body] = 128 + 4 + 12 * len(tags) + len(data)
            data += body + bytes(-len(body) % 4)
        table += signature + struct.pack(">II", placed[body], len(body))
    size = 128 + 4 + len(table) + len(data)
    header = struct.pack(">I4sI4s4s4s", size, b"lcms", 0x02100000, b"mntr", b"RGB ", b"XYZ ")
    header += bytes(12) + b"acsp" + bytes(4 + 4 + 4 + 4 + 8) + struct.pack(">I", 0)
    header += b"".join(_s15(v) for v in D50)
    header += bytes(128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + data


#: ``nclx`` colour primaries (ITU-T H.273) taken as sRGB's, as viewers take them: BT.709 (1) and
#: unspecified (2).
SRGB_PRIMARIES = frozenset({1, 2})
#: ``nclx`` transfer characteristics of SDR pictures (BT.709 and its kin, unspecified, sRGB), whose
#: samples are display-encoded as sRGB's are; HDR ones (PQ, HLG) are not converted by a profile.
SDR_TRANSFERS = frozenset({1, 2, 6, 13, 14, 15})


def nclx_profile(nclx: dict[str, object]) -> bytes | None:
    """The ICC profile of the RGB space a HEIF image's ``nclx`` box names (pillow-heif's ``nclx_profile``:
    its primaries' and white's chromaticities), with the sRGB curve, as the picture's samples are
    display-encoded; None for BT.709's primaries, which are sRGB's, for an HDR transfer, and for a box
    without them."""
    primaries, transfer = nclx.get("color_primaries"), nclx.get("transfer_characteristics")
    if primaries in SRGB_PRIMARIES or transfer not in SDR_TRANSFERS:
        return None
    try:
        points = [
            (float(str(nclx[f"color_primary_{name}_x"])), float(str(nclx[f"color_primary_{name}_y"])))
            for name in ("red", "green", "blue", "white")
        ]
    except (KeyError, ValueError):
        return None
    if any(y <= 0 for _, y in points):
        return None
    return matrix_profile(f"nclx primaries {primaries}", colorants(points[:3], points[3]))

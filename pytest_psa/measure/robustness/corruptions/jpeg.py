"""A batched JPEG round trip in torch that reproduces libjpeg(-turbo)'s pixels bit for bit.

JPEG's loss is all in the arithmetic before and after the (lossless) Huffman stage, so encode + decode
is: RGB -> YCbCr (16-bit fixed point), 2 x 2 chroma averaging with libjpeg's 1, 2, 1, 2 rounding bias,
"islow" integer forward DCT, quantization with the quality-scaled Annex K tables, dequantization,
"islow" integer inverse DCT, "fancy" triangle-filter chroma upsampling and YCbCr -> RGB. That is the
pipeline PIL (``Image.save(format="JPEG", quality=q)`` then ``Image.open``) and torchvision run with their
default settings: 4:2:0, baseline tables, islow DCT both ways, fancy upsampling. This module implements
it from the IJG/libjpeg-turbo algorithm descriptions (jccolor, jcsample, jfdctint, jcdctmgr, jidctint,
jdsample, jdcolor), not from their code.

Each integer DCT pass is a linear map with integer coefficients followed by a rounding shift; the maps
are derived once from the butterflies below and applied as float64 matrix products, which are exact for
integers far below 2**53. Everything is elementwise or GEMM, so it batches and runs on CUDA.

Only images whose height and width are multiples of 16 take this path (32, 64 and 224 px do); other
sizes need libjpeg's edge padding rules and go through the library instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

__all__ = ["jpeg_round_trip", "quant_tables", "supports"]

_CONST_BITS = 13
_PASS1_BITS = 2
# FIX(x) = round(x * 2**13) as libjpeg tabulates them
_C = {
    "0_298631336": 2446, "0_390180644": 3196, "0_541196100": 4433, "0_765366865": 6270,
    "0_899976223": 7373, "1_175875602": 9633, "1_501321110": 12299, "1_847759065": 15137,
    "1_961570560": 16069, "2_053119869": 16819, "2_562915447": 20995, "3_072711026": 25172,
}  # fmt: skip

# JPEG Annex K tables, natural (row-major) order
_LUMA = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]  # fmt: skip
_CHROMA = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
] + [99] * 32  # fmt: skip


def supports(height: int, width: int) -> bool:
    """Whether this path reproduces libjpeg for the size (whole 16 x 16 MCUs, no edge padding)."""
    return height % 16 == 0 and width % 16 == 0 and height > 0 and width > 0


def quant_tables(quality: int) -> tuple[list[int], list[int]]:
    """jpeg_set_quality(quality, force_baseline=TRUE): Annex K tables scaled, clamped to [1, 255]."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    def scaled(table: list[int]) -> list[int]:
        return [min(max((v * scale + 50) // 100, 1), 255) for v in table]
    return scaled(_LUMA), scaled(_CHROMA)


# -- the islow butterflies, on any "number" type (Python ints for deriving matrices) ---------------------


def _fdct_1d(d: list[int]) -> list[int]:
    """jfdctint's pass before descaling: outputs 0 and 4 are exact, the rest get rounded later."""
    tmp0, tmp7 = d[0] + d[7], d[0] - d[7]
    tmp1, tmp6 = d[1] + d[6], d[1] - d[6]
    tmp2, tmp5 = d[2] + d[5], d[2] - d[5]
    tmp3, tmp4 = d[3] + d[4], d[3] - d[4]
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
    out = [0] * 8  # every entry is set below
    out[0], out[4] = tmp10 + tmp11, tmp10 - tmp11
    z1 = (tmp12 + tmp13) * _C["0_541196100"]
    out[2] = z1 + tmp13 * _C["0_765366865"]
    out[6] = z1 + tmp12 * (-_C["1_847759065"])
    z1, z2, z3, z4 = tmp4 + tmp7, tmp5 + tmp6, tmp4 + tmp6, tmp5 + tmp7
    z5 = (z3 + z4) * _C["1_175875602"]
    tmp4, tmp5 = tmp4 * _C["0_298631336"], tmp5 * _C["2_053119869"]
    tmp6, tmp7 = tmp6 * _C["3_072711026"], tmp7 * _C["1_501321110"]
    z1, z2 = z1 * (-_C["0_899976223"]), z2 * (-_C["2_562915447"])
    z3, z4 = z3 * (-_C["1_961570560"]) + z5, z4 * (-_C["0_390180644"]) + z5
    out[7], out[5] = tmp4 + z1 + z3, tmp5 + z2 + z4
    out[3], out[1] = tmp6 + z2 + z3, tmp7 + z1 + z4
    return out


def _idct_1d(d: list[int]) -> list[int]:
    """jidctint's pass before descaling (all eight outputs are rounded by the same shift)."""
    z1 = (d[2] + d[6]) * _C["0_541196100"]
    tmp2 = z1 + d[6] * (-_C["1_847759065"])
    tmp3 = z1 + d[2] * _C["0_765366865"]
    tmp0 = (d[0] + d[4]) * (1 << _CONST_BITS)
    tmp1 = (d[0] - d[4]) * (1 << _CONST_BITS)
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
    t0, t1, t2, t3 = d[7], d[5], d[3], d[1]
    z1, z2, z3, z4 = t0 + t3, t1 + t2, t0 + t2, t1 + t3
    z5 = (z3 + z4) * _C["1_175875602"]
    t0, t1 = t0 * _C["0_298631336"], t1 * _C["2_053119869"]
    t2, t3 = t2 * _C["3_072711026"], t3 * _C["1_501321110"]
    z1, z2 = z1 * (-_C["0_899976223"]), z2 * (-_C["2_562915447"])
    z3, z4 = z3 * (-_C["1_961570560"]) + z5, z4 * (-_C["0_390180644"]) + z5
    t0, t1, t2, t3 = t0 + z1 + z3, t1 + z2 + z4, t2 + z2 + z3, t3 + z1 + z4
    return [tmp10 + t3, tmp11 + t2, tmp12 + t1, tmp13 + t0, tmp13 - t0, tmp12 - t1, tmp11 - t2, tmp10 - t3]


def _matrix(butterfly: Callable[[list[int]], list[int]]) -> list[list[int]]:
    """M[k][j]: output k of the (linear) butterfly for the unit input e_j."""
    columns = [butterfly([1 if i == j else 0 for i in range(8)]) for j in range(8)]
    return [[columns[j][k] for j in range(8)] for k in range(8)]


@functools.lru_cache(maxsize=8)
def _operators(device: str) -> dict[str, torch.Tensor]:
    f = torch.tensor(_matrix(_fdct_1d), dtype=torch.float64)
    i = torch.tensor(_matrix(_idct_1d), dtype=torch.float64)
    # forward pass 1: rows 0/4 are shifted left by PASS1_BITS, the others descaled by 11 bits
    f1 = f.clone()
    f1[[0, 4]] *= 1 << _PASS1_BITS
    shift_f1 = torch.tensor([0, 11, 11, 11, 0, 11, 11, 11], dtype=torch.float64)
    shift_f2 = torch.tensor([2, 15, 15, 15, 2, 15, 15, 15], dtype=torch.float64)
    ops = {"f1": f1, "f2": f, "i": i, "shift_f1": shift_f1, "shift_f2": shift_f2}
    return {k: v.to(device) for k, v in ops.items()}


def _descale(x: torch.Tensor, bits: torch.Tensor | int) -> torch.Tensor:
    """libjpeg's DESCALE, (x + 2**(n-1)) >> n = floor((x + half) * 2**-n), in place on ``x``; n = 0
    leaves x as is. Multiplying by a power of two is exact in float64."""
    if isinstance(bits, int):
        return x.add_(float(1 << (bits - 1))).mul_(2.0**-bits).floor_()
    half = torch.where(bits > 0, torch.exp2(bits - 1), torch.zeros_like(bits))
    return x.add_(half).mul_(torch.exp2(-bits)).floor_()


def _blocks(plane: torch.Tensor) -> torch.Tensor:
    """[B, H, W] -> [B, H/8, W/8, 8, 8]."""
    b, h, w = plane.shape
    return plane.reshape(b, h // 8, 8, w // 8, 8).transpose(2, 3)


def _unblocks(blocks: torch.Tensor) -> torch.Tensor:
    b, hb, wb, _, _ = blocks.shape
    return blocks.transpose(2, 3).reshape(b, hb * 8, wb * 8)


def _along_rows(blocks: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply ``matrix`` to every row of every 8 x 8 block (the last axis) as one large GEMM."""
    return (blocks.reshape(-1, 8) @ matrix.T).reshape(blocks.shape)


def _transpose(blocks: torch.Tensor) -> torch.Tensor:
    return blocks.transpose(-1, -2).contiguous()


def _fdct(blocks: torch.Tensor, ops: dict[str, torch.Tensor]) -> torch.Tensor:
    """jpeg_fdct_islow on centred samples: rows first, then columns (output scaled by 8).

    Returns the coefficients transposed ([.., horizontal freq, vertical freq]); _idct takes them so."""
    rows = _descale(_along_rows(blocks, ops["f1"]), ops["shift_f1"])
    return _descale(_along_rows(_transpose(rows), ops["f2"]), ops["shift_f2"])


def _idct(coefs_t: torch.Tensor, ops: dict[str, torch.Tensor]) -> torch.Tensor:
    """jpeg_idct_islow on transposed coefficients: columns first, then rows; centred samples out."""
    cols = _descale(_along_rows(coefs_t, ops["i"]), _CONST_BITS - _PASS1_BITS)
    return _descale(_along_rows(_transpose(cols), ops["i"]), _CONST_BITS + _PASS1_BITS + 3)


def _quantize(coefs: torch.Tensor, qtable: torch.Tensor) -> torch.Tensor:
    """jcdctmgr: |c| + q/2 integer-divided by q (q = 8 * table value), sign restored; then times q/8.

    Integer division as floor of a float64 quotient: exact, as |c| + q/2 < 2**20 and q <= 2040."""
    divisor = qtable * 8
    magnitude = (coefs.abs() + torch.floor(divisor / 2)).div_(divisor).floor_()
    return magnitude.copysign_(coefs).mul_(qtable)


def _code_plane(plane: torch.Tensor, qtable: torch.Tensor, ops: dict[str, torch.Tensor]) -> torch.Tensor:
    """Encode and decode one component plane [B, H, W] of samples 0..255 (H, W multiples of 8)."""
    blocks = _blocks(plane - 128.0).contiguous()
    coefs_t = _quantize(_fdct(blocks, ops), qtable.T)
    return _idct(coefs_t, ops).add_(128.0).clamp_(0.0, 255.0)


def _downsample_h2v2(plane: torch.Tensor) -> torch.Tensor:
    """jcsample h2v2: (sum of the 2 x 2 block + bias) >> 2, bias 1, 2, 1, 2 along each output row."""
    b, h, w = plane.shape
    sums = plane[:, 0::2, 0::2] + plane[:, 0::2, 1::2]
    sums += plane[:, 1::2, 0::2]
    sums += plane[:, 1::2, 1::2]
    bias = torch.tensor([1.0, 2.0], dtype=plane.dtype, device=plane.device).repeat(w // 4 + 1)[: w // 2]
    return sums.add_(bias).mul_(0.25).floor_()


def _upsample_h2v2_fancy(plane: torch.Tensor) -> torch.Tensor:
    """jdsample h2v2 fancy: vertical 3:1 mix with the nearer neighbour row, then horizontal 3:1 with
    rounding biases 8 and 7; the image edges replicate rows and use one-sided columns."""
    b, h, w = plane.shape
    # colsum rows 2r (3 * row r + row r - 1) and 2r + 1 (3 * row r + row r + 1), edges replicated
    colsum = torch.empty(b, 2 * h, w + 2, dtype=plane.dtype, device=plane.device)
    inner = colsum[:, :, 1:-1]
    torch.mul(plane, 3.0, out=inner[:, 0::2])
    inner[:, 0::2, :] += torch.cat([plane[:, :1], plane[:, :-1]], dim=1)
    torch.mul(plane, 3.0, out=inner[:, 1::2])
    inner[:, 1::2, :] += torch.cat([plane[:, 1:], plane[:, -1:]], dim=1)
    colsum[:, :, 0] = colsum[:, :, 1]  # one-sided first and last columns: (4 * c + 8) >> 4 etc.
    colsum[:, :, -1] = colsum[:, :, -2]
    out = torch.empty(b, 2 * h, 2 * w, dtype=plane.dtype, device=plane.device)
    even, odd = out[:, :, 0::2], out[:, :, 1::2]
    torch.add(colsum[:, :, :-2], 8.0, out=even)
    even.add_(inner, alpha=3.0).mul_(1.0 / 16).floor_()
    torch.add(colsum[:, :, 2:], 7.0, out=odd)
    odd.add_(inner, alpha=3.0).mul_(1.0 / 16).floor_()
    return out


def _rgb_to_ycc(rgb: torch.Tensor) -> torch.Tensor:
    """jccolor rgb_ycc_convert in 16-bit fixed point; rgb float64 integer-valued [N, 3, H, W]."""
    def fix(x: float) -> float:
        return float(int(x * 65536 + 0.5))
    weights = torch.tensor(
        [[fix(0.29900), fix(0.58700), fix(0.11400)],
         [-fix(0.16874), -fix(0.33126), fix(0.5)],
         [fix(0.5), -fix(0.41869), -fix(0.08131)]],
        dtype=torch.float64, device=rgb.device,
    )  # fmt: skip
    half, offset = 32768.0, 128.0 * 65536
    bias = torch.tensor([half, offset + half - 1, offset + half - 1], dtype=torch.float64, device=rgb.device)
    ycc = torch.empty_like(rgb)
    for k in range(3):  # exact: integer sums below 2**25
        out = ycc[:, k]
        torch.add(bias[k], rgb[:, 0], alpha=float(weights[k, 0]), out=out)
        out.add_(rgb[:, 1], alpha=float(weights[k, 1])).add_(rgb[:, 2], alpha=float(weights[k, 2]))
    return ycc.mul_(2.0**-16).floor_()


def _ycc_to_rgb(y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor) -> torch.Tensor:
    """jdcolor ycc_rgb_convert with its per-value tables, clamped to 0..255."""
    def fix(x: float) -> float:
        return float(int(x * 65536 + 0.5))
    n, h, w = y.shape
    rgb = torch.empty(n, 3, h, w, dtype=y.dtype, device=y.device)
    half = 32768.0
    for k, (wcb, wcr) in enumerate(((0.0, fix(1.40200)), (-fix(0.34414), -fix(0.71414)), (fix(1.77200), 0.0))):
        # the tables hold f(x) for x = value - 128; the constant parts fold into one offset
        out = rgb[:, k]
        torch.mul(cb, wcb, out=out)
        out.add_(cr, alpha=wcr).add_(half - 128.0 * (wcb + wcr)).mul_(2.0**-16).floor_().add_(y)
    return rgb.clamp_(0.0, 255.0)


def jpeg_round_trip(levels: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode and decode uint8-valued images ``[N, 3, H, W]`` (any float or int dtype, values 0..255)
    as libjpeg does at ``quality`` with 4:2:0 chroma; returns float64 values 0..255."""
    n, _, h, w = levels.shape
    if not supports(h, w):
        raise ValueError(f"the torch JPEG path needs sizes that are multiples of 16, got {h} x {w}")
    device = levels.device
    ops = _operators(str(device))
    luma_q, chroma_q = (
        torch.tensor(t, dtype=torch.float64, device=device).reshape(8, 8) for t in quant_tables(quality)
    )
    ycc = _rgb_to_ycc(levels.to(torch.float64))
    y = _unblocks(_code_plane(ycc[:, 0], luma_q, ops))
    chroma = _downsample_h2v2(ycc[:, 1:].reshape(n * 2, h, w))
    chroma = _unblocks(_code_plane(chroma, chroma_q, ops))
    chroma = _upsample_h2v2_fancy(chroma).reshape(n, 2, h, w)
    return _ycc_to_rgb(y, chroma[:, 0], chroma[:, 1])

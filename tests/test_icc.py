"""The ICC profiles va writes: colorants from chromaticities, and the profile a HEIF nclx box names."""

from __future__ import annotations

import io

import pytest
from PIL import ImageCms

from tests.corpus import ADOBE_RGB_COLORANTS, DISPLAY_P3_COLORANTS
from va import icc

D65 = (0.3127, 0.3290)


@pytest.mark.parametrize(
    ("primaries", "published"),
    [
        ([(0.680, 0.320), (0.265, 0.690), (0.150, 0.060)], DISPLAY_P3_COLORANTS),
        ([(0.64, 0.33), (0.21, 0.71), (0.15, 0.06)], ADOBE_RGB_COLORANTS),
    ],
    ids=["display-p3", "adobe-rgb"],
)
def test_colorants_of_primaries_are_those_the_published_profiles_hold(
    primaries: list[tuple[float, float]], published: list[tuple[float, float, float]]
) -> None:
    made = icc.colorants(primaries, D65)
    for got, want in zip(made, published, strict=True):
        assert got == pytest.approx(want, abs=2e-4)


def test_an_nclx_box_of_display_p3_makes_a_profile_littlecms_reads_and_srgb_makes_none() -> None:
    p3: dict[str, object] = {"color_primaries": 12, "transfer_characteristics": 13}
    for name, (x, y) in zip(("red", "green", "blue", "white"), _P3, strict=True):
        p3 |= {f"color_primary_{name}_x": x, f"color_primary_{name}_y": y}
    made = icc.nclx_profile(p3)
    assert made is not None
    assert ImageCms.ImageCmsProfile(io.BytesIO(made)).profile.xcolor_space == "RGB "
    assert icc.nclx_profile({**p3, "color_primaries": 1}) is None  # BT.709: sRGB's primaries
    assert icc.nclx_profile({**p3, "transfer_characteristics": 16}) is None  # PQ: HDR, no profile
    assert icc.nclx_profile({"color_primaries": 12, "transfer_characteristics": 13}) is None


_P3 = [(0.680, 0.320), (0.265, 0.690), (0.150, 0.060), D65]

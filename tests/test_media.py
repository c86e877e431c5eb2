"""The ffmpeg module on tiny real media: probing, padding, the held still, the encode."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageCms

from tests.conftest import Media, ffmpeg, ffprobe_streams, unreadable
from tests.corpus import (
    COLOUR_TOLERANCE,
    PROPHOTO_COLORANTS,
    PROPHOTO_GAMMA,
    REFERENCE_SIZE,
    adobe_rgb_profile,
    colour_errors,
    display_p3_profile,
    in_profile,
    matrix_profile,
    peak_db,
    reference_picture,
)
from va import media
from va.errors import ExitCode, VaError
from va.processes import ProcessId


@pytest.mark.parametrize(
    ("extra", "rate", "channels"),
    [
        ((), 16000, 1),
        (("-ac", "2"), 44100, 2),
        (("-ar", "48000", "-ac", "2"), 48000, 2),
        (("-c:a", "pcm_u8"), 22050, 1),
        (("-ac", "6"), 48000, 2),
    ],
    ids=["mono-16k", "stereo-44k", "stereo-48k", "8-bit", "5.1-downmixed"],
)
def test_pad_audio_is_exact_for_every_layout(
    files: Media, extra: tuple[str, ...], rate: int, channels: int
) -> None:
    source = files.tone("in.wav", 1.5, rate, *extra)
    padded = files.root / "padded.wav"
    info = media.pad_audio(source, padded, 0.5, 1.25)
    assert info.sample_rate == media.AUDIO_SAMPLE_RATE
    assert info.channels == channels
    assert info.duration_seconds == pytest.approx(1.5 + 0.5 + 1.25, abs=1e-6)


def test_padding_is_silence_before_and_after(files: Media) -> None:
    source = files.tone("in.wav", 1.0, 48000)
    padded = files.root / "padded.wav"
    media.pad_audio(source, padded, 0.5, 0.5)
    levels = subprocess.run(
        ["ffmpeg", "-v", "info", "-i", str(padded), "-af", "atrim=0:0.45,volumedetect", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    assert "max_volume: -91" in levels or "max_volume: -inf" in levels


def test_a_text_file_is_not_audio(tmp_path: Path) -> None:
    fake = tmp_path / "voice.wav"
    fake.write_text("this is not audio\n", encoding="utf-8")
    with pytest.raises(VaError) as caught:
        media.probe_audio(fake)
    assert caught.value.code == ExitCode.UNSUPPORTED_FORMAT
    assert str(fake) in caught.value.message


@pytest.mark.parametrize(
    ("size", "want", "fit"),
    [
        ((641, 481), (640, 480), "contain"),
        ((640, 480), (640, 480), "contain"),
        ((1, 1), (2, 2), "contain"),
    ],
)
def test_geometry_without_a_requested_size_keeps_the_source_made_even(
    size: tuple[int, int], want: tuple[int, int], fit: str
) -> None:
    geometry = media.plan_geometry(*size, None, None, fit)
    assert (geometry.width, geometry.height) == want


@pytest.mark.parametrize(
    ("size", "want"),
    [((8000, 8000), (5968, 5968)), ((8192, 4352), (8192, 4352)), ((8192, 4353), (8190, 4352))],
)
def test_a_start_larger_than_h264_carries_is_scaled_down_to_the_largest_frame_it_does(
    size: tuple[int, int], want: tuple[int, int]
) -> None:
    """H.264's largest frame is 139,264 macroblocks (level 6.2): without a requested size a larger
    start is scaled down to it, its aspect kept; with one, the request holds."""
    geometry = media.plan_geometry(*size, None, None, "contain")
    assert (geometry.width, geometry.height) == want
    assert -(-geometry.width // 16) * -(-geometry.height // 16) <= 139_264
    assert media.plan_geometry(*size, 8000, 8000, "contain").width == 8000


def test_a_huge_start_makes_a_still_of_the_largest_h264_frame(files: Media) -> None:
    source = files.root / "huge.png"
    ffmpeg("-f", "lavfi", "-i", "color=c=0x3366cc:s=8192x4400:d=1", "-frames:v", "1", str(source))
    info = media.probe_visual(source)
    geometry = media.plan_geometry(info.width, info.height, None, None, "contain")
    assert (geometry.width, geometry.height) == (8136, 4368)
    still = files.root / "still.png"
    media.render_still(source, still, geometry, "black")
    made = media.probe_visual(still)
    assert (made.width, made.height) == (8136, 4368)


@pytest.mark.parametrize("fit", ["contain", "cover"])
def test_requested_size_is_the_output_size(fit: str) -> None:
    geometry = media.plan_geometry(333, 777, 640, 360, fit)
    assert (geometry.width, geometry.height) == (640, 360)
    assert ("crop=640:360" in geometry.filter) == (fit == "cover")


@pytest.mark.parametrize(
    ("size", "pix_fmt", "expected"),
    [("321x241", "rgb24", (320, 240)), ("200x150", "rgba", (200, 150)), ("99x77", "pal8", (98, 76))],
    ids=["odd", "alpha", "palette-odd"],
)
def test_render_still_makes_an_even_rgb_png(
    files: Media, size: str, pix_fmt: str, expected: tuple[int, int]
) -> None:
    source = files.image(f"src-{pix_fmt}.png", size, pix_fmt)
    info = media.probe_visual(source)
    geometry = media.plan_geometry(info.width, info.height, None, None, "contain")
    still = files.root / "still.png"
    media.render_still(source, still, geometry, "black")
    out = media.probe_visual(still)
    assert (out.width, out.height) == expected
    assert out.pix_fmt == "rgb24"


def test_encode_held_still_has_the_exact_frame_count_and_contract(files: Media) -> None:
    still = files.root / "still.png"
    media.render_still(
        files.root / "start.png", still, media.plan_geometry(320, 240, None, None, "contain"), "black"
    )
    audio = files.root / "padded.wav"
    info = media.pad_audio(files.root / "voice.wav", audio, 0.0, 0.0)
    frames = round(info.duration_seconds * 30)
    final = files.root / "out.mp4"
    media.encode_held_still(still, audio, final, fps=30, frames=frames, crf=23, preset="veryfast")
    streams = ffprobe_streams(final)
    video, sound = streams["video"], streams["audio"]
    assert int(video["nb_read_frames"]) == frames
    assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
    assert video["avg_frame_rate"] == video["r_frame_rate"] == "30/1"
    assert sound["codec_name"] == "aac"
    assert abs(float(video["duration"]) - float(sound["duration"])) <= 1 / 30
    assert not [p for p in files.root.iterdir() if p.name.startswith(".encode-")]


def test_a_writer_never_removes_the_scratch_of_another_live_writer(files: Media) -> None:
    """Two writers of one output (a cluster job still running beside its re-run) each have their own
    scratch folder; a writer removes only scratch whose writer has ended (on this host)."""
    still = files.root / "still.png"
    media.render_still(
        files.root / "start.png", still, media.plan_geometry(64, 48, None, None, "contain"), "black"
    )
    target = files.root / "still.mp4"
    host = socket.gethostname()
    with subprocess.Popen(["sleep", "60"]) as live:
        writer = ProcessId.of(live.pid)
        assert writer is not None
        ended = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
        scratch = {
            "live": files.root / f".encode-still.mp4-{writer.pid}.{writer.start}@{host}+abc",
            "ended": files.root / f".encode-still.mp4-{ended.stdout.strip()}.1@{host}+def",
            "other host": files.root / f".encode-still.mp4-{writer.pid}.{writer.start}@elsewhere.node-7+ghi",
            "older va": files.root / ".encode-still.mp4-k2j4h1",
        }
        for folder in scratch.values():
            folder.mkdir()
            (folder / "still.mp4").write_bytes(b"half written")
        media.encode_still_loop(still, target, fps=25, crf=23, preset="veryfast")
        live.kill()
    assert media.count_video_packets(target) == 25 * media.KEYFRAME_INTERVAL_SECONDS
    assert scratch["live"].is_dir() and (scratch["live"] / "still.mp4").read_bytes() == b"half written"
    assert scratch["other host"].is_dir()
    assert not scratch["ended"].exists() and not scratch["older va"].exists()
    # The writer's own scratch is gone once it has published.
    assert sorted(p.name for p in files.root.glob(".encode-*")) == sorted(
        scratch[k].name for k in ("live", "other host")
    )


def test_missing_ffmpeg_is_a_dependency_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FFMPEG", "/nonexistent/ffmpeg")
    with pytest.raises(VaError) as caught:
        media.executable("ffmpeg")
    assert caught.value.code == ExitCode.DEPENDENCY_MISSING
    assert "FFMPEG=/nonexistent/ffmpeg" in caught.value.message


def test_ffprobe_on_an_unreadable_file_says_permission_denied(files: Media) -> None:
    voice = files.root / "voice.wav"
    with pytest.raises(VaError) as caught, unreadable(voice):
        media.probe_audio(voice)
    assert caught.value.code == ExitCode.INPUT_NOT_FOUND
    assert caught.value.message == f"permission denied: cannot read {voice}"


@pytest.mark.parametrize(
    ("source", "normalization", "integrated"),
    [
        ("sine=frequency=220:sample_rate=16000:duration=3,volume=-12dB", "linear", -16.0),  # range 0
        ("anullsrc=r=16000:cl=mono,atrim=duration=2", "none", -99.0),  # silence: kept as it is
        ("sine=frequency=220:sample_rate=16000:duration=0.3", "none", -99.0),  # under one gating block
    ],
    ids=["steady-tone", "silence", "too-short"],
)
def test_loudness_of_a_tone_is_a_linear_gain_and_silence_is_kept(
    files: Media, source: str, normalization: str, integrated: float
) -> None:
    voice = files.root / "v.wav"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", source, str(voice)], check=True)
    fit = media.fit_loudness(voice, media.LoudnessTarget(-16.0, -1.5))
    assert fit.normalization == normalization
    padded = files.root / "padded.wav"
    info = media.pad_audio(voice, padded, 0.5, 0.5, loudness=fit)
    assert info.duration_seconds == pytest.approx(media.decoded_duration(voice) + 1.0, abs=1e-3)
    after, _ = media.measure_loudness(padded, fit.target, window=(0.5, media.decoded_duration(voice)))
    assert after.integrated_lufs == pytest.approx(integrated, abs=0.2)


def samples(path: Path) -> list[int]:
    """The 16-bit samples of a mono WAV."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-"], capture_output=True, check=True
    ).stdout
    return [int.from_bytes(raw[i : i + 2], "little", signed=True) for i in range(0, len(raw), 2)]


def test_cut_audio_takes_the_exact_part_and_pads_it_with_silence(files: Media) -> None:
    # A click at exactly 1.5 s of a 48 kHz track; the part from 1.0 s, 1.0 s long, at 16 kHz, padded to 1.2 s.
    click = files.root / "click.wav"
    source = "aevalsrc='if(eq(n,72000),0.9,0)':s=48000:d=3"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", source, str(click)], check=True)
    part = files.root / "part.wav"
    media.cut_audio(
        click, part, start_seconds=1.0, seconds=1.0, length_seconds=1.2, sample_rate=16000, channels=1
    )
    got = samples(part)
    assert len(got) == 19200  # 1.2 s at 16 kHz
    loudest = max(range(len(got)), key=lambda i: abs(got[i]))
    assert loudest == 8000  # 0.5 s into the part: the seek is exact
    assert not any(got[16000:])  # the padding is silence


def test_detect_silences_finds_the_pauses_and_a_silence_running_to_the_end(files: Media) -> None:
    # A tone that pauses from 1.0 to 1.5 s and falls silent at 2.5 s for good.
    voice = files.tone(
        "pauses.wav", 3.0, 16000, "-af", "volume='if(between(t,1,1.5)+gte(t,2.5),0,1)':eval=frame"
    )
    found = media.detect_silences(voice, noise_db=-35, min_seconds=0.25)
    # Within one audio frame of the filter (1024 samples, 64 ms at 16 kHz), which the volume switches on.
    spans = [(s.start_seconds, s.end_seconds) for s in found]
    assert spans == [pytest.approx((1.0, 1.5), abs=0.065), pytest.approx((2.5, 3.0), abs=0.065)]


#: The same tone in every channel, at -7 dBFS: where a downmix that adds channels up would clip.
SURROUND = {
    "5.1": "pan=5.1|FL=c0|FR=c0|FC=c0|LFE=c0|BL=c0|BR=c0",
    "7.1": "pan=7.1|FL=c0|FR=c0|FC=c0|LFE=c0|BL=c0|BR=c0|SL=c0|SR=c0",
}


@pytest.mark.parametrize(("layout", "name"), [("5.1", "surround.m4a"), ("7.1", "surround.wav")])
def test_a_surround_voice_is_one_downmix_in_the_wav_and_the_aac_never_louder_than_its_source(
    files: Media, layout: str, name: str
) -> None:
    tone = "sine=frequency=300:sample_rate=48000:duration=1.5,volume=3.6"
    source = files.root / name
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            tone,
            "-af",
            SURROUND[layout],
            str(source),
        ],
        check=True,
    )
    padded, aac = files.root / "padded.wav", files.root / "padded.m4a"
    info = media.pad_audio(source, padded, 0.25, 0.25, aac=aac)
    assert info.channels == 2
    assert peak_db(padded) <= peak_db(source) + 0.1
    assert abs(peak_db(aac) - peak_db(padded)) <= 0.3
    assert peak_db(aac) <= -1.0


def test_a_very_loud_surround_voice_reaches_its_loudness_in_the_wav_and_the_aac(files: Media) -> None:
    """A 5.1 voice louder than 0 LUFS once downmixed (loudnorm takes no figure above 0) is measured as it
    is encoded, and both outputs land on the target."""
    noise = "anoisesrc=duration=2:color=white:sample_rate=48000:amplitude=1:seed=1,volume=4,alimiter=limit=1"
    source = files.root / "loud.wav"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            noise,
            "-af",
            SURROUND["5.1"],
            str(source),
        ],
        check=True,
    )
    target = media.LoudnessTarget(-16.0, -1.5)
    fit = media.fit_loudness(source, target)
    assert fit.voice.integrated_lufs > 0
    padded, aac = files.root / "padded.wav", files.root / "padded.m4a"
    media.pad_audio(source, padded, 0.5, 0.5, aac=aac, loudness=fit)
    after, _ = media.measure_loudness(padded, target, window=(0.5, 2.0))
    assert after.integrated_lufs == pytest.approx(-16.0, abs=0.5)
    assert peak_db(aac) <= -1.0


def test_a_path_with_a_percent_sign_is_that_file_never_a_numbered_sequence(files: Media) -> None:
    """``shot%d.png`` beside ``shot1.png``: ffmpeg's image2 would read the second for the first."""
    files.image("shot1.png", "64x48")
    start = files.image("shot%d.png", "80x60")
    info = media.probe_visual(start)
    assert (info.width, info.height) == (80, 60)
    still = files.root / "still.png"
    media.render_still(start, still, media.plan_geometry(80, 60, None, None, "contain"), "black")
    assert (media.probe_visual(still).width, media.probe_visual(still).height) == (80, 60)


def _colour_start(tmp_path: Path, name: str, profile: bytes | None, **options: object) -> Path:
    """The corpus's reference picture (``options["size"]``) as ``name``, in ``profile``'s colours with it
    embedded (None: sRGB values, no profile)."""
    size = options.pop("size", REFERENCE_SIZE)
    picture = reference_picture(size)  # type: ignore[arg-type]
    if profile is not None:
        picture = in_profile(picture, profile)
        options["icc_profile"] = profile
    start = tmp_path / name
    if start.suffix == ".heic":
        import pillow_heif  # noqa: PLC0415  (only HEIC starts need it)

        picture.info["icc_profile"] = options.pop("icc_profile", None)
        pillow_heif.from_pillow(picture).save(start, quality=95)
    else:
        picture.save(start, **options)
    return start


def _still_errors(start: Path, tmp_path: Path, size: tuple[int, int] | None = None) -> list[int]:
    """How far the still of ``start`` (at ``size``, else its own) is from the reference's colours."""
    info = media.probe_visual(start)
    geometry = media.plan_geometry(
        info.width, info.height, *(size or (None, None)), "contain", display=info.display_filter
    )
    still = tmp_path / "still.png"
    media.render_still(start, still, geometry, "black")
    with Image.open(still) as picture:
        assert picture.size == (geometry.width, geometry.height)
        return colour_errors(picture)


@pytest.mark.parametrize(
    ("name", "profile", "options"),
    [
        ("photo.webp", display_p3_profile(), {"lossless": True}),
        ("scan.tiff", adobe_rgb_profile(), {}),
        (
            "raw-export.jpg",
            matrix_profile("ProPhoto RGB", PROPHOTO_COLORANTS, PROPHOTO_GAMMA),
            {"quality": 95},
        ),
    ],
    ids=["webp-display-p3", "tiff-adobe-rgb", "jpeg-prophoto"],
)
def test_an_image_in_a_wide_gamut_profile_is_decoded_in_srgb(
    tmp_path: Path, name: str, profile: bytes, options: dict[str, object]
) -> None:
    """Every format Pillow reads: the profile is honoured where va decodes the picture for ffmpeg."""
    start = _colour_start(tmp_path, name, profile, **options)
    assert media.probe_visual(start).decoded_by_va
    picture = media.decoded_picture(start)
    assert picture is not None and picture.mode == "RGB"
    assert max(colour_errors(picture)) <= COLOUR_TOLERANCE, colour_errors(picture)


def test_an_image_whose_profile_is_srgb_is_read_by_ffmpeg_as_it_is(tmp_path: Path) -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    start = _colour_start(tmp_path, "camera.jpg", None, icc_profile=srgb, quality=95)
    assert not media.probe_visual(start).decoded_by_va
    assert media.decoded_picture(start) is None
    assert max(_still_errors(start, tmp_path)) <= COLOUR_TOLERANCE


def test_an_image_with_a_broken_profile_is_taken_as_srgb_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    start = _colour_start(tmp_path, "broken.png", None, icc_profile=b"not a profile at all" * 8)
    assert not media.probe_visual(start).decoded_by_va
    errors = _still_errors(start, tmp_path)
    assert max(errors) <= COLOUR_TOLERANCE, errors
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "\n" not in warned[0], warned
    assert warned[0].startswith(f"the ICC profile of {start} cannot be used (")
    assert warned[0].endswith("): its values are taken as sRGB")


def test_a_turned_transparent_image_in_display_p3_is_upright_its_alpha_kept(tmp_path: Path) -> None:
    picture = in_profile(reference_picture(), display_p3_profile()).transpose(Image.Transpose.ROTATE_90)
    picture.putalpha(200)
    exif = Image.Exif()
    exif[0x0112] = 6
    start = tmp_path / "portrait.png"
    picture.save(start, icc_profile=display_p3_profile(), exif=exif.tobytes())
    info = media.probe_visual(start)
    assert (info.width, info.height, info.has_alpha) == (*REFERENCE_SIZE, True)
    decoded = media.decoded_picture(start)
    assert decoded is not None and decoded.mode == "RGBA" and decoded.size == REFERENCE_SIZE
    assert decoded.getchannel("A").getextrema() == (200, 200)
    assert max(colour_errors(decoded)) <= COLOUR_TOLERANCE


@pytest.mark.parametrize(
    ("name", "options"),
    [("start.jpg", {"quality": 95}), ("start.png", {"compress_level": 1}), ("start.heic", {})],
)
def test_a_large_start_va_decodes_is_decoded_scaled_down_to_its_still(
    tmp_path: Path, name: str, options: dict[str, object]
) -> None:
    """A JPEG by its DCT (Pillow's draft), a PNG and a HEIC reduced as they are decoded: each side
    at least the still's, so ffmpeg only shrinks what is left; the face check's frame is the still's."""
    start = _colour_start(tmp_path, name, display_p3_profile(), size=(1280, 720), **options)
    info = media.probe_visual(start)
    geometry = media.plan_geometry(info.width, info.height, 300, 160, "contain", display=info.display_filter)
    assert media.shrink_factor(info, geometry) == 4
    picture = media.decoded_picture(start, 4)
    assert picture is not None and picture.size == (320, 180)
    assert max(_still_errors(start, tmp_path, (300, 160))) <= COLOUR_TOLERANCE
    (frame,) = media.decode_frames(start, [0], fitted=(geometry, "black"))
    checked = Image.frombytes("RGB", (frame.width, frame.height), frame.rgb)
    assert max(colour_errors(checked)) <= COLOUR_TOLERANCE


def test_a_heic_whose_nclx_box_names_display_p3_is_decoded_in_srgb(tmp_path: Path) -> None:
    """Some phones name a HEIC's colours by the primaries of its nclx box, with no ICC profile."""
    import pillow_heif  # noqa: PLC0415  (only HEIC starts need it)

    start = tmp_path / "nclx.heic"
    picture = in_profile(reference_picture(), display_p3_profile())
    del picture.info["icc_profile"]
    nclx = {"color_primaries": 12, "transfer_characteristic": 13, "matrix_coefficients": 6}
    pillow_heif.from_pillow(picture).save(start, quality=95, full_range_flag=1, **nclx)
    decoded = media.decoded_picture(start)
    assert decoded is not None
    assert max(colour_errors(decoded)) <= COLOUR_TOLERANCE, colour_errors(decoded)


def test_a_full_disk_under_an_encode_with_a_tap_names_the_mp4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An encode that also hands its frames to a tap (the sync check's) writes its MP4 to a full disk
    (/dev/full answers every write with ENOSPC): exit 32 naming the MP4, not the tap's pipe format."""
    full = tmp_path / "full" / "encoded.mp4"
    full.parent.mkdir()
    full.symlink_to("/dev/full")

    @contextlib.contextmanager
    def onto_full_disk(target: Path, *, no_clobber: bool = False) -> Iterator[Path]:
        yield full

    monkeypatch.setattr(media, "partial_file", onto_full_disk)
    taken: list[media.GreyFrame] = []
    tap = media.PictureTap(media.Crop(0, 0, 64, 48, 32, 24), taken.extend)
    source = ["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.4"]
    with pytest.raises(VaError) as raised:
        media.encode_picture(
            source, None, tmp_path / "encoded.mp4", fps=25, frames=10, crf=18, preset="veryfast", tap=tap
        )
    assert raised.value.code == ExitCode.WORKDIR_UNUSABLE
    assert raised.value.message == f"no space left on device: ffmpeg could not write {full}"

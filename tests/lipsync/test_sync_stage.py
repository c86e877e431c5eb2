"""The sync check in the lip-sync stage, in-process: the fake tool lip-syncs (``talk``: a face whose mouth
opens with the audio it is given, on time or some frames late); the stage records the verdict, a chunk
found out of sync is named and may be made once more, and the encode keeps an out-of-sync video under
another name with exit 54 (``on_fail: fail``) or publishes it (``warn``). The whole run with the check
asked for over a start without a face (no verdict, exit 0, in ``va status`` and the report) is the command
provider's in test_runs.py."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from tests.conftest import CliRunner, Media
from tests.lipsync.fakes import command
from tests.lipsync.talking_face import envelope, shifted, write_talking_face, write_voice
from tests.lipsync.test_stage import Stage, Staged, stage  # noqa: F401 - the fixture
from va import cli, stages
from va.atomic import read_json
from va.errors import ExitCode, VaError
from va.lipsync import sync
from va.lipsync.stage import check_model_picture
from va.lipsync.sync import ChunkWindow, SyncSettings
from va.plan import load_plan
from va.rule_settings import EncodeSettings, ModelSync, encode_settings
from va.runner import RunResult

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def spoken(files: Media) -> Media:
    """The job's voice.wav is speech-like: 6 s of syllables (the plan pads it with the job's buffers)."""
    write_voice(files.root / "voice.wav", envelope(6, seed=5))
    return files


def test_a_lip_synced_video_is_in_sync_and_its_track_kept(spoken: Media, stage: Stage) -> None:  # noqa: F811
    staged = stage(command("talk"), sync_check={"enable": True})
    record = staged.lipsync()["sync"]
    assert record["verdict"] == "in_sync" and abs(record["offset_frames"]) <= 1, record
    assert record["attempts"] == 1 and record["max_offset_frames"] == 2
    track = read_json(staged.run.root / "lipsync" / "sync.json")
    assert track["fps"] == 25 and len(track["mouth"]) == len(track["loudness"]) == record["frames"]
    final = staged.encode()
    assert final.exists()


def test_an_out_of_sync_video_is_kept_under_another_name_and_ends_54(spoken: Media, stage: Stage) -> None:  # noqa: F811
    staged = stage(command("talk", "--lag", "6"), sync_check={"enable": True})
    record = staged.lipsync()["sync"]
    assert record["verdict"] == "out_of_sync" and abs(record["offset_frames"] - 6) <= 1, record
    run, final = staged.run, staged.run.final(staged.job.basename)
    with pytest.raises(VaError) as raised:
        stages.encode(
            encode_settings(load_plan(run.plan)),
            run.still_loop,
            run.padded_aac,
            final,
            video=run.lipsync_output,
            lipsync_result=run.lipsync_result,
        )
    kept = run.root / "final.out-of-sync.mp4"
    assert raised.value.code == ExitCode.LIPSYNC_OUT_OF_SYNC == 54
    assert raised.value.message.startswith("lip-sync out of sync at 0.00-")
    assert "the picture lags behind the voice by" in raised.value.message
    assert f"the video is kept as {kept}, not published as final.mp4" in raised.value.message
    assert kept.exists() and not final.exists()


def _kept_encode(staged: Staged, settings: EncodeSettings | None = None) -> VaError:
    """The encode after an out-of-sync verdict (``on_fail: fail``): how it ended."""
    run = staged.run
    with pytest.raises(VaError) as raised:
        stages.encode(
            settings or encode_settings(load_plan(run.plan)),
            run.still_loop,
            run.padded_aac,
            run.final(staged.job.basename),
            video=run.lipsync_output,
            lipsync_result=run.lipsync_result,
        )
    return raised.value


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_users_out_of_sync_name_is_never_replaced(spoken: Media, stage: Stage) -> None:  # noqa: F811
    """The kept video replaces only the one this run kept before (its SHA-256 recorded): a user's file of
    that name, there before the run or put in place of the kept one, stays as it was, and the run ends 30
    saying so; the video is not published either way."""
    staged = stage(command("talk", "--lag", "6"), sync_check={"enable": True})
    assert staged.lipsync()["sync"]["verdict"] == "out_of_sync"
    run, final = staged.run, staged.run.final(staged.job.basename)
    kept = run.root / "final.out-of-sync.mp4"

    kept.write_text("USER DATA", encoding="utf-8")  # there before the run
    refused = _kept_encode(staged)
    assert refused.code == ExitCode.OUTPUT_EXISTS == 30, refused.message
    assert f"{kept} exists and is not a video this run kept" in refused.message
    assert refused.message.startswith("lip-sync out of sync at 0.00-") and "\n" not in refused.message
    assert kept.read_text(encoding="utf-8") == "USER DATA" and not final.exists()
    assert run.kept_digests() == {}  # nothing claims it (the manifest's sync.kept neither)
    kept.unlink()
    assert _kept_encode(staged).code == ExitCode.LIPSYNC_OUT_OF_SYNC  # kept
    assert run.kept_digests() == {kept.name: {_sha256(kept)}}
    first = kept.stat().st_ino
    assert _kept_encode(staged).code == ExitCode.LIPSYNC_OUT_OF_SYNC  # the run's own from before: replaced
    assert kept.stat().st_ino != first and kept.read_bytes()[4:8] == b"ftyp"
    kept.write_text("USER DATA", encoding="utf-8")  # put in place of the kept one
    assert _kept_encode(staged).code == ExitCode.OUTPUT_EXISTS
    assert kept.read_text(encoding="utf-8") == "USER DATA" and not final.exists()
    assert not [p.name for p in run.root.iterdir() if p.name.startswith(".encode-")]  # no partial left


def test_a_kept_video_is_replaced_by_a_different_one(spoken: Media, stage: Stage) -> None:  # noqa: F811
    """A later attempt that makes other bytes (another crf here; a new lip-sync result, captions) replaces
    the video kept before, and the one after it that one: each is checked against the digest recorded
    before its encode, and the record then holds the new one's alone."""
    staged = stage(command("talk", "--lag", "6"), sync_check={"enable": True})
    assert staged.lipsync()["sync"]["verdict"] == "out_of_sync"
    run, kept = staged.run, staged.run.kept_final(staged.job.basename)
    settings = encode_settings(load_plan(run.plan))
    encoding = settings.picture.encoding
    other = dataclasses.replace(
        settings,
        picture=dataclasses.replace(
            settings.picture, encoding=dataclasses.replace(encoding, crf=encoding.crf + 5)
        ),
    )
    digests = []
    for each in (settings, other, settings):
        ended = _kept_encode(staged, each)
        assert ended.code == ExitCode.LIPSYNC_OUT_OF_SYNC == 54, ended.message
        digests.append(_sha256(kept))
        assert run.kept_digests() == {kept.name: {digests[-1]}}
    assert digests[0] != digests[1] != digests[2]
    assert not run.final(staged.job.basename).exists()


def test_a_file_put_at_the_kept_name_while_it_is_checked_is_kept(
    spoken: Media,
    stage: Stage,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kept video is moved aside in one step before it is removed and what was moved is checked: a
    user's file that took the name after the last check goes back to its name (exit 30); one that took it
    while the moved file was checked leaves the moved one beside it, under a name of its own, said."""
    staged = stage(command("talk", "--lag", "6"), sync_check={"enable": True})
    assert staged.lipsync()["sync"]["verdict"] == "out_of_sync"
    run, kept = staged.run, staged.run.kept_final(staged.job.basename)
    assert _kept_encode(staged).code == ExitCode.LIPSYNC_OUT_OF_SYNC
    ours = run.kept_digests()
    real = stages._sha256
    hashed: list[Path] = []
    saves: dict[int, str] = {}  # the hash (1: the kept file before the encode, 2: the new video, 3: the
    # kept file after it, 4: what was moved aside) during which the user saves a file at the kept name

    def hashed_while_the_user_saves(path: Path) -> str:
        digest = real(path)
        hashed.append(path)
        if text := saves.get(len(hashed)):
            user = kept.with_name("user.tmp")
            user.write_text(text, encoding="utf-8")
            user.replace(kept)  # as an editor saves: in one step, over the name
        return digest

    monkeypatch.setattr(stages, "_sha256", hashed_while_the_user_saves)
    saves.update({3: "USER DATA"})  # the last check saw the kept video, the user's is what is moved aside
    refused = _kept_encode(staged)
    assert refused.code == ExitCode.OUTPUT_EXISTS, refused.message
    assert f"{kept} exists and is not a video this run kept" in refused.message
    assert [p.name for p in hashed] == [kept.name, kept.name, kept.name, "earlier"]
    assert kept.read_text(encoding="utf-8") == "USER DATA"
    assert run.kept_digests() == ours  # the new one's digest claims nothing

    kept.unlink()
    assert _kept_encode(staged).code == ExitCode.LIPSYNC_OUT_OF_SYNC
    hashed.clear()
    saves.update({3: "FIRST", 4: "SECOND"})  # and once more while the one moved aside is checked
    refused = _kept_encode(staged)
    assert refused.code == ExitCode.OUTPUT_EXISTS and "\n" not in refused.message, refused.message
    assert f"{kept} was replaced twice while it was checked" in refused.message
    assert kept.read_text(encoding="utf-8") == "SECOND"
    spare = Path(refused.message.split("the file that was there is now ")[1].split(", ")[0])
    assert spare.parent.parent == run.root and spare.read_text(encoding="utf-8") == "FIRST"
    assert not [p.name for p in run.root.iterdir() if p.name.startswith(".encode-")]


def test_with_on_fail_warn_an_out_of_sync_video_is_published(spoken: Media, stage: Stage) -> None:  # noqa: F811
    staged = stage(command("talk", "--lag", "-6"), sync_check={"enable": True, "on_fail": "warn"})
    assert staged.lipsync()["sync"]["verdict"] == "out_of_sync"
    run, final = staged.run, staged.run.final(staged.job.basename)
    stages.encode(
        encode_settings(load_plan(run.plan)),
        run.still_loop,
        run.padded_aac,
        final,
        video=run.lipsync_output,
        lipsync_result=run.lipsync_result,
    )
    assert final.exists() and not (run.root / "final.out-of-sync.mp4").exists()


def test_an_out_of_sync_chunk_is_made_once_more_when_asked(
    spoken: Media,
    stage: Stage,  # noqa: F811
    tmp_path: Path,
) -> None:
    calls = tmp_path / "calls.txt"
    lagging = command("talk", "--lag", "6", "--calls", str(calls), "--lag-calls", "1")
    staged = stage(lagging, sync_check={"enable": True, "retry": True})
    record = staged.lipsync()["sync"]
    assert (record["verdict"], record["attempts"]) == ("in_sync", 2)
    assert len(calls.read_text().splitlines()) == 2


def test_the_one_chunk_out_of_sync_is_named(spoken: Media, stage: Stage, tmp_path: Path) -> None:  # noqa: F811
    calls = tmp_path / "calls.txt"
    # The tool takes at most 3 s: the padded 6 s voice is cut into 3 chunks; the second one comes out late.
    tool = command(
        "talk", "--lag", "7", "--calls", str(calls), "--lag-calls", "2", input={"fps": 25, "max_seconds": 3}
    )
    staged = stage(tool, sync_check={"enable": True})
    record = staged.chunked()["sync"]
    verdicts = {chunk["chunk"]: chunk["verdict"] for chunk in record["chunks"]}
    assert verdicts["0001"] == "out_of_sync" and record["verdict"] == "out_of_sync", record
    assert all(verdict != "out_of_sync" for name, verdict in verdicts.items() if name != "0001")
    second = record["chunks"][1]
    assert abs(second["offset_frames"] - 7) <= 1 and second["start_seconds"] > 0
    assert "chunk 0001" in record["reason"]


def test_a_published_out_of_sync_video_is_said_on_stderr(
    files: Media, va_cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``on_fail: warn``: the run ends 0 with the final's path on stdout and the offset on stderr."""
    final = files.root / "w" / "final.mp4"
    record = {
        "verdict": "out_of_sync",
        "offset_frames": -4,
        "confidence": 0.5,
        "start_seconds": 0.0,
        "end_seconds": 8.0,
        "max_offset_frames": 2,
    }
    manifest = {"phases": {"lipsync": {"status": "done", "sync": record}}}
    monkeypatch.setattr(cli, "run_job", lambda *_, **__: RunResult(ExitCode.OK, "", final, manifest))
    result = va_cli("run", files.job(), "--workdir", final.parent, "-q")
    assert (result.code, result.out) == (0, f"{final}\n")
    assert result.err == (
        "va: warning: lip-sync out of sync at 0.00-8.00 s: the picture runs ahead of the voice by 4 frames "
        "(at most 2 allowed; confidence 0.5)\n"
    )


def test_a_models_picture_is_judged_per_segment_and_the_late_one_named(tmp_path: Path) -> None:
    """A template that lip-syncs in the model: its picture is checked before the encode, each segment on
    its own, and the record is where a lip-sync stage's would be (``lipsync/result.json``)."""
    levels = envelope(18, seed=11)
    picture = levels.copy()
    picture[150:300] = shifted(levels, 6)[150:300]  # the middle segment's picture 6 frames late
    video = write_talking_face(tmp_path / "picture.mp4", picture)
    voice = write_voice(tmp_path / "voice.wav", levels)
    segments = tuple(ChunkWindow(f"{index:04d}", index * 150, 150) for index in range(3))
    model = ModelSync(SyncSettings(True, 2, "fail"), "talk_segment", 25, segments)
    result = tmp_path / "lipsync" / "result.json"
    check_model_picture(model, video, voice, result)
    record = read_json(result)
    assert (record["provider"], record["in_model"]) == (None, "talk_segment")
    sync_record = record["sync"]
    assert [part["verdict"] for part in sync_record["chunks"]] == ["in_sync", "out_of_sync", "in_sync"]
    assert sync_record["verdict"] == "out_of_sync" and sync_record["unit"] == "segment"
    assert abs(sync_record["chunks"][1]["offset_frames"] - 6) <= 1
    assert "at segment 0001 (6.00-12.00 s): the picture lags behind the voice" in sync.describe(sync_record)
    assert sync.summary(sync_record).startswith("sync: out of sync in segment 0001 (+")
    assert (tmp_path / "lipsync" / sync.TRACK_NAME).is_file()
    # The check turned off: the earlier record of the model's picture goes, a tool's would stay.
    check_model_picture(None, video, voice, result)
    assert not result.exists() and not (tmp_path / "lipsync" / sync.TRACK_NAME).exists()


def test_the_encode_checks_a_models_picture_and_ends_54_naming_the_segment(
    spoken: Media,
    stage: Stage,  # noqa: F811
) -> None:
    """The encode of a picture whose template lip-syncs in the model (no lip-sync stage): checked first, its
    record written where a stage's would be, and an out-of-sync segment ends the run with exit 54."""
    staged = stage(command("talk", "--lag", "6"), sync_check={"enable": False})
    staged.lipsync()  # a picture 6 frames late, standing for the model's
    run, final = staged.run, staged.run.final(staged.job.basename)
    settings = encode_settings(load_plan(run.plan))
    frames = settings.picture.frames
    halves = (ChunkWindow("0000", 0, frames // 2), ChunkWindow("0001", frames // 2, frames - frames // 2))
    model = ModelSync(SyncSettings(True, 2, "fail"), "talk_segment", 25, halves)
    settings = dataclasses.replace(settings, lipsync=None, model_sync=model)
    with pytest.raises(VaError) as raised:
        stages.encode(
            settings,
            run.still_loop,
            run.padded_aac,
            final,
            video=run.lipsync_output,
            lipsync_result=run.lipsync_result,
        )
    assert raised.value.code == ExitCode.LIPSYNC_OUT_OF_SYNC
    assert raised.value.message.startswith("lip-sync out of sync at segment 0000 (0.00-")
    record = read_json(run.lipsync_result)
    assert record["in_model"] == "talk_segment" and record["sync"]["unit"] == "segment"
    assert [part["chunk"] for part in record["sync"]["chunks"]] == ["0000", "0001"]
    assert (run.root / "final.out-of-sync.mp4").exists() and not final.exists()

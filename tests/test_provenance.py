"""Provenance of videos (what yt-dlp reports, kept and cleaned), athletes per video, and the evaluation group
(video, athlete or channel) of training."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from curation import store
from curation.ingest import YOUTUBE_HOSTS, IngestOptions, download, upload_date
from curation.pipeline import PipelineOptions, ingest_source
from curation.project import Project
from curation.sample import sample_project
from model.__main__ import build_parser
from model.features import group_of, load_clipset
from model.train import BadRunConfig, RunConfig, _group_kind, train_run
from tests.test_ingest import serve  # noqa: F401  (fixture: a local HTTP server on 127.0.0.1)
from tests.test_timeline import ingested_squat  # noqa: F401  (fixture)

LOCAL = IngestOptions(allowed_hosts=(*YOUTUBE_HOSTS, "127.0.0.1"))
# Untrusted text as a page could carry it: Markdown and HTML that must reach the screen as typed.
TITLE = "Squat *demo* <b>bold</b>"
UPLOADER = "Coach [Anna](javascript:alert(1))"


def video_page(folder: Path, base: str) -> str:
    """A web page describing knee_squat.mp4 with schema.org VideoObject metadata (what yt-dlp's generic
    extractor reads from a page); returns its URL."""
    (folder / "squat-video.html").write_text(
        '<html><head><script type="application/ld+json">{"@context": "https://schema.org", "@type": "VideoObject", '
        f'"name": "{TITLE}", "author": {{"@type": "Person", "name": "{UPLOADER}"}}, '
        f'"uploadDate": "2024-03-05T10:00:00Z", "contentUrl": "{base}/knee_squat.mp4", '
        '"encodingFormat": "video/mp4"}</script></head><body>squat</body></html>')
    return f"{base}/squat-video.html"


@pytest.fixture
def site(videos, tmp_path, serve) -> str:  # noqa: F811
    folder = tmp_path / "site"
    folder.mkdir()
    shutil.copy(videos / "twix" / "knee_squat.mp4", folder)
    return video_page(folder, serve(folder))


@pytest.mark.parametrize("raw, expected", [("20240305", "2024-03-05"), ("2024-03-05", ""), ("20241345", ""),
                                           (None, ""), ("1x", "")])
def test_upload_dates_are_kept_as_iso_dates_or_not_at_all(raw, expected):
    assert upload_date(raw) == expected


@pytest.mark.slow
def test_what_the_page_says_about_a_video_is_downloaded_with_it(site, tmp_path):
    fetched = download(site, tmp_path / "dl", LOCAL)
    assert (fetched.title, fetched.uploader, fetched.upload_date) == (TITLE, UPLOADER, "2024-03-05")
    assert fetched.webpage_url == site


@pytest.mark.slow
def test_an_ingested_link_stores_its_provenance(site, data_dir):
    project = Project.open(data_dir)
    result = ingest_source(project, site, "squat", options=PipelineOptions(ingest=LOCAL))
    video = store.get_video(project, result["video_id"])
    assert (video["title"], video["uploader"], video["upload_date"], video["webpage_url"]) == \
        (TITLE, UPLOADER, "2024-03-05", site)
    assert video["duration"] == pytest.approx(243 / 25, abs=0.1)  # knee_squat.mp4: 243 frames at 25 fps


def fake_video(project: Project, video_id: str, **fields) -> None:
    store.add_video(project, {"id": video_id, "source_key": video_id, "source": f"{video_id}.mp4",
                              "video_path": f"videos/{video_id}.mp4", "pose_path": f"poses/{video_id}.npz",
                              "frames": 100, "fps": 25.0, "width": 640, "height": 360, "person_share": 1.0,
                              "trimmed_share": 0.1, **fields}, [])


def test_athletes_are_set_for_many_videos_at_once_and_each_change_is_undoable(data_dir):
    project = Project.open(data_dir)
    for v in ("va", "vb", "vc"):
        fake_video(project, v)
    assert store.set_athlete(project, ["va", "vb"], "  Anna   K ", "lead") == 2
    assert store.set_athlete(project, ["va", "vb"], "Anna K", "lead") == 0  # nothing changed, nothing recorded
    assert {v["id"]: v["athlete"] for v in store.list_videos(project)} == {"va": "Anna K", "vb": "Anna K", "vc": ""}
    store.set_athlete(project, ["va"], "Ben", "lead")
    latest = store.video_events(project)[0]
    store.undo_video_event(project, latest["id"], "lead")
    assert store.get_video(project, "va")["athlete"] == "Anna K"
    with pytest.raises(store.StoreError, match="undone already"):
        store.undo_video_event(project, latest["id"], "lead")
    with pytest.raises(store.StoreError, match="no video 'nope'"):
        store.set_athlete(project, ["va", "nope"], "Cleo", "lead")
    assert store.get_video(project, "va")["athlete"] == "Anna K"  # all or nothing


def test_a_clip_is_grouped_by_video_athlete_or_channel_and_falls_back_to_its_video():
    clip = {"id": "c1", "video_id": "v1", "group_name": "v1"}
    video = {"athlete": "Anna", "channel_id": ""}
    assert group_of(clip, video, "video") == ("v1", "group")
    assert group_of(clip, video, "athlete") == ("athlete:Anna", "athlete")
    assert group_of(clip, video, "channel") == ("v1", "group")
    assert group_of({"id": "c2", "video_id": None, "group_name": None}, None, "athlete") == ("c2", "clip")
    with pytest.raises(ValueError, match="group must be one of"):
        group_of(clip, video, "team")


@pytest.mark.slow
def test_the_clip_set_follows_the_group_asked_and_the_split_says_what_stood_in(ingested_squat, tmp_path):  # noqa: F811
    project = Project.open(shutil.copytree(ingested_squat, tmp_path / "project"))
    [video] = store.list_videos(project)
    store.set_athlete(project, [video["id"]], "Anna", "lead")
    by_athlete = load_clipset(project, labelled_only=False, group="athlete")
    assert set(by_athlete.groups) == {"athlete:Anna"}
    by_channel = load_clipset(project, labelled_only=False, group="channel")
    assert set(by_channel.groups) == {video["id"]}
    assert _group_kind(project, by_athlete, "athlete") == "athlete"
    assert _group_kind(project, by_channel, "channel") == "group (4 of 4 clips without a channel: grouped as with " \
                                                          "group=video)"


def test_training_takes_the_group_from_the_cli_and_refuses_an_unknown_one():
    assert build_parser().parse_args(["train", "--group", "athlete"]).group == "athlete"
    assert build_parser().parse_args(["train"]).group == "video"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--group", "team"])
    assert RunConfig.from_params({"group": "channel"}).group == "channel"
    with pytest.raises(BadRunConfig, match="group must be one of video, athlete, channel"):
        RunConfig(model="baseline", group="team")


@pytest.mark.slow
def test_a_run_records_its_group_and_which_clips_fell_back(data_dir):
    project = Project.open(data_dir)
    sample_project(project)  # imported clips: athletes as import groups, no videos
    metrics = train_run(project, RunConfig(model="baseline", group="athlete"))
    assert metrics["group"] == "athlete"
    assert "48 of 48 clips without an athlete: grouped as with group=video" in metrics["split"]

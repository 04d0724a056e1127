"""The Dataset page through AppTest: provenance and athletes on the Videos tab, the trim timeline, the
Statistics tab, the rubric editor, and tabs drawn only while open."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from curation import store
from curation.dataset import import_folder
from curation.project import Project
from tests.conftest import ROOT
from tests.test_dataset import write_folder
from tests.test_provenance import TITLE, UPLOADER, fake_video
from tests.test_timeline import ingested_squat  # noqa: F401  (fixture)

PAGE = str(ROOT / "pages/3_Dataset.py")


@pytest.fixture
def with_videos(project) -> Project:
    fake_video(project, "va", title=TITLE, uploader=UPLOADER, channel="Squat <i>U</i>", channel_id="UC123",
               upload_date="2024-03-05", license="Creative Commons Attribution license (reuse allowed)",
               webpage_url="https://www.youtube.com/watch?v=dQw4w9WgXcQ", duration=4.0)
    fake_video(project, "vb", title="Second")
    return project


def open_page(tab: str | None = None) -> AppTest:
    """The page run once with tab `tab` open (as after a click on it; default: the first, Clips)."""
    at = AppTest.from_file(PAGE, default_timeout=120)
    if tab is not None:
        at.session_state["dataset_tab"] = tab
    at.run()
    assert not at.exception, at.exception
    return at


def markdown_text(at: AppTest) -> str:
    """Everything the page rendered as Markdown (where untrusted text must never arrive unescaped)."""
    parts = [e.value for kind in ("markdown", "caption", "info", "success", "error", "warning")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def videos_table(at: AppTest):
    return next(d.value for d in at.dataframe if "channel_id" in d.value.columns)


def test_the_videos_tab_shows_provenance_as_plain_text(with_videos):
    at = open_page("Videos")
    table = videos_table(at).set_index("id")
    row = table.loc["va"]
    assert (row["title"], row["uploader"], row["channel"], row["channel_id"], row["upload_date"]) == \
        (TITLE, UPLOADER, "Squat <i>U</i>", "UC123", "2024-03-05")
    assert row["license"].startswith("Creative Commons") and row["webpage_url"].endswith("dQw4w9WgXcQ")
    assert "javascript" not in markdown_text(at) and "<b>" not in markdown_text(at)


def test_an_athlete_is_set_for_several_videos_at_once_and_undone(with_videos):
    at = open_page("Videos")
    at.multiselect(key="dataset_athlete_videos").set_value(["va", "vb"])
    at.text_input(key="dataset_athlete_name").set_value("Anna")
    at.button(key="FormSubmitter:dataset_athlete_form-Set the athlete of these videos").click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["2 video(s) changed."], [e.value for e in at.error]
    assert {v["athlete"] for v in store.list_videos(with_videos)} == {"Anna"}
    assert set(videos_table(at).athlete) == {"Anna"}
    at.button(key="dataset_athlete_undo").click().run()
    assert sorted(v["athlete"] for v in store.list_videos(with_videos)) == ["", "Anna"]


@pytest.mark.slow
def test_the_timeline_shows_removed_spans_and_restores_one_as_clips(ingested_squat, tmp_path,  # noqa: F811
                                                                   monkeypatch):
    folder = shutil.copytree(ingested_squat, tmp_path / "project")
    monkeypatch.setenv("FORMCHECK_DATA", str(folder))
    project = Project.open(folder)
    at = open_page("Videos")
    metric = {m.label: m.value for m in at.metric}
    assert metric["Trimmed share of all footage"] == metric["Removed by the automatic trim"] != "0.0%"
    chart = next(c for c in at.get("plotly_chart") if "still" in c.proto.spec)
    assert "kept" in chart.proto.spec
    before = len(store.list_clips(project))
    at.selectbox(key="dataset_restore_span").set_value(0)
    at.button(key="dataset_restore").click().run()
    assert not at.exception, at.exception
    assert len(store.list_clips(project)) > before
    metric = {m.label: m.value for m in at.metric}
    assert metric["Trimmed share of all footage"] != metric["Removed by the automatic trim"]
    at.button(key="dataset_trim_undo").click().run()
    assert len(store.list_clips(project)) == before


def test_the_statistics_tab_shows_the_tables(project, tmp_path):
    rows = [{"clip_id": f"c{i}", "exercise": "squat", "label": ("correct", "incorrect")[i % 2], "fps": "30"}
            for i in range(4)]
    import_folder(project, write_folder(tmp_path / "ds", rows, {r["clip_id"]: np.zeros((10, 33, 4), np.float32)
                                                               for r in rows}))
    at = open_page("Statistics")
    metric = {m.label: m.value for m in at.metric}
    assert (metric["Clips"], metric["Labelled clips"], metric["Labelled frames"]) == ("4", "4", "40")
    per = next(d.value for d in at.dataframe if "correct frames" in d.value.columns)
    assert per.set_index("exercise").loc["squat", "correct frames"] == 20


def test_the_rubric_editor_renames_reorders_and_retires_and_old_labels_keep_their_titles(project, tmp_path):
    rows = [{"clip_id": "c0", "exercise": "squat", "label": "", "fps": "30"}]
    import_folder(project, write_folder(tmp_path / "ds", rows, {"c0": np.zeros((10, 33, 4), np.float32)}))
    store.add_label_event(project, {"clip_id": "c0", "annotator": "ann", "verdict": "incorrect",
                                    "criteria": {"depth": "fail"}})
    at = open_page()
    at.selectbox(key="dataset_rubric_exercise").set_value("squat").run()
    at.selectbox(key="dataset_rubric_criterion").set_value("depth").run()
    at.text_input(key="dataset_rubric_title_squat_depth").set_value("Hip below knee")
    at.button(key="FormSubmitter:dataset_rubric_edit_squat_depth-Save name and description").click().run()
    assert not at.exception, at.exception
    assert store.criteria_of(project, "squat")[0]["title"] == "Hip below knee"
    at.button(key="dataset_rubric_move_1").click().run()
    assert [c["name"] for c in store.criteria_of(project, "squat")][:2] == ["knee_valgus", "depth"]
    at.button(key="dataset_rubric_retire").click().run()
    assert "depth" not in [c["name"] for c in store.criteria_of(project, "squat")]
    at.selectbox(key="dataset_history_clip").set_value("c0").run()
    history = next(d.value for d in at.dataframe if "rubric" in d.value.columns)
    assert history.criteria.tolist() == ["depth: fail"]  # named as in the rubric the label was made with


def test_only_the_open_tab_is_drawn_and_the_clip_filters_outlive_a_visit_to_another_tab(with_videos):
    store.add_clips(with_videos, [{"id": f"i{i}", "exercise": ("lunge", "squat")[i % 2], "start_frame": 0,
                                   "end_frame": 30, "fps": 30.0, "method": "imported", "pose_path": f"poses/i{i}.npy"}
                                  for i in range(4)], [{"clip_id": "i0", "annotator": "ann", "verdict": "correct"}])
    at = open_page()
    assert at.multiselect(key="dataset_label") and not any("channel_id" in d.value.columns for d in at.dataframe)
    assert at.button(key="dataset_zip") and at.selectbox(key="dataset_rubric_exercise")  # cheap tabs: always
    at.multiselect(key="dataset_label").set_value(["correct"])
    at.slider(key="dataset_complexity").set_value((0.0, 0.5)).run()
    at.slider(key="dataset_complexity").set_value((0.0, 1.0)).run()
    assert list(at.dataframe[0].value.clip_id) == ["i0"]
    for tab, shown in (("Videos", "channel_id"), ("Statistics", "correct frames")):
        at.session_state["dataset_tab"] = tab
        at.run()
        assert not at.exception, at.exception
        assert not at.get("multiselect") or not any(m.key == "dataset_label" for m in at.multiselect)
        assert any(shown in d.value.columns for d in at.dataframe)
    at.session_state["dataset_tab"] = "Clips"
    at.run()
    assert at.multiselect(key="dataset_label").value == ["correct"]
    assert list(at.dataframe[0].value.clip_id) == ["i0"]

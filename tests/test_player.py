"""Tests of curation.player: the self-contained clip player page, and the page itself in headless chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from curation.clipmedia import clip_video
from curation.kinematics import ANGLES, joint_angles
from curation.landmarks import EDGES
from curation.player import SPEEDS, player_html
from curation.project import Project

CHROMIUM = Path("/usr/bin/chromium")
START, END = 40, 115  # one repetition of twix/knee_squat.mp4: 3 s at 25 fps
TRACES = ("left_knee", "right_knee", "left_hip", "trunk_lean")
SCREENSHOT = Path("/tmp/formcheck_player.png")


@pytest.fixture(scope="module")
def squat_pose(videos: Path) -> tuple[np.ndarray, float, float]:
    """(landmarks of the clip, fps, aspect) from the reference MediaPipe output of the real video."""
    with np.load(videos / "twix_poses_bp33" / "knee_squat.npz") as npz:
        return npz["landmarks"][START:END], float(npz["fps"]), float(npz["width"]) / float(npz["height"])


def _angles(landmarks: np.ndarray, aspect: float) -> dict[str, np.ndarray]:
    every = dict(zip(ANGLES, joint_angles(landmarks, aspect).T))
    return {name: every[name] for name in TRACES}


def _data(html: str) -> dict:
    """The JSON the page embeds, parsed back."""
    m = re.search(r'<script id="clip-data" type="application/json">(.*?)</script>', html, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def test_page_is_self_contained(squat_pose):
    lm, fps, aspect = squat_pose
    html = player_html(lm, fps, _angles(lm, aspect), base64.b64encode(b"\0" * 64).decode(), aspect)
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assert not re.search(r"<script[^>]*\bsrc\s*=", html)
    assert not re.search(r"<link\b", html)
    assert re.findall(r'\bsrc="([a-z]+):', html) == ["data"]  # the only source is the embedded video


def test_page_embeds_every_frame_fps_and_trace(squat_pose):
    lm, fps, aspect = squat_pose
    angles = _angles(lm, aspect)
    data = _data(player_html(lm, fps, angles, None, aspect))
    assert data["frames"] == END - START == len(data["pose"])
    assert data["fps"] == fps
    assert data["speeds"] == list(SPEEDS) == [0.25, 0.5, 1.0, 1.5, 2.0]
    assert [tuple(e) for e in data["edges"]] == list(EDGES)
    assert list(data["angles"]) == list(TRACES)
    for name in TRACES:
        np.testing.assert_allclose(np.array(data["angles"][name], dtype=float), angles[name], atol=0.005)
    frame = np.array(data["pose"][7], dtype=float).reshape(33, 3)
    np.testing.assert_allclose(frame[:, :2], lm[7, :, :2], atol=5e-5)  # 4 decimals
    np.testing.assert_allclose(frame[:, 2], lm[7, :, 3], atol=5e-3)  # visibility, 2 decimals


def test_nan_landmarks_and_angles_become_null(squat_pose):
    lm, fps, aspect = squat_pose
    lm = lm.copy()
    lm[3] = np.nan  # a frame without a person
    lm[5, 25, :2] = np.nan  # one missing landmark
    angles = _angles(lm, aspect)
    assert np.isnan(angles["left_knee"][3])
    html = player_html(lm, fps, angles, None, aspect)
    embedded = re.search(r'<script id="clip-data" type="application/json">(.*?)</script>', html, re.S).group(1)
    assert "NaN" not in embedded and "Infinity" not in embedded  # neither is JSON
    data = _data(html)
    assert data["pose"][3] == [None] * 99
    assert data["pose"][5][75:78] == [None, None, round(float(lm[5, 25, 3]), 2)]
    assert data["angles"]["left_knee"][3] is None
    assert data["angles"]["left_knee"][4] is not None


def test_angle_name_cannot_break_out_of_the_script(squat_pose):
    lm, fps, aspect = squat_pose
    evil = "</script><script>alert(1)"
    html = player_html(lm, fps, {evil: np.zeros(len(lm)), "<!--": np.ones(len(lm))}, None, aspect)
    assert "</script><script>" not in html
    assert "alert(1)</" not in html and "<!--" not in html
    assert html.count("</script>") == html.count("<script")  # only the page's own elements close
    assert list(_data(html)["angles"]) == [evil, "<!--"]  # the name itself comes back intact


def test_video_variant_plays_a_muted_looping_inline_video(squat_pose):
    lm, fps, aspect = squat_pose
    b64 = base64.b64encode(b"fake mp4 bytes").decode()
    html = player_html(lm, fps, {}, b64, aspect)
    tag = re.search(r"<video\b[^>]*>", html).group(0)
    for attr in ("muted", "autoplay", "loop", "playsinline"):
        assert re.search(rf"\b{attr}\b", tag)
    assert f'src="data:video/mp4;base64,{b64}"' in tag
    assert "requestVideoFrameCallback" in html


def test_pose_only_variant_has_no_video(squat_pose):
    lm, fps, aspect = squat_pose
    html = player_html(lm, fps, _angles(lm, aspect), None, aspect)
    assert "<video" not in html
    assert "<canvas" in html


def test_skeleton_initial_state_is_embedded(squat_pose):
    lm, fps, aspect = squat_pose
    assert _data(player_html(lm, fps, {}, None, aspect, show_skeleton=False))["skeleton"] is False
    assert _data(player_html(lm, fps, {}, None, aspect))["skeleton"] is True


def test_single_frame_clip_is_accepted(squat_pose):
    lm, fps, aspect = squat_pose
    data = _data(player_html(lm[:1], fps, _angles(lm[:1], aspect), None, aspect))
    assert data["frames"] == 1 and len(data["pose"]) == 1


def test_inconsistent_inputs_are_refused(squat_pose):
    lm, fps, aspect = squat_pose
    with pytest.raises(ValueError, match="shape"):
        player_html(lm[:, :17], fps, {}, None, aspect)
    with pytest.raises(ValueError, match="knee"):
        player_html(lm, fps, {"knee": np.zeros(len(lm) - 1)}, None, aspect)
    with pytest.raises(ValueError, match="fps"):
        player_html(lm, 0.0, {}, None, aspect)
    with pytest.raises(ValueError, match="base64"):
        player_html(lm, fps, {}, '"><script>alert(1)</script>', aspect)


# --- a real clip, in a real browser ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_clip(tmp_path_factory, videos: Path, squat_pose) -> dict:
    """The player page of a real clip: cut with clip_media from the real video, its landmarks and angles."""
    project = Project.open(tmp_path_factory.mktemp("player") / "project")
    shutil.copy(videos / "twix" / "knee_squat.mp4", project.videos / "v1.mp4")
    video = {"id": "v1", "video_path": "videos/v1.mp4", "fps": 25.0, "width": 352, "height": 640}
    clip = {"id": "c1", "video_id": "v1", "start_frame": START, "end_frame": END}
    mp4 = clip_video(project, clip, video)
    lm, fps, aspect = squat_pose
    b64 = base64.b64encode(mp4.read_bytes()).decode()
    html = player_html(lm, fps, _angles(lm, aspect), b64, aspect)
    page = project.root / "player.html"
    page.write_text(html, encoding="utf-8")
    return {"html": html, "page": page, "mp4": mp4, "b64": b64, "fps": fps, "frames": END - START}


@pytest.mark.slow
def test_page_of_a_3s_clip_stays_small(real_clip):
    html, mp4 = real_clip["html"], real_clip["mp4"]
    overhead = len(html) - len(real_clip["b64"])
    print(f"\n3 s clip: mp4 {mp4.stat().st_size} B, page {len(html)} B, page without video {overhead} B")
    # The landmarks of 75 frames (33 points x 3 numbers) and 4 traces: a page far below what a browser
    # notices, so the video dominates.
    assert overhead < 80_000
    assert len(html) < 600_000


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"Debian chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="python package playwright is not installed")
    with sync_api.sync_playwright() as p:
        # Always the system chromium: Playwright must never download a browser.
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync", "--disable-quic"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    pg = browser.new_page(viewport={"width": 900, "height": 440})
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    pg.close()
    assert not errors, errors


OPAQUE_PIXELS = "(id) => { const c = document.getElementById(id); const d = c.getContext('2d')" \
                ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4)" \
                " n += d[i] > 0; return n; }"


@pytest.mark.browser
@pytest.mark.slow
def test_h264_clip_plays_with_the_skeleton_over_it(page, real_clip):
    page.goto(real_clip["page"].as_uri())
    page.wait_for_timeout(1500)
    state = page.evaluate("() => { const v = document.getElementById('video');"
                          " return {t: v.currentTime, error: v.error && v.error.code, w: v.videoWidth}; }")
    assert state["error"] is None
    assert state["w"] > 0
    assert state["t"] > 0, "the H.264 clip does not play in this chromium"
    assert page.evaluate(OPAQUE_PIXELS, "overlay") > 500
    page.screenshot(path=str(SCREENSHOT))
    page.uncheck("#skel")
    assert page.evaluate(OPAQUE_PIXELS, "overlay") == 0


@pytest.mark.browser
@pytest.mark.slow
def test_speed_buttons_set_the_playback_rate(page, real_clip):
    page.goto(real_clip["page"].as_uri())
    for label, rate in (("0.25x", 0.25), ("2x", 2.0), ("0.5x", 0.5)):
        page.click(f"#speeds button:text-is('{label}')")
        assert page.evaluate("document.getElementById('video').playbackRate") == rate
        assert page.inner_text("#speeds button.on") == label


@pytest.mark.browser
@pytest.mark.slow
def test_clicking_the_traces_seeks_to_that_frame(page, real_clip):
    page.goto(real_clip["page"].as_uri())
    page.click("#play")  # pause
    box = page.locator("#plot").bounding_box()
    n, pad_l, pad_r = real_clip["frames"], 36, 8  # the plot's left and right padding
    target = 30
    x = pad_l + target / (n - 1) * (box["width"] - pad_l - pad_r)
    page.mouse.click(box["x"] + x, box["y"] + box["height"] / 2)
    page.wait_for_function("!document.getElementById('video').seeking")
    page.wait_for_timeout(200)
    t = page.evaluate("document.getElementById('video').currentTime")
    assert int(t * real_clip["fps"]) == target
    assert page.inner_text("#frame") == f"frame {target + 1} / {n}"
    assert page.evaluate("document.getElementById('video').paused")


@pytest.mark.browser
@pytest.mark.slow
def test_letter_keys_reach_the_page_and_space_toggles_play(page, real_clip):
    # Hosted as Streamlit hosts it: a same-origin srcdoc iframe in a page that listens for verdict keys.
    page.set_content("<script>window.keys = []; document.addEventListener('keydown', e => keys.push(e.key));"
                     "</script><iframe id=f width=880 height=430 sandbox='allow-same-origin allow-scripts'></iframe>")
    page.evaluate("html => { document.getElementById('f').srcdoc = html; }", real_clip["html"])
    frame = page.frame_locator("#f")
    frame.locator("#plot").click()  # the player has the focus now
    page.keyboard.press("c")
    page.keyboard.press("i")
    assert page.evaluate("window.keys") == ["c", "i"]
    inner = page.frames[1]
    assert inner.evaluate("document.getElementById('video').paused") is False
    page.keyboard.press(" ")
    assert inner.evaluate("document.getElementById('video').paused") is True
    assert page.evaluate("window.keys") == ["c", "i"]  # space stayed in the player


@pytest.mark.browser
@pytest.mark.slow
def test_pose_only_clip_animates_on_a_clock(page, squat_pose, tmp_path):
    lm, fps, aspect = squat_pose
    html_path = tmp_path / "pose.html"
    html_path.write_text(player_html(lm, fps, _angles(lm, aspect), None, aspect), encoding="utf-8")
    page.goto(html_path.as_uri())
    page.wait_for_timeout(300)
    first = page.inner_text("#frame")
    page.wait_for_timeout(500)
    assert page.inner_text("#frame") != first
    assert page.evaluate(OPAQUE_PIXELS, "overlay") > 500
    page.click("#play")  # pause: the clock stops
    paused = page.inner_text("#frame")
    page.wait_for_timeout(300)
    assert page.inner_text("#frame") == paused
    page.screenshot(path=str(SCREENSHOT.with_name("formcheck_player_pose.png")))


def test_explanations_are_embedded_scaled_to_their_maximum(squat_pose):
    lm, fps, aspect = squat_pose
    attention = np.linspace(0, 2, len(lm))
    joints = np.zeros(33)
    joints[25] = 4.0  # left knee decided
    joints[26] = 1.0
    data = _data(player_html(lm, fps, _angles(lm, aspect), None, aspect, attention=attention, joint_weights=joints))
    assert data["explain"]["attention"][-1] == 1.0 and data["explain"]["attention"][0] == 0.0
    assert data["explain"]["joints"][25] == 1.0 and data["explain"]["joints"][26] == 0.25
    assert _data(player_html(lm, fps, {}, None, aspect))["explain"] == {}
    with pytest.raises(ValueError, match="attention"):
        player_html(lm, fps, {}, None, aspect, attention=np.ones(3))
    with pytest.raises(ValueError, match="joint_weights"):
        player_html(lm, fps, {}, None, aspect, joint_weights=np.ones(17))

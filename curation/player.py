"""Player: the HTML of the clip player: looping video, skeleton overlay, speed, angle traces."""

from __future__ import annotations

import json
import math
import re

import numpy as np

from curation.landmarks import EDGES, N_LANDMARKS

SPEEDS: tuple[float, ...] = (0.25, 0.5, 1.0, 1.5, 2.0)
# The video goes into an attribute: anything but base64 text could close it.
_BASE64 = re.compile(r"[A-Za-z0-9+/=\r\n]*")


def player_html(
    landmarks: np.ndarray,
    fps: float,
    angles: dict[str, np.ndarray],
    video_b64: str | None,
    aspect: float,
    height: int = 420,
    show_skeleton: bool = True,
    attention: np.ndarray | None = None,
    joint_weights: np.ndarray | None = None,
) -> str:
    """One self-contained HTML document (no network, no library) that plays a clip for a coach.

    landmarks: (T, 33, 4) BlazePose x, y (normalised to the video frame), z, visibility; NaN = missing.
    angles: name -> (T,) degrees, drawn as traces beside the video with a cursor at the current frame.
    video_b64: the clip's H.264 MP4 as base64 (played looping over the skeleton), or None for a pose-only
    clip (the skeleton is animated on a dark canvas at `fps`). aspect: frame width / height.
    height: the document's height in px (the height to give streamlit.components.v1.html).
    attention: optional (T,) weights of a model's decision over the frames, shaded under the traces (which
    phase of the movement decided). joint_weights: optional (33,) saliency per landmark, drawn as red halos
    on the skeleton (which joints decided); both are scaled to their maximum.
    Letter keys are never handled: they are passed on to the page around the player (its verdict keys).
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 3 or lm.shape[1] != N_LANDMARKS or lm.shape[2] < 2 or lm.shape[0] < 1:
        raise ValueError(f"landmarks must have shape (T>=1, {N_LANDMARKS}, 4), not {lm.shape}")
    n = lm.shape[0]
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, not {fps}")
    if not (math.isfinite(aspect) and aspect > 0):
        raise ValueError(f"aspect must be positive, not {aspect}")
    traces = {}
    for name, values in angles.items():
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (n,):
            raise ValueError(f"angle {name!r} has shape {values.shape}, expected ({n},) like the landmarks")
        traces[str(name)] = _nulls(np.round(values, 2))  # a hundredth of a degree: more than any eye sees
    visibility = lm[:, :, 3] if lm.shape[2] >= 4 else np.full(lm.shape[:2], np.nan)
    # Per frame, flat [x0, y0, v0, x1, y1, v1, ...]: x, y to 4 decimals (below a pixel of a 4K frame),
    # visibility to 2; rounding keeps the page small.
    pose = np.concatenate([np.round(lm[:, :, :2], 4), np.round(visibility, 2)[:, :, None]], axis=2)
    explain = {}
    if attention is not None:
        a = np.nan_to_num(np.asarray(attention, dtype=np.float64).ravel())
        if a.shape != (n,):
            raise ValueError(f"attention has shape {a.shape}, expected ({n},)")
        explain["attention"] = np.round(a / (a.max() or 1.0), 3).tolist()
    if joint_weights is not None:
        w = np.nan_to_num(np.asarray(joint_weights, dtype=np.float64).ravel())
        if w.shape != (N_LANDMARKS,):
            raise ValueError(f"joint_weights has shape {w.shape}, expected ({N_LANDMARKS},)")
        explain["joints"] = np.round(w / (w.max() or 1.0), 3).tolist()
    data = {
        "explain": explain,
        "frames": n,
        "fps": float(fps),
        "aspect": float(aspect),
        "height": int(height),
        "skeleton": bool(show_skeleton),
        "speeds": list(SPEEDS),
        "edges": [list(e) for e in EDGES],
        "pose": [_nulls(frame) for frame in pose],
        "angles": traces,
    }
    video = ""
    if video_b64 is not None:
        if not _BASE64.fullmatch(video_b64):
            raise ValueError("video_b64 is not base64 text")
        video = f'<video id="video" muted autoplay loop playsinline src="data:video/mp4;base64,{video_b64}"></video>'
    # The data goes in last, so nothing in it is ever taken for a placeholder.
    return _TEMPLATE.replace("%%VIDEO%%", video).replace("%%DATA%%", _script_json(data))


def _nulls(values: np.ndarray) -> list:
    """A flat list of floats with NaN and inf as None (JSON null)."""
    return [float(v) if math.isfinite(v) else None for v in np.ravel(values)]


def _script_json(data: dict) -> str:
    """JSON safe inside a <script> element: ASCII only and no '<', so no text can close the element."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_TEMPLATE = """<!DOCTYPE html>
<html><head><meta charset="utf-8">
<style>
  html, body { margin: 0; padding: 0; background: transparent; font: 12px system-ui, sans-serif; color: #ddd; }
  #root { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; }
  #stage { position: relative; background: #111; overflow: hidden; border-radius: 4px; }
  #stage video, #stage canvas { position: absolute; left: 0; top: 0; width: 100%; height: 100%; }
  #stage video { object-fit: contain; }
  #bar { display: flex; flex-wrap: wrap; align-items: center; gap: 4px; padding: 4px 0; color: #444; }
  #bar button { font: inherit; padding: 2px 7px; border: 1px solid #bbb; border-radius: 4px; background: #f6f6f6;
                color: #222; cursor: pointer; }
  #bar button.on { background: #2a6fdb; border-color: #2a6fdb; color: #fff; }
  #bar label { margin-left: 6px; user-select: none; }
  #frame { margin-left: 6px; font-variant-numeric: tabular-nums; color: #666; }
  #traces { position: relative; }
  #legend { display: flex; flex-wrap: wrap; gap: 2px 10px; color: #333; padding: 2px 0 4px 36px; }
  #legend span i { display: inline-block; width: 14px; height: 3px; margin-right: 4px; vertical-align: middle; }
  #plot { display: block; cursor: crosshair; }
</style></head>
<body>
<div id="root">
  <div id="left">
    <div id="stage">%%VIDEO%%<canvas id="overlay"></canvas></div>
    <div id="bar">
      <button id="play" type="button" title="play / pause (space)">pause</button>
      <span id="speeds"></span>
      <label><input id="skel" type="checkbox"> skeleton</label>
      <span id="frame"></span>
    </div>
  </div>
  <div id="traces"><div id="legend"></div><canvas id="plot"></canvas></div>
</div>
<script id="clip-data" type="application/json">%%DATA%%</script>
<script>
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("clip-data").textContent);
  const N = D.frames, FPS = D.fps;
  const video = document.getElementById("video");
  const stage = document.getElementById("stage"), overlay = document.getElementById("overlay");
  const plot = document.getElementById("plot"), legend = document.getElementById("legend");
  const playBtn = document.getElementById("play"), skel = document.getElementById("skel");
  const frameLabel = document.getElementById("frame");
  const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324",
                  "#808000", "#000075", "#469990", "#a9a9a9"];
  const names = Object.keys(D.angles);
  const BAR_H = 34, TRACE_MIN_W = 240, TRACE_UNDER_H = 150;
  let frame = 0, drawn = -1, rate = 1, playing = true;
  // Pose-only clips run on a clock: t in seconds of clip time, advanced by wall time times the rate.
  let clockT = 0, lastWall = null;
  skel.checked = D.skeleton;

  // ---- controls
  const speedBox = document.getElementById("speeds");
  const speedBtns = D.speeds.map(function (s) {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = s + "x"; b.dataset.speed = String(s);
    b.addEventListener("click", function () { setRate(s); });
    speedBox.appendChild(b);
    return b;
  });
  function setRate(s) {
    rate = s;
    if (video) video.playbackRate = s;
    speedBtns.forEach(function (b) { b.classList.toggle("on", Number(b.dataset.speed) === s); });
  }
  function setPlaying(p) {
    playing = p;
    if (video) { if (p) { video.play().catch(function () { playing = false; showPlay(); }); } else video.pause(); }
    lastWall = null;
    showPlay();
  }
  function showPlay() { playBtn.textContent = playing ? "pause" : "play"; }
  playBtn.addEventListener("click", function () { setPlaying(!playing); });
  skel.addEventListener("change", drawOverlay);
  setRate(1);

  // Keys: space toggles play (only reaches us while this frame has focus); every other key is handed to
  // the page around the player, whose letter keys record verdicts, so clicking the player never eats them.
  function isField(t) {
    const tag = (t && t.tagName || "").toLowerCase();
    return tag === "select" || tag === "textarea" || (tag === "input" && t.type !== "checkbox");
  }
  document.addEventListener("keydown", function (e) {
    if (e.key === " " && !e.ctrlKey && !e.altKey && !e.metaKey && !isField(e.target)) {
      e.preventDefault();
      if (!e.repeat) setPlaying(!playing);
      return;
    }
    forwardKey(e);
  });
  document.addEventListener("keyup", function (e) { if (e.key === " " && !isField(e.target)) e.preventDefault(); });
  function forwardKey(e) {
    let doc = null;
    try { doc = window.parent !== window ? window.parent.document : null; }
    catch (err) { doc = null; }  // a cross-origin host: it cannot receive our keys, nothing to do
    if (!doc) return;
    doc.dispatchEvent(new KeyboardEvent("keydown", {key: e.key, code: e.code, repeat: e.repeat, bubbles: true,
      cancelable: true, ctrlKey: e.ctrlKey, altKey: e.altKey, shiftKey: e.shiftKey, metaKey: e.metaKey}));
  }

  // ---- layout: traces beside the video, or under it when the frame is too narrow
  let stageW = 0, stageH = 0, plotW = 0, plotH = 0;
  function layout() {
    const W = document.documentElement.clientWidth || window.innerWidth;
    let h = Math.max(80, D.height - BAR_H - 4), w = h * D.aspect;
    // The left column is as wide as the video or the control bar, whichever is wider (portrait clips).
    const bar = document.getElementById("bar"), left = document.getElementById("left");
    frameLabel.textContent = "frame " + N + " / " + N;  // the widest it gets (tabular digits)
    bar.style.width = "max-content";
    const barW = Math.ceil(bar.getBoundingClientRect().width) + 2;
    bar.style.width = "";
    const beside = names.length === 0 || W >= Math.max(w, barW) + 8 + TRACE_MIN_W;
    if (!beside && w > W) { w = W; h = w / D.aspect; }
    stageW = Math.floor(w); stageH = Math.floor(h);
    stage.style.width = stageW + "px"; stage.style.height = stageH + "px";
    const leftW = Math.min(W, Math.max(stageW, barW));
    left.style.width = leftW + "px";
    plotW = Math.max(120, Math.floor(beside ? W - leftW - 8 : W));
    const traces = document.getElementById("traces");
    traces.style.display = names.length ? "" : "none";
    traces.style.width = plotW + "px";  // before measuring the legend: its height depends on its width
    plotH = Math.max(80, beside ? stageH + BAR_H - legend.offsetHeight - 4 : TRACE_UNDER_H);
    sizeCanvas(overlay, stageW, stageH);
    sizeCanvas(plot, plotW, plotH);
    drawPlotBase();
    drawn = frame; drawOverlay(); drawCursor();
  }
  function sizeCanvas(c, w, h) {
    const r = window.devicePixelRatio || 1;
    c.width = Math.round(w * r); c.height = Math.round(h * r);
    c.style.width = w + "px"; c.style.height = h + "px";
    c.getContext("2d").setTransform(r, 0, 0, r, 0, 0);
  }

  // ---- skeleton
  // Pose-only clips: the view covers the frame and every landmark, so points just outside [0, 1] still show.
  let view = {x0: 0, y0: 0, x1: 1, y1: 1};
  if (!video) {
    for (const f of D.pose) for (let j = 0; j < f.length; j += 3) {
      if (f[j] === null || f[j + 1] === null) continue;
      view.x0 = Math.min(view.x0, f[j]); view.x1 = Math.max(view.x1, f[j]);
      view.y0 = Math.min(view.y0, f[j + 1]); view.y1 = Math.max(view.y1, f[j + 1]);
    }
  }
  // Where the frame's content is drawn inside the stage (the video is letterboxed by object-fit: contain).
  function contentBox() {
    let a = D.aspect;
    if (video && video.videoWidth && video.videoHeight) a = video.videoWidth / video.videoHeight;
    let w = stageW, h = w / a;
    if (h > stageH) { h = stageH; w = h * a; }
    let box = {x: (stageW - w) / 2, y: (stageH - h) / 2, w: w, h: h};
    if (!video) {  // fit the view (frame + landmarks) into the box, keeping proportions
      const vw = (view.x1 - view.x0) * a, vh = view.y1 - view.y0, s = Math.min(stageW / vw, stageH / vh);
      box = {x: (stageW - vw * s) / 2 - view.x0 * a * s, y: (stageH - vh * s) / 2 - view.y0 * s,
             w: a * s, h: s};
    }
    return box;
  }
  function drawOverlay() {
    const g = overlay.getContext("2d");
    g.clearRect(0, 0, stageW, stageH);
    if (!video) {
      g.fillStyle = "#1b1f24"; g.fillRect(0, 0, stageW, stageH);
    }
    frameLabel.textContent = "frame " + (frame + 1) + " / " + N;
    if (!skel.checked && video) return;
    const f = D.pose[frame], b = contentBox();
    const X = function (j) { return b.x + f[3 * j] * b.w; }, Y = function (j) { return b.y + f[3 * j + 1] * b.h; };
    const ok = function (j) { return f[3 * j] !== null && f[3 * j + 1] !== null; };
    g.lineWidth = Math.max(2, stageH / 140); g.lineCap = "round";
    for (const e of D.edges) {
      if (!ok(e[0]) || !ok(e[1])) continue;
      const left = e[0] % 2 === 1 && e[1] % 2 === 1, right = e[0] % 2 === 0 && e[1] % 2 === 0 && e[0] > 0;
      g.strokeStyle = left ? "rgba(255,170,40,0.9)" : right ? "rgba(60,200,255,0.9)" : "rgba(255,255,255,0.9)";
      g.beginPath(); g.moveTo(X(e[0]), Y(e[0])); g.lineTo(X(e[1]), Y(e[1])); g.stroke();
    }
    const r = Math.max(2.5, stageH / 110);
    if (D.explain.joints) {  // saliency: the joints that decided the verdict, as red halos
      for (let j = 0; j < f.length / 3; j++) {
        const w = D.explain.joints[j];
        if (!ok(j) || !(w > 0.05)) continue;
        g.beginPath(); g.arc(X(j), Y(j), r * (1.5 + 4 * w), 0, 2 * Math.PI);
        g.fillStyle = "rgba(230,30,30," + (0.15 + 0.45 * w).toFixed(2) + ")"; g.fill();
      }
    }
    for (let j = 0; j < f.length / 3; j++) {
      if (!ok(j)) continue;
      const v = f[3 * j + 2];
      // A landmark MediaPipe thinks is hidden is a guess: drawn hollow so the coach does not trust it.
      const seen = v === null || v >= 0.5;
      g.beginPath(); g.arc(X(j), Y(j), r, 0, 2 * Math.PI);
      g.fillStyle = "rgba(255,255,255,0.95)"; g.strokeStyle = "rgba(20,20,20,0.9)"; g.lineWidth = 1;
      if (seen) g.fill();
      g.stroke();
    }
  }

  // ---- angle traces
  const PAD = {l: 36, r: 8, t: 6, b: 18};
  let base = null, yMin = 0, yMax = 180;
  names.forEach(function (name, i) {
    const s = document.createElement("span"), sw = document.createElement("i");
    sw.style.background = COLORS[i % COLORS.length];
    s.appendChild(sw); s.appendChild(document.createTextNode(name));  // text node: a name is never HTML
    legend.appendChild(s);
  });
  (function () {
    let lo = Infinity, hi = -Infinity;
    for (const n of names) for (const v of D.angles[n]) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (lo === Infinity) { lo = 0; hi = 180; }
    const step = niceStep((hi - lo) / 4 || 10);
    yMin = Math.floor(lo / step) * step; yMax = Math.ceil(hi / step) * step;
    if (yMax === yMin) yMax = yMin + step;
  })();
  function niceStep(raw) {
    const p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
    return p * (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10);
  }
  function px(i) { return PAD.l + (N > 1 ? i / (N - 1) : 0.5) * (plotW - PAD.l - PAD.r); }
  function py(v) { return PAD.t + (1 - (v - yMin) / (yMax - yMin)) * (plotH - PAD.t - PAD.b); }
  function drawPlotBase() {
    if (!names.length) return;
    // Drawn once per layout into an offscreen canvas; each frame only copies it and adds the cursor.
    base = document.createElement("canvas");
    base.width = plot.width; base.height = plot.height;
    const g = base.getContext("2d"), r = window.devicePixelRatio || 1;
    g.setTransform(r, 0, 0, r, 0, 0);
    g.fillStyle = "#fff"; g.fillRect(0, 0, plotW, plotH);
    g.font = "11px system-ui, sans-serif"; g.fillStyle = "#555"; g.strokeStyle = "#e4e4e4"; g.lineWidth = 1;
    g.textAlign = "right"; g.textBaseline = "middle";
    const step = niceStep((yMax - yMin) / 4);
    for (let v = yMin; v <= yMax + 1e-9; v += step) {
      g.beginPath(); g.moveTo(PAD.l, py(v)); g.lineTo(plotW - PAD.r, py(v)); g.stroke();
      g.fillText(Math.round(v) + "\\u00b0", PAD.l - 4, py(v));
    }
    g.textAlign = "center"; g.textBaseline = "top";
    if (D.explain.attention) {  // attention: the phase that decided, shaded from the bottom of the plot
      g.fillStyle = "rgba(230,30,30,0.18)";
      const h = plotH - PAD.b - PAD.t, w = Math.max(1, (plotW - PAD.l - PAD.r) / Math.max(1, N - 1));
      D.explain.attention.forEach(function (a, i) { g.fillRect(px(i) - w / 2, plotH - PAD.b - a * h, w, a * h); });
    }
    const fstep = Math.max(1, niceStep(N / 6));
    for (let i = 0; i < N; i += fstep) g.fillText(String(i + 1), px(i), plotH - PAD.b + 3);
    names.forEach(function (n, k) {
      const vals = D.angles[n];
      g.strokeStyle = COLORS[k % COLORS.length]; g.fillStyle = g.strokeStyle; g.lineWidth = 1.6;
      g.beginPath();
      let pen = false;
      for (let i = 0; i < N; i++) {
        if (vals[i] === null) { pen = false; continue; }  // a gap where the angle is unknown
        if (pen) g.lineTo(px(i), py(vals[i])); else g.moveTo(px(i), py(vals[i]));
        pen = true;
      }
      g.stroke();
      if (N === 1 && vals[0] !== null) { g.beginPath(); g.arc(px(0), py(vals[0]), 3, 0, 2 * Math.PI); g.fill(); }
    });
  }
  function drawCursor() {
    if (!names.length || !base) return;
    const g = plot.getContext("2d");
    g.save(); g.setTransform(1, 0, 0, 1, 0, 0); g.drawImage(base, 0, 0); g.restore();
    g.strokeStyle = "#111"; g.lineWidth = 1.5;
    g.beginPath(); g.moveTo(px(frame), PAD.t); g.lineTo(px(frame), plotH - PAD.b); g.stroke();
  }
  plot.addEventListener("click", function (e) {
    const rect = plot.getBoundingClientRect();
    const u = (e.clientX - rect.left - PAD.l) / (plotW - PAD.l - PAD.r);
    seek(Math.max(0, Math.min(N - 1, Math.round(u * (N - 1)))));
  });

  // ---- time
  function showFrame(i) {
    i = Math.max(0, Math.min(N - 1, i));
    if (i === drawn) return;
    frame = drawn = i; drawOverlay(); drawCursor();
  }
  // The epsilon absorbs float error: frame k starts at k / fps, which times fps may come out just below k.
  function frameAt(t) { return Math.floor(t * FPS + 1e-3); }
  function seek(i) {
    if (video) video.currentTime = (i + 0.5) / FPS;  // mid-frame: rounding cannot land on the previous one
    else { clockT = i / FPS; lastWall = null; }
    showFrame(i);
  }
  if (video) {
    if ("requestVideoFrameCallback" in video) {
      const onFrame = function (now, meta) { showFrame(frameAt(meta.mediaTime)); video.requestVideoFrameCallback(onFrame); };
      video.requestVideoFrameCallback(onFrame);
    } else {
      const tick = function () { showFrame(frameAt(video.currentTime)); requestAnimationFrame(tick); };
      requestAnimationFrame(tick);
    }
    video.addEventListener("seeked", function () { showFrame(frameAt(video.currentTime)); });
    video.addEventListener("loadedmetadata", layout);
    video.addEventListener("pause", function () { playing = false; showPlay(); });
    video.addEventListener("play", function () { playing = true; showPlay(); });
  } else {
    skel.checked = true; skel.disabled = true;  // without a video the skeleton is all there is
    const tick = function (wall) {
      if (playing) {
        if (lastWall !== null) clockT = (clockT + (wall - lastWall) / 1000 * rate) % (N / FPS);
        lastWall = wall;
        showFrame(frameAt(clockT));
      }
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }
  window.addEventListener("resize", layout);
  layout();
})();
</script>
</body></html>
"""

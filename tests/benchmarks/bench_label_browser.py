"""Benchmark: in headless Chromium, from a verdict key to the next clip on screen, on a project of 10,000 real
video clips (bar: median 150 ms, p95 300 ms), for the Label page and for the page before the in-browser labeller
(git commit BEFORE); then four coaches labelling at once against one server (keys lost, waits, the server's
CPU time per verdict).

Each figure is measured in the page: from the key's event time to the next clip's id on screen (the labeller's
data-clip-id; the old page's "Clip <id> · ..." caption) and to the first frame of the next clip's video on screen:
the first animation frame (checked each frame) at which the new clip's video element has a decoded frame to paint
(readyState 2 or more: at once for a clip loaded ahead; once its page and video have loaded otherwise).
Keys go at a coach's pace (--pace seconds apart; a coach watches a clip before judging it). Run as
`python tests/benchmarks/bench_label_browser.py [--quick]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BEFORE = "cb751b8"  # main before issue 14: each verdict reran the page on the server
VIDEO = ROOT.parent / "shared" / "data" / "videos" / "twix" / "knee_squat.mp4"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required", "--disable-quic"]

# Installed before any page script, so its keydown listener runs before the page's own: it notes the key's time
# and what was on screen, then watches for the next clip's id and the first frame its video presents.
PROBE = """
(() => {
  const W = window;
  W.__probe = {results: []};
  function clipId() {
    const el = document.querySelector('[data-clip-id]');
    if (el) return el.getAttribute('data-clip-id');
    for (const c of document.querySelectorAll('[data-testid="stCaptionContainer"]')) {
      if (c.closest('[data-stale="true"]')) continue;
      const m = /^Clip (\\S+) · /.exec(c.innerText);
      if (m) return m[1];
    }
    return null;
  }
  function videos() {  // the videos on screen: the labeller's shown player, or every live player frame of the page
    const on = document.querySelector('iframe.fc-player.fc-on');
    const frames = on ? [on] : Array.from(document.querySelectorAll('iframe')).filter(f => !f.closest('[data-stale="true"]'));
    const out = [];
    for (const f of frames) {
      try { const v = f.contentDocument && f.contentDocument.getElementById('video'); if (v) out.push(v); } catch (e) {}
    }
    return out;
  }
  W.addEventListener('keydown', (e) => {
    if (!['y', 'n'].includes(e.key.toLowerCase())) return;
    const r = {t0: e.timeStamp, old: clipId(), oldVideos: videos(), id: null, frame: null};
    W.__probe.current = r;
    const tick = () => {
      if (W.__probe.current !== r) return;
      const now = performance.now();
      const id = clipId();
      if (r.id === null && id && id !== r.old) { r.id = now - r.t0; r.clip = id; }
      // The next clip's video has a decoded frame to show (readyState 2+): this animation frame paints it.
      if (r.id !== null && r.frame === null &&
          videos().some(v => !r.oldVideos.includes(v) && v.isConnected && v.readyState >= 2)) {
        r.frame = now - r.t0;
      }
      if (r.id === null || r.frame === null) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }, true);
})();
"""


def make_project(folder: Path, clips: int) -> Path:
    """A project of `clips` clips of real video: knee_squat.mp4 ingested once, then copies of its video row (the
    same files) carrying clips at shifted bounds, so each clip is its own cut."""
    sys.path.insert(0, str(ROOT))
    from curation import store
    from curation.pipeline import ingest_source
    from curation.project import Project

    project = Project.open(folder)
    ingest_source(project, str(VIDEO), "squat")
    [video] = store.list_videos(project)
    base = store.list_clips(project)
    per_copy = 500
    fields = [k for k in base[0] if k not in ("id", "video_id", "start_frame", "end_frame", "created_at")]
    made = len(base)
    copy = 0
    while made < clips:
        vid = f"{video['id']}c{copy:03d}"
        rows = []
        for k in range(min(per_copy, clips - made)):
            # every clip its own bounds (so its own cut and player page): shifted start, then a shorter end
            i = made + k
            src = base[i % len(base)]
            length = src["end_frame"] - src["start_frame"]
            span = max(1, video["frames"] - length - 1)
            j = i // len(base) + 1
            start, shorter = j % span, (j // span) % max(1, length // 2)
            rows.append({**{f: src[f] for f in fields}, "id": f"{vid}_{k:04d}", "video_id": vid,
                         "start_frame": start, "end_frame": start + length - shorter})
        row = {k: v for k, v in video.items() if k not in ("created_at", "clips")}
        store.add_video(project, {**row, "id": vid, "source_key": f"{row['source_key']}#{copy}"}, rows)
        made += len(rows)
        copy += 1
    return folder


def serve(project_root: Path, script: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "FORMCHECK_DATA": str(project_root), "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                return server
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise RuntimeError("streamlit did not start")


def stop(server: subprocess.Popen) -> None:
    """Stop a server started by serve (killed when it does not stop within 30 s: a loaded machine)."""
    server.terminate()
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(10)


def server_cpu(server: subprocess.Popen) -> float:
    """CPU seconds the server process has used so far (user and system, all its threads; Linux /proc)."""
    fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sign_in(page, url: str, name: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Start labelling").wait_for()
    if "(new coach)" not in page.locator(".st-key-who_pick").inner_text():  # a known coach is preselected
        page.locator(".st-key-who_pick").click()
        page.get_by_role("option", name="(new coach)").click()
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Start labelling").click()
    page.get_by_role("button", name="Correct").first.wait_for()
    page.wait_for_timeout(2000)  # the player loads
    page.wait_for_function("document.querySelectorAll('[data-stale=\"true\"]').length === 0")
    page.evaluate("document.activeElement && document.activeElement.blur()")


def press(page, key: str, old_page: bool, dropped: list | None = None) -> dict:
    """One verdict key; returns the probe's figures once the next clip's id and video frame are on screen. A key
    that shows no next clip within 15 s counts as dropped (noted in `dropped`) and is pressed again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _attempt in range(5):
        page.keyboard.press(key)
        try:  # the labeller never drops a key on a clip: it waits for the next clip as long as it takes
            page.wait_for_function("() => { const r = window.__probe.current; return r && r.id !== null; }",
                                   timeout=15_000 if old_page else 120_000)
            break
        except PlaywrightTimeout:
            if dropped is not None:
                dropped.append(key)
            page.wait_for_function("document.querySelectorAll('[data-stale=\"true\"]').length === 0")
            page.evaluate("document.activeElement && document.activeElement.blur()")
    try:
        page.wait_for_function("() => window.__probe.current.frame !== null", timeout=20_000)
    except PlaywrightTimeout:  # no video frame of the next clip within 20 s: counted apart, never as a figure
        pass
    result = page.evaluate("() => { const r = window.__probe.current; return {id: r.id, frame: r.frame, clip: r.clip}; }")
    if old_page:  # keys pressed during its rerun are dropped: wait until it is over, as a coach learns to
        page.wait_for_function("document.querySelectorAll('[data-stale=\"true\"]').length === 0")
        page.evaluate("document.activeElement && document.activeElement.blur()")
    return result


def figures(name: str, results: list[dict]) -> dict:
    out = {}
    missing = sum(r["frame"] is None for r in results)
    if missing:
        print(f"{name}: {missing} of {len(results)} keys showed no video frame of the next clip within 20 s")
    for what in ("id", "frame"):
        values = sorted(r[what] for r in results if r[what] is not None)
        med, p95 = statistics.median(values), values[int(0.95 * (len(values) - 1))]
        out[what] = (med, p95)
    print(f"{name}: next clip's id on screen median {out['id'][0]:.0f} ms, p95 {out['id'][1]:.0f} ms; "
          f"first video frame median {out['frame'][0]:.0f} ms, p95 {out['frame'][1]:.0f} ms "
          f"(bar: median 150, p95 300; ratio median/bar {out['frame'][0] / 150:.2f}, p95/bar {out['frame'][1] / 300:.2f})")
    return out


def run_page(url: str, verdicts: int, pace: float, old_page: bool) -> list[dict]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.add_init_script(PROBE)
        page.set_default_timeout(60_000)
        sign_in(page, url, "bench")
        results, dropped = [], []
        for i in range(verdicts):
            started = time.time()
            results.append(press(page, "Y" if i % 2 else "N", old_page, dropped))
            page.wait_for_timeout(max(0, pace - (time.time() - started)) * 1000)
        browser.close()
    print(f"keys that showed no next clip (pressed again): {len(dropped)} of {verdicts + len(dropped)}")
    return results


def run_load(url: str, project_root: Path, coaches: int, verdicts: int, pace: float,
             server: subprocess.Popen | None = None) -> None:
    """`coaches` browsers on one server, keys round robin at `pace` per coach; then every key's verdict must be in.
    With the `server` process, also its CPU time from the first key until every verdict is in, per verdict (the
    server's whole handling of the labeller's messages: Streamlit's part too)."""
    from playwright.sync_api import sync_playwright

    from curation import store
    from curation.project import Project

    project = Project.open(project_root)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        pages = []
        for k in range(coaches):
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.add_init_script(PROBE)
            page.set_default_timeout(60_000)
            sign_in(page, url, f"coach{k}")
            pages.append(page)
        waits, dropped = [], []
        started = time.time()
        cpu = server_cpu(server) if server else 0.0
        for i in range(verdicts):
            round_start = time.time()
            for page in pages:
                waits.append(press(page, "Y" if i % 2 else "N", False, dropped))
            pages[0].wait_for_timeout(max(0, pace - (time.time() - round_start)) * 1000)
        deadline = time.time() + 120
        while time.time() < deadline:
            saved = {f"coach{k}": 0 for k in range(coaches)}
            for r in store.current_labels(project):
                if r["annotator"] in saved:
                    saved[r["annotator"]] += 1
            if all(v >= verdicts for v in saved.values()):
                break
            pages[0].wait_for_timeout(500)
        all_in = time.time() - started
        cpu = server_cpu(server) - cpu if server else None
        browser.close()
    lost = sum(max(0, verdicts - v) for v in saved.values())
    print(f"\n== {coaches} coaches at once on one server, {verdicts} verdicts each by keyboard ==")
    figures("waits (key to next clip)", waits)
    print(f"keys that showed no next clip: {len(dropped)}; verdicts missing at the server: {lost} of "
          f"{coaches * verdicts}; verdicts saved per coach: {saved}; "
          f"all saved {all_in:.1f} s after the first key")
    if cpu is not None:
        print(f"server CPU from the first key until all were saved: {cpu:.1f} s, "
              f"{1000 * cpu / (coaches * verdicts):.0f} ms per verdict")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 clips, 15 verdicts, 2 coaches x 8 in the load run")
    parser.add_argument("--pace", type=float, default=1.0, help="seconds between a coach's keys")
    parser.add_argument("--skip-old", action="store_true", help="measure the Label page only")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists() or not VIDEO.exists():
        print("\n== label page in the browser: skipped (needs Debian chromium and ../shared/data) ==")
        return {}
    n_clips, n_verdicts, coaches, each = (2_000, 15, 2, 8) if args.quick else (10_000, 50, 4, 20)
    sys.path.insert(0, str(ROOT))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        made = time.time()
        template = make_project(Path(tmp) / "template", n_clips)
        print(f"\n== verdict key to next clip in Chromium, {n_clips} real video clips, {n_verdicts} verdicts, "
              f"a key every {args.pace:.1f} s (project made in {time.time() - made:.0f} s) ==")
        runs = [("Label page (in-browser labeller)", "pages/2_Label.py", False)]
        if not args.skip_old:
            old = Path(tmp) / "label_before.py"
            shown = subprocess.run(["git", "show", f"{BEFORE}:pages/2_Label.py"], cwd=ROOT, capture_output=True,
                                   text=True)
            if shown.returncode == 0:
                old.write_text(shown.stdout)
                runs.append((f"page before ({BEFORE}: a rerun per verdict)", str(old), True))
            else:
                print(f"(the page before is not in this checkout: {shown.stderr.strip()})")
        for k, (name, script, is_old) in enumerate(runs):
            root = Path(tmp) / f"run{k}"
            shutil.copytree(template, root)
            script_path = script if Path(script).is_absolute() else str(ROOT / "app.py")
            server = serve(root, script_path, 8600 + k)
            try:
                url = f"http://127.0.0.1:{8600 + k}" + ("/Label" if not is_old else "")
                out[name] = figures(name, run_page(url, n_verdicts, args.pace, is_old))
            finally:
                stop(server)
        root = Path(tmp) / "load"
        shutil.copytree(template, root)
        server = serve(root, str(ROOT / "app.py"), 8610)
        try:
            run_load("http://127.0.0.1:8610/Label", root, coaches, each, args.pace, server)
        finally:
            stop(server)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])

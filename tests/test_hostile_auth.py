"""Issue 10 as found by a hostile user: pages open without sign-in, roles anyone can take, untrusted names rendered
as Markdown, and a login that lists names, cuts them, crashes on one bad line and is stored readable by all.

Each test reproduces one case as it was found on main; they fail there and pass now.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import threading
import time

import pytest
from streamlit.testing.v1 import AppTest

from curation import accounts, store
from curation.project import Project
from curation.sample import sample_project
from tests.conftest import ROOT, open_page

HOME, INGEST, LABEL, DATASET, TRAIN, SUGGEST, ADMIN = (
    "app.py", "pages/1_Ingest.py", "pages/2_Label.py", "pages/3_Dataset.py", "pages/4_Train.py",
    "pages/5_Suggest.py", "pages/6_Admin.py")
PAGES = [HOME, INGEST, LABEL, DATASET, TRAIN, SUGGEST, ADMIN]
NEEDS = {LABEL: "coach", ADMIN: "admin"}  # every other page: viewer
PEOPLE = {"vic": "viewer", "cora": "coach", "leo": "lead", "ada": "admin"}
PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def password_list(tmp_path_factory):
    """One list for the module (scrypt at full cost takes about half a second per line)."""
    path = tmp_path_factory.mktemp("list") / "passwords"
    for name in PEOPLE:
        accounts.set_password(path, name, PASSWORD)
    return path


@pytest.fixture
def shared(data_dir, tmp_path, password_list, monkeypatch) -> Project:
    """A sample project shared with sign-in by password list, one person per role."""
    path = tmp_path / "passwords"
    shutil.copy(password_list, path)
    monkeypatch.setenv("FORMCHECK_DATA", str(data_dir))
    monkeypatch.setenv(accounts.PASSWORDS_ENV, str(path))
    project = Project.open(data_dir)
    sample_project(project, clips_per_class=2)
    for name, role in PEOPLE.items():
        accounts.add_user(project, name, role, "test")
    return project


def shown(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in (at.title, at.info, at.error, at.warning, at.success, at.caption,
                                               at.markdown, at.subheader) for e in kind)


# ---------------------------------------------------------------- 1. every page behind the sign-in


@pytest.mark.parametrize("page", PAGES)
def test_every_page_asks_for_sign_in_and_shows_nothing_else(shared, page):
    at = open_page(page)
    assert at.text_input(key="auth_name") and at.text_input(key="auth_password")
    assert "Sign in" in shown(at)
    assert not at.title and not at.dataframe and not at.tabs and not at.metric  # on main: the whole page
    assert [b.label for b in at.button] == ["Sign in"]


@pytest.mark.parametrize("who", PEOPLE)
@pytest.mark.parametrize("page", PAGES)
def test_each_role_opens_the_pages_it_may_and_no_other(shared, page, who):
    at = open_page(page, who)
    allowed = accounts.allows(PEOPLE[who], NEEDS.get(page, "viewer"))
    assert bool(at.title) == allowed
    assert any("needs the" in e.value for e in at.error) != allowed
    assert f"Signed in as **{who}** ({PEOPLE[who]})" in shown(at)


def test_a_viewer_gets_no_working_action_even_by_clicking_a_disabled_button(shared):
    """On main a viewer (anyone) could export, import, edit the rubric, queue ingest jobs and train. AppTest's
    click ignores `disabled`, like a hand-made websocket message would: the action must still be refused."""
    dataset = open_page(DATASET, "vic")
    for key in ("dataset_zip", "dataset_import"):
        assert dataset.button(key=key).disabled
    dataset.button(key="dataset_zip").click().run()
    assert "dataset_zip_bytes" not in dataset.session_state
    assert any("needs the admin role" in e.value for e in dataset.error)
    assert not [b for b in dataset.get("download_button")]

    rubric = open_page(DATASET, "vic")
    before = store.list_exercises(shared)
    rubric.text_input(key="dataset_ex_name").input("box jump")
    submit = next(b for b in rubric.button if b.label == "Add exercise")
    assert submit.disabled
    submit.click().run()
    assert store.list_exercises(shared) == before

    ingest = open_page(INGEST, "vic")
    ingest.text_area(key="ingest_urls").input("https://www.youtube.com/watch?v=aaaaaaaaaaa")
    assert ingest.button[0].disabled
    ingest.button[0].click().run()
    assert store.list_jobs(shared) == []

    train = open_page(TRAIN, "cora")  # a coach labels; training is for a lead
    assert train.button[0].disabled
    train.button[0].click().run()
    assert store.list_jobs(shared) == []
    assert not [b for b in open_page(SUGGEST, "cora").button if b.key == "suggest_retrain"]


def test_the_lead_role_comes_from_the_admin_not_from_a_checkbox(shared):
    """On main "Lead coach" was a checkbox anyone could tick; a name ticked as lead that way stays a coach once
    sign-in is configured, and the Label page offers no way to become lead."""
    store.add_annotator(shared, "cora", role="lead")  # ticked in the local mode, before sign-in was configured
    coach = open_page(LABEL, "cora")
    assert not [c for c in coach.checkbox if c.key == "who_lead"]
    assert "Settle disagreements" not in coach.radio(key="label_mode").options
    lead = open_page(LABEL, "leo")
    assert "Settle disagreements" in lead.radio(key="label_mode").options


def test_an_admin_manages_users_on_the_admin_page_and_each_change_is_audited(shared):
    at = open_page(ADMIN, "ada")
    at.text_input(key="admin_name").input("nora")
    at.selectbox(key="admin_role").set_value("lead")
    at.text_input(key="admin_password").input("another long password")
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert store.get_account(shared, "nora")["role"] == "lead"
    assert accounts.check_password(accounts.password_file(), "nora", "another long password")
    at.text_input(key="admin_name").input("nora")  # a new password only: the role stays
    at.text_input(key="admin_password").input("a third long password")
    at.button[0].click().run()
    assert store.get_account(shared, "nora")["role"] == "lead"
    assert accounts.check_password(accounts.password_file(), "nora", "a third long password")

    at.selectbox(key="admin_remove_name").set_value("ada")
    at.checkbox(key="admin_remove_sure").check()
    next(b for b in at.button if b.label == "Remove").click().run()
    assert any("last admin" in e.value for e in at.error)  # the project would have nobody to manage it
    assert store.get_account(shared, "ada")["role"] == "admin"

    at.selectbox(key="admin_remove_name").set_value("nora")
    at.checkbox(key="admin_remove_sure").check()
    next(b for b in at.button if b.label == "Remove").click().run()
    assert store.get_account(shared, "nora") is None
    assert "nora" not in accounts.read_list(accounts.password_file()).entries

    log = [(a["actor"], a["action"], a["target"]) for a in store.audit_log(shared)]
    assert ("ada", "user added", "nora") in log and ("ada", "password set", "nora") in log
    assert ("ada", "user removed", "nora") in log and ("ada", "password removed", "nora") in log
    assert all(a["at"] for a in store.audit_log(shared))
    table = at.dataframe[-1].value
    assert {"user added", "user removed"} <= set(table.action)


def test_a_role_taken_away_counts_at_once_in_an_open_session(shared):
    at = open_page(DATASET, "ada")
    assert not at.button(key="dataset_zip").disabled
    accounts.set_role(shared, "leo", "admin", "test")  # so that ada is not the last admin
    accounts.remove_user(shared, "ada", "test", accounts.password_file())
    at.run()
    assert "Sign in" in shown(at) and not at.title


def test_export_and_import_are_recorded_in_the_audit_log(shared):
    at = open_page(DATASET, "ada")
    at.button(key="dataset_zip").click().run()
    assert at.session_state["dataset_zip_bytes"]
    assert [(a["actor"], a["action"]) for a in store.audit_log(shared)][0] == ("ada", "export")


def test_with_nothing_configured_everything_stays_allowed(data_dir, monkeypatch):
    """The local single-user mode: no sign-in, every action offered, the Admin page open and saying so."""
    monkeypatch.setenv("FORMCHECK_DATA", str(data_dir))
    monkeypatch.delenv(accounts.PASSWORDS_ENV, raising=False)
    sample_project(Project.open(data_dir), clips_per_class=1)
    assert not open_page(DATASET).button(key="dataset_zip").disabled
    admin = open_page(ADMIN)
    assert admin.title and any("not configured" in i.value for i in admin.info)
    label = open_page(LABEL)
    assert label.checkbox(key="who_lead")  # locally, being lead stays a choice


# ---------------------------------------------------------------- 5. untrusted text never rendered as Markdown

TRACKER_HITS: list[str] = []


def hostile_payloads(port: int) -> tuple[str, str]:
    image = f"![p](http://127.0.0.1:{port}/track.png)"
    link = f"[Session expired: log in again](http://127.0.0.1:{port}/login)"
    return image, link


def plant_hostile_text(project: Project, port: int) -> tuple[str, str]:
    """Names as a project made before import checks existed holds them, and free text (a criterion's
    description, a person's name) that is allowed today."""
    image, link = hostile_payloads(port)
    with store.connect(project) as db, store.transaction(db) as conn:
        store.ensure_exercise(conn, f"press {image}")
        for exercise in store.clip_exercises(project):  # whichever clip the Label page opens shows them
            store.ensure_criteria(conn, exercise, [f"knees {image}"])
    for exercise in store.clip_exercises(project):
        store.add_criterion(project, exercise, "heels_up", f"heels {link}")
    return image, link


def markdown_rendered(at: AppTest) -> list[str]:
    """Every text the page hands to Streamlit's Markdown renderer (bodies, alerts, captions, widget labels and
    help, expander labels)."""
    texts = [str(e.value) for kind in (at.markdown, at.caption, at.info, at.error, at.success, at.warning,
                                       at.subheader, at.title, at.header, at.toast) for e in kind]
    texts += [e.label for e in at.expander]
    for kind in (at.checkbox, at.button, at.radio, at.selectbox, at.text_input, at.text_area, at.toggle,
                 at.slider, at.number_input, at.metric):
        texts += [w.label for w in kind] + [getattr(w, "help", None) or "" for w in kind]
    return texts


@pytest.mark.parametrize("page, who", [(LABEL, "cora"), (DATASET, "vic"), (ADMIN, "ada")])
def test_imported_names_and_free_text_are_never_rendered_as_markdown(shared, page, who):
    image, link = plant_hostile_text(shared, 9)
    store.put_account(shared, "mallory", "coach", "test")  # on the Admin page's table (a dataframe: plain text)
    at = open_page(page, who)
    texts = markdown_rendered(at)
    assert not [t for t in texts if "](http" in t or "![" in t]  # on main: an image and a link rendered
    # Nor a bare URL, which GFM links even when its ':' is escaped (found in the browser test below).
    assert not [t for t in texts if re.search(r"(?i)https?://|www\.", t.replace("\\", ""))]
    if page == LABEL:  # the text itself is there, to be read as typed: the labeller's data, shown with textContent
        import json

        [labeller] = at.get("bidi_component")
        criteria = [c for card in json.loads(labeller.proto.json)["queue"] for c in card["criteria"]]
        assert f"knees {image}" in {c["title"] for c in criteria}
        assert f"heels {link}" in {c["description"] for c in criteria}
    if page == DATASET:  # shown as plain text (a select box's options)
        assert f"press {image}" in at.selectbox(key="dataset_rubric_exercise").options


# ---------------------------------------------------------------- 8. the login


def test_an_unknown_name_costs_the_same_scrypt_work_as_a_known_one(password_list, monkeypatch):
    """On main a known name took 47 ms and an unknown one 0.01 ms: the names on the list could be listed."""
    calls = []
    real = hashlib.scrypt

    def counted(*args, **kwargs):
        calls.append((kwargs["n"], kwargs["r"], kwargs["p"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counted)
    work = {}
    for name in ("vic", "nobody", "x" * 500, "bad:name"):
        calls.clear()
        assert not accounts.check_password(password_list, name, "wrong password")
        work[name] = list(calls)
    assert work["nobody"] == work["vic"] == work["x" * 500] == work["bad:name"] == [(2**17, 8, 1)]


def test_a_name_longer_than_the_limit_is_refused_never_cut(shared, tmp_path):
    """On main names were cut to 60 characters after login, so a 61-character name signed in as the
    60-character one and inherited its role."""
    victim = "A" * 60
    with pytest.raises(accounts.AccountError):
        accounts.set_password(tmp_path / "list", victim + "x", PASSWORD)
    with pytest.raises(store.StoreError):
        store.add_annotator(shared, victim + "x")
    path = accounts.password_file()
    accounts.add_user(shared, victim, "admin", "test", PASSWORD, path)
    # A line written by hand (or by main's passwd) for the longer name: skipped, reported, never signs in.
    salt = os.urandom(16)
    digest = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    with path.open("a") as f:
        f.write(f"{victim}x:{salt.hex()}:{digest.hex()}\n")
    assert any("at most 60" in p for p in accounts.read_list(path).problems)
    with pytest.raises(accounts.AccountError):
        accounts.sign_in(shared, path, victim + "x", PASSWORD)
    assert accounts.sign_in(shared, path, victim, PASSWORD).role == "admin"


def test_a_malformed_line_is_skipped_and_everyone_else_still_signs_in(shared):
    """On main one malformed line crashed every login with a traceback."""
    path = accounts.password_file()
    lines = path.read_text().splitlines()
    lines.insert(1, "cora:zz-not-hex:also-not-hex")
    lines.insert(2, "just some words")
    path.write_text("\n".join(lines) + "\n")
    problems = accounts.read_list(path).problems
    assert [p.split(":")[0] for p in problems] == ["line 2 skipped", "line 3 skipped"]
    assert "zz-not-hex" not in " ".join(problems)  # the report never repeats a line (it could hold a hash)
    at = open_page(HOME)
    at.text_input(key="auth_name").input("leo")
    at.text_input(key="auth_password").input(PASSWORD)
    at.button[0].click().run()
    assert not at.exception and at.title, [e.value for e in at.error]
    assert at.session_state["auth_account"] == "leo"
    admin = open_page(ADMIN, "ada")
    assert sum("skipped" in w.value for w in admin.warning) == 2  # the admin sees what to repair


def test_a_wrong_password_is_refused_with_one_line(shared):
    at = open_page(HOME)
    at.text_input(key="auth_name").input("leo")
    at.text_input(key="auth_password").input("not the password")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Unknown name or wrong password."]
    assert "auth_account" not in at.session_state and not at.title


def test_the_list_is_written_readable_by_its_owner_only(tmp_path):
    """On main the list was written with the umask's mode (0644: readable by everyone)."""
    path = tmp_path / "passwords"
    old = os.umask(0o022)
    try:
        path.write_text("")
        path.chmod(0o644)
        accounts.set_password(path, "dana", PASSWORD)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        accounts.remove_password(path, "dana")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, none left behind


def test_new_lines_use_owasp_scrypt_cost_and_lines_of_main_still_verify(shared):
    """On main scrypt ran at n=2**14; OWASP advises n=2**17, r=8, p=1. Lines keep their own parameters."""
    path = accounts.password_file()
    assert path.read_text().splitlines()[0].split(":")[1:5] == ["scrypt", "131072", "8", "1"]
    salt = os.urandom(16)  # a line as main's passwd wrote it
    digest = hashlib.scrypt(b"old password here", salt=salt, n=2**14, r=8, p=1, dklen=32)
    with path.open("a") as f:
        f.write(f"olga:{salt.hex()}:{digest.hex()}\n")
    assert accounts.read_list(path).entries["olga"].params == (2**14, 8, 1)
    assert accounts.sign_in(shared, path, "olga", "old password here").role == "coach"
    assert accounts.read_list(path).entries["olga"].params == (2**17, 8, 1)  # rehashed at today's cost
    assert accounts.check_password(path, "olga", "old password here")


# ---------------------------------------------------------------- the same in a real browser


def tracker():
    """An HTTP server on 127.0.0.1 that records every request (a remote image or a followed link would hit it)."""
    import http.server

    class Record(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            TRACKER_HITS.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Record)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.browser
def test_in_the_browser_every_page_needs_sign_in_and_hostile_names_stay_text(shared, monkeypatch):
    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, serve

    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    server = tracker()
    port = server.server_address[1]
    image, link = plant_hostile_text(shared, port)
    TRACKER_HITS.clear()
    app = serve(shared)
    url = next(app)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            titles = {"": "Formcheck", "Ingest": "Add videos", "Label": "Label clips", "Dataset": "Dataset",
                      "Train": "Train and evaluate", "Suggest": "What to label next", "Admin": "Users and roles"}
            for path, title in titles.items():
                page.goto(f"{url}/{path}")
                page.get_by_role("button", name="Sign in").wait_for()
                page.get_by_text("Sign in (in the sidebar) to use Formcheck.").wait_for()
                assert not page.get_by_role("heading", name=title, exact=True).count(), path
                assert not page.get_by_role("button", name=re.compile("zip|Import|Train in|Add videos")).count()

            page.goto(f"{url}/Label")
            page.get_by_role("textbox", name="Name", exact=True).fill("cora")
            page.get_by_role("textbox", name="Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("heading", name="Label clips").wait_for()
            page.get_by_role("button", name=re.compile("^Correct")).wait_for()
            criterion = page.locator(".fc-criterion", has_text="knees").first  # the labeller's criterion boxes
            criterion.wait_for()
            assert criterion.inner_text().endswith(f"knees {image}")  # shown as typed (textContent)
            assert page.locator(f"a[href*='127.0.0.1:{port}'], img[src*='127.0.0.1:{port}']").count() == 0
            page.get_by_role("link", name="Dataset").click()  # the session stays signed in across pages
            page.get_by_role("heading", name="Dataset").wait_for()
            page.get_by_role("tab", name="Import / export").click()
            assert page.get_by_role("button", name="Prepare a .zip of the dataset").is_disabled()  # a coach
            page.get_by_role("link", name="Admin").click()
            page.get_by_text("This page needs the admin role").wait_for()
            assert not page.get_by_role("heading", name="Users and roles").count()
            browser.close()
    finally:
        next(app, None)
        server.shutdown()
    time.sleep(0.5)
    assert TRACKER_HITS == []  # on main the tracking image was fetched


# ---------------------------------------------------------------- OIDC


@pytest.fixture
def oidc(data_dir, monkeypatch) -> Project:
    monkeypatch.setenv("FORMCHECK_DATA", str(data_dir))
    monkeypatch.delenv(accounts.PASSWORDS_ENV, raising=False)
    project = Project.open(data_dir)
    sample_project(project, clips_per_class=2)
    return project


def open_oidc(page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / page), default_timeout=120)
    at.secrets["auth"] = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "x" * 32,
                          "client_id": "id", "client_secret": "secret",
                          "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("page", PAGES)
def test_with_oidc_every_page_asks_to_log_in(oidc, page):
    at = open_oidc(page)
    assert [b.label for b in at.button] == ["Log in"] and not at.title


def test_with_oidc_only_an_address_an_admin_added_gets_in_with_its_role(oidc, monkeypatch):
    import ui

    monkeypatch.setattr(ui, "_oidc_name", lambda: "kim@example.org")  # as after the provider's redirect
    assert not open_oidc(DATASET).title  # signed in at the provider, unknown to the project
    accounts.add_user(oidc, "kim@example.org", "viewer", "cli:root")
    at = open_oidc(DATASET)
    assert at.title and at.button(key="dataset_zip").disabled
    assert any("needs the coach role" in e.value for e in open_oidc(LABEL).error)
    accounts.set_role(oidc, "kim@example.org", "coach", "cli:root")
    label = open_oidc(LABEL)
    assert label.title[0].value == "Label clips"
    assert "kim@example.org" in [a["name"] for a in store.list_annotators(oidc)]


def test_an_unreadable_list_says_so_in_one_line_without_the_server_path(shared):
    accounts.password_file().unlink()
    at = open_page(HOME)
    at.text_input(key="auth_name").input("leo")
    at.text_input(key="auth_password").input(PASSWORD)
    at.button[0].click().run()
    assert not at.exception and [e.value for e in at.error] == [
        "Sign-in is unavailable: the password list cannot be read. Tell the administrator."]
    assert str(accounts.password_file().parent) not in shown(at)

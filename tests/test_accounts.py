"""Accounts: the password list (hashed, salted, checked in constant time), roles, the audit log, the commands."""

import json
import stat

import pytest

from curation import accounts, store
from curation.__main__ import main
from curation.accounts import AccountError, check_password, set_password
from curation.project import Project


def test_a_set_password_checks_and_a_wrong_one_does_not(tmp_path):
    path = tmp_path / "passwords"
    set_password(path, "Dana", "correct horse")
    set_password(path, "Eli", "battery staple")
    assert check_password(path, "Dana", "correct horse")
    assert not check_password(path, "Dana", "battery staple")
    assert not check_password(path, "Nobody", "correct horse")
    assert "correct horse" not in path.read_text()  # only salted hashes are stored


def test_setting_a_password_again_replaces_the_line(tmp_path):
    path = tmp_path / "passwords"
    set_password(path, "Dana", "first password")
    set_password(path, "Dana", "second password")
    assert len(path.read_text().splitlines()) == 1
    assert check_password(path, "Dana", "second password") and not check_password(path, "Dana", "first password")


@pytest.mark.parametrize("name, password", [("", "long enough"), ("a:b", "long enough"), ("Dana", "short")])
def test_bad_names_and_short_passwords_are_refused(tmp_path, name, password):
    with pytest.raises(AccountError):
        set_password(tmp_path / "passwords", name, password)


# ---------------------------------------------------------------- roles, the audit log, the command line

@pytest.fixture
def project(data_dir) -> Project:
    return Project.open(data_dir)


def test_roles_are_ordered_viewer_coach_lead_admin():
    assert accounts.allows("admin", "lead") and accounts.allows("lead", "coach") and accounts.allows("coach", "viewer")
    assert not accounts.allows("coach", "lead") and not accounts.allows("viewer", "coach")
    assert not accounts.allows(None, "viewer") and not accounts.allows("root", "viewer")
    with pytest.raises(AccountError):
        accounts.allows("admin", "superuser")


@pytest.mark.parametrize("name", ["", "   ", "x" * 61, "a:b", "nul\x00byte", "zero\u200bwidth", "rtl\u202eevil",
                                  "bell\x07"])
def test_a_bad_name_is_refused_whole(name):
    with pytest.raises(AccountError):
        accounts.clean_name(name)


def test_a_name_is_kept_as_typed_apart_from_spaces():
    assert accounts.clean_name("  Dana \t\n Lee ") == "Dana Lee"
    assert accounts.clean_name("x" * 60) == "x" * 60
    assert accounts.clean_name("Zoë [lead]") == "Zoë [lead]"  # Markdown characters are escaped where shown


def test_roles_change_and_every_change_is_audited(project, tmp_path):
    path = tmp_path / "passwords"
    accounts.add_user(project, "ada", "admin", "cli:root", "a long password", path)
    accounts.add_user(project, "cora", "coach", "ada")
    accounts.set_role(project, "cora", "lead", "ada")
    accounts.set_role(project, "cora", "lead", "ada")  # no change, no line
    with pytest.raises(AccountError):
        accounts.set_role(project, "nobody", "lead", "ada")
    with pytest.raises(store.StoreError):
        accounts.set_role(project, "ada", "coach", "ada")  # the last admin
    accounts.remove_user(project, "cora", "ada", path)
    log = [(a["actor"], a["action"], a["target"], json.loads(a["detail"])) for a in reversed(store.audit_log(project))]
    assert log == [("cli:root", "user added", "ada", {"role": "admin"}),
                   ("cli:root", "password set", "ada", {}),
                   ("ada", "user added", "cora", {"role": "coach"}),
                   ("ada", "role set", "cora", {"role": "lead", "was": "coach"}),
                   ("ada", "user removed", "cora", {})]
    assert [u["name"] for u in accounts.list_users(project, path)] == ["ada"]


def test_a_short_password_changes_nothing(project, tmp_path):
    with pytest.raises(AccountError):
        accounts.add_user(project, "dana", "lead", "cli:root", "short", tmp_path / "passwords")
    assert store.get_account(project, "dana") is None and store.audit_log(project) == []


def test_a_name_on_the_list_without_a_role_is_a_coach(project, tmp_path, monkeypatch):
    path = tmp_path / "passwords"
    set_password(path, "eli", "battery staple")
    monkeypatch.setenv(accounts.PASSWORDS_ENV, str(path))
    assert accounts.sign_in(project, path, "eli", "battery staple") == accounts.Account("eli", "coach", "password")
    assert [a["name"] for a in store.list_annotators(project)] == ["eli"]
    assert accounts.list_users(project, path)[0] == {"name": "eli", "role": "coach", "on_password_list": True,
                                                    "created_at": None, "updated_at": None}


def test_oidc_lets_in_only_the_people_an_admin_added(project):
    assert accounts.current_account(project, "kim@example.org", "oidc") is None
    accounts.add_user(project, "kim@example.org", "viewer", "cli:root")
    assert accounts.current_account(project, "kim@example.org", "oidc").role == "viewer"


def run(capsys, monkeypatch, argv, stdin=""):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    status = main(argv)
    out = capsys.readouterr()
    return status, out.out, out.err


def test_the_user_commands_add_change_list_and_remove(data_dir, tmp_path, capsys, monkeypatch):
    path, data = tmp_path / "passwords", ["--data", str(data_dir)]
    assert run(capsys, monkeypatch, ["user", "add", "ada", "--role", "admin", "--file", str(path), *data],
               "a long password\n")[0] == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and check_password(path, "ada", "a long password")
    monkeypatch.setenv(accounts.PASSWORDS_ENV, str(path))  # the default list
    assert run(capsys, monkeypatch, ["user", "add", "kim@example.org", "--no-password", *data])[0] == 0
    assert run(capsys, monkeypatch, ["user", "role", "kim@example.org", "lead", *data])[0] == 0
    status, out, _ = run(capsys, monkeypatch, ["user", "list", *data, "--json", str(tmp_path / "u.json")])
    assert status == 0 and "kim@example.org" in out and "ada" in out
    assert {u["name"]: u["role"] for u in json.loads((tmp_path / "u.json").read_text())} == {
        "ada": "admin", "kim@example.org": "lead"}
    assert run(capsys, monkeypatch, ["user", "remove", "kim@example.org", *data])[0] == 0
    status, _, err = run(capsys, monkeypatch, ["user", "remove", "ada", *data])
    assert status == 2 and "last admin" in err
    status, _, err = run(capsys, monkeypatch, ["user", "add", "x" * 61, "--no-password", *data])
    assert status == 2 and err.count("\n") == 1 and "at most 60" in err
    assert run(capsys, monkeypatch, ["passwd", "ada", "--file", str(path), *data], "another password\n")[0] == 0
    actions = [(a["action"], a["target"]) for a in store.audit_log(Project.open(data_dir))]
    assert actions[0] == ("password set", "ada") and all(a["actor"].startswith("cli:")
                                                         for a in store.audit_log(Project.open(data_dir)))


def test_import_and_export_from_the_command_line_are_audited(data_dir, tmp_path, capsys, monkeypatch):
    from curation.sample import sample_project

    sample_project(Project.open(data_dir), clips_per_class=1)
    data = ["--data", str(data_dir)]
    assert run(capsys, monkeypatch, ["export", str(tmp_path / "out"), *data])[0] == 0
    other = tmp_path / "other"
    assert run(capsys, monkeypatch, ["import", str(tmp_path / "out"), "--data", str(other)])[0] == 0
    assert [(a["action"], a["actor"][:4]) for a in store.audit_log(Project.open(data_dir))] == [("export", "cli:")]
    assert [a["action"] for a in store.audit_log(Project.open(other))] == ["import"]


@pytest.mark.parametrize("action", ["add", "role", "remove", "list"])
def test_every_user_command_has_help(action, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["user", action, "--help"])
    assert exit_.value.code == 0 and "--data" in capsys.readouterr().out

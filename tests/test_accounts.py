"""The optional password list: hashed, salted, checked in constant time."""

import pytest

from curation.accounts import AccountError, check_password, set_password


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

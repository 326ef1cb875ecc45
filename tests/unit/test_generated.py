"""halite.generated: secrets made once per install, stored 0600, returned unchanged."""
from __future__ import annotations

import os
import re
import stat
import string

import pytest
import yaml

from halite import generated, pki


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_secret_is_stable_across_calls(tmp_path):
    first = generated.secret(tmp_path, "patroni.rest_password")
    assert generated.secret(tmp_path, "patroni.rest_password") == first
    assert generated.secret(tmp_path, "patroni.rest_password", length=64) == first  # stored wins


def test_several_names_live_in_one_file_and_differ(tmp_path):
    values = {name: generated.secret(tmp_path, name) for name in ("a", "b", "pg.replication")}
    assert len(set(values.values())) == 3
    stored = yaml.safe_load((tmp_path / "secrets.yaml").read_text())
    assert stored == values
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".lock")] == ["secrets.yaml"]


def test_the_file_is_0600_in_a_0700_directory(tmp_path, open_umask):
    directory = tmp_path / "state" / "lab"
    generated.secret(directory, "x")
    assert mode(directory / "secrets.yaml") == 0o600
    assert mode(directory) == mode(tmp_path / "state") == 0o700


def test_the_state_dir_from_the_environment_holds_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HALITE_STATE_DIR", str(tmp_path))
    value = generated.secret(pki.state_dir("lab"), "x")
    assert yaml.safe_load((tmp_path / "lab" / "secrets.yaml").read_text()) == {"x": value}


@pytest.mark.parametrize("length", [16, 32, 100])
def test_a_secret_is_length_characters_of_the_url_safe_alphabet(tmp_path, length):
    values = [generated.secret(tmp_path, f"s{i}", length=length) for i in range(20)]
    for value in values:
        assert len(value) == length
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", value), value
    assert set("".join(values)) <= set(string.ascii_letters + string.digits + "-_")


def test_every_secret_reads_back_as_the_same_string_from_yaml(tmp_path):
    values = {f"s{i}": generated.secret(tmp_path, f"s{i}", length=16) for i in range(40)}
    # a plain (unquoted) scalar too: the first letter keeps numbers and keywords away
    assert all(yaml.safe_load(f"k: {v}\n") == {"k": v} for v in values.values())
    assert yaml.safe_load((tmp_path / "secrets.yaml").read_text()) == values


def test_two_directories_give_different_secrets(tmp_path):
    assert generated.secret(tmp_path / "one", "x") != generated.secret(tmp_path / "two", "x")


def test_a_value_written_by_hand_is_returned_as_it_is(tmp_path):
    (tmp_path / "secrets.yaml").write_text("x: 'my own: password'\n")
    assert generated.secret(tmp_path, "x") == "my own: password"
    generated.secret(tmp_path, "y")
    assert yaml.safe_load((tmp_path / "secrets.yaml").read_text())["x"] == "my own: password"


def test_the_file_is_replaced_atomically_without_temporaries_left(tmp_path, open_umask, fsync_modes):
    seen = fsync_modes
    inode = None
    for name in ("a", "b"):
        generated.secret(tmp_path, name)
        assert (tmp_path / "secrets.yaml").stat().st_ino != inode  # a new file, renamed in
        inode = (tmp_path / "secrets.yaml").stat().st_ino
    assert seen == [0o600, 0o600]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "secrets.yaml"]


@pytest.mark.parametrize("name", ["", "Upper", "1st", "_x", "a-b", "a b", "a/b"])
def test_a_bad_name_is_a_value_error_naming_it(tmp_path, name):
    with pytest.raises(ValueError, match=re.escape(f"secret name {name!r}")):
        generated.secret(tmp_path, name)


def test_a_short_length_is_refused(tmp_path):
    with pytest.raises(ValueError, match="too short"):
        generated.secret(tmp_path, "x", length=8)


@pytest.mark.parametrize("content, problem", [
    ("- a\n- b\n", "holds a list"),
    ("x: 5\n", "x is 5"),
    ("x: [\n", "not valid YAML"),
])
def test_a_secrets_file_that_is_not_a_mapping_of_strings_is_refused(tmp_path, content, problem):
    (tmp_path / "secrets.yaml").write_text(content)
    with pytest.raises(ValueError, match=re.escape(problem)):
        generated.secret(tmp_path, "x")


def test_a_nasty_secret_carries_every_character_that_needs_escaping(tmp_path):
    value = generated.secret(tmp_path, "users.app.password", style="nasty")
    assert all(c in value for c in "'\"$:\\ #{}%()") and not value.isascii()
    assert len(value) == 32 + len(generated.NASTY_ASCII) + len(generated.NASTY_UNICODE)
    rest = generated.secret(tmp_path, "patroni.restapi.password", style="nasty", ascii_only=True)
    assert rest.isascii() and generated.NASTY_ASCII in rest
    # stored and read back exactly (YAML quoting of all of it)
    assert generated.secret(tmp_path, "users.app.password") == value
    with pytest.raises(ValueError, match="neither plain nor nasty"):
        generated.secret(tmp_path, "x", style="ugly")

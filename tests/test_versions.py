import pytest

from migrator.versions import Version, sort_key


def test_patch_ten_sorts_after_patch_nine():
    assert Version.parse("1.0.10") > Version.parse("1.0.9")
    assert sort_key("1.0.10") > sort_key("1.0.9")


def test_versions_sort_numerically_in_every_part():
    texts = ["10.0.0", "1.0.10", "1.0.9", "1.10.0", "1.2.0", "2.0.0", "0.0.1"]
    ordered = [str(v) for v in sorted(Version.parse(t) for t in texts)]
    assert ordered == ["0.0.1", "1.0.9", "1.0.10", "1.2.0", "1.10.0", "2.0.0", "10.0.0"]
    assert sorted(texts, key=sort_key) == ordered


@pytest.mark.parametrize(
    "text", ["1.0", "1.0.0.0", "v1.0.0", "1.0.a", "01.0.0", "1.0.0-rc.1", "", "1..0"]
)
def test_malformed_versions_are_refused_with_the_expected_form(text):
    with pytest.raises(ValueError, match=r"MAJOR\.MINOR\.PATCH"):
        Version.parse(text)


def test_version_round_trips_through_text():
    assert str(Version.parse("3.14.159")) == "3.14.159"

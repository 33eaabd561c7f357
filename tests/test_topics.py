"""The topic tagger and its taxonomy (issue 18): word-boundary matching, exact-case abbreviations, the labeled set."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest import topics
from ingest.core.errors import ConfigError
from ingest.topics import Taxonomy, Topic, load_taxonomy
from scripts.topics_quality import FIXTURE, TAXONOMY, load_headlines, main, score

pytestmark = pytest.mark.no_database  # opens no database: one run


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return load_taxonomy(TAXONOMY)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Blinatumomab Improves Survival in Pediatric B-ALL", {"leukemia", "pediatric", "immunotherapy"}),
        ("ALL Patients Deserve Biomarker Testing", set()),  # shouting: "ALL" the word, not the leukemia
        ("New Data in ALL: Inotuzumab Before Transplant", {"leukemia"}),
        ("All Eyes on the Tumor Board", set()),  # case: "All" is not "ALL"
        ("Updates in HER2-Positive Breast Cancer", {"breast"}),  # a hyphen ends a word
        ("Lymphomas of the Skin", {"lymphoma"}),  # a plural of a term
        ("Breastfeeding After Treatment", set()),  # an excluded term cancels the topic
        ("Colonoscopy Uptake", {"colorectal"}),
        ("CDK4/6 Inhibitors Beyond Progression", {"targeted-therapy"}),
        ("Ziftomenib and Revumenib in NPM1-Mutant Disease", {"leukemia", "targeted-therapy"}),  # stems, NPM1
        ("A Mabulous Week", set()),  # a stem needs a real word before it
        ("Non–Small Cell Lung Cancer With an en dash", {"lung"}),
    ],
)
def test_words_abbreviations_and_stems(taxonomy: Taxonomy, text: str, expected: set[str]) -> None:
    assert set(taxonomy.tag([text])) == expected


def test_topics_come_from_title_and_blurbs_in_taxonomy_order(taxonomy: Taxonomy) -> None:
    found = taxonomy.tag(["Perioperative Therapy Update", "Durvalumab in resectable gastric cancer, phase 3."])
    assert found == ("gi", "immunotherapy", "surgery", "trials-fda")
    assert found == tuple(s for s in taxonomy.slugs if s in found)


def test_the_labeled_headlines_meet_the_targets(capsys: pytest.CaptureFixture[str]) -> None:
    taxonomy = load_taxonomy(TAXONOMY)
    headlines = load_headlines()
    assert len(headlines) >= 60
    assert {t for _, _, labels in headlines for t in labels} == set(taxonomy.slugs)  # every topic is labeled
    for s in score(taxonomy, headlines):
        assert s.precision >= 0.95, s
        assert s.recall >= 0.9, s
    assert main(["--fail-under-precision", "0.95", "--fail-under-recall", "0.9"]) == 0
    out = capsys.readouterr().out
    assert f"{len(headlines)} labeled headlines" in out


def test_the_quality_script_fails_below_its_bounds(tmp_path: Path) -> None:
    weak = tmp_path / "topics.toml"
    weak.write_text(TAXONOMY.read_text(encoding="utf-8").replace('"lymphoma", "Hodgkin"', '"Hodgkin"'))
    assert main(["--taxonomy", str(weak), "--fixture", str(FIXTURE), "--fail-under-recall", "0.9"]) == 1


def test_extra_terms_from_the_config(taxonomy: Taxonomy) -> None:
    assert taxonomy.tag(["Phyllodes Tumors Explained"]) == ()
    assert taxonomy.with_terms({"breast": ["phyllodes"]}).tag(["Phyllodes Tumors Explained"]) == ("breast",)
    with pytest.raises(ConfigError, match="unknown topic 'brest'"):
        taxonomy.with_terms({"brest": ["x"]})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "expected [[topic]] tables"),
        ('[[topic]]\nslug = "Breast Cancer"\nname = "x"\nterms = ["x"]\n', "slug: expected lower-case letters"),
        ('[[topic]]\nslug = "b"\nname = "B"\nkind = "organ"\nterms = ["x"]\n', "kind: expected 'site' or 'cross'"),
        ('[[topic]]\nslug = "b"\nname = "B"\nterms = "breast"\n', "topic 'b': terms: expected a list"),
        ('[[topic]]\nslug = "b"\nname = "B"\n', "at least one term"),
        ('[[topic]]\nslug = "b"\nname = "B"\nterms = ["x"]\ncolour = 1\n', "unknown key 'colour'"),
        ('[[topic]]\nslug = "b"\nname = "B"\nterms = ["x"]\n[[topic]]\nslug = "b"\nname = "C"\nterms = ["y"]\n',
         "'b' is defined twice"),
        ('[[topic]]\nslug = "b"\nname = "B"\nabbreviations = ["X"]\nambiguous = ["Y"]\n', "'Y' is not one of"),
        ("[[topic]\n", "not valid TOML"),
    ],
)  # fmt: skip
def test_a_bad_taxonomy_is_named_precisely(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "topics.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        load_taxonomy(path)
    assert str(path) in str(caught.value)


def test_a_topic_record_is_what_the_file_says(taxonomy: Taxonomy) -> None:
    leukemia = taxonomy.get("leukemia")
    assert isinstance(leukemia, Topic)
    assert (leukemia.kind, "ALL" in leukemia.abbreviations, "ALL" in leukemia.ambiguous) == ("site", True, True)
    assert len([t for t in taxonomy.topics if t.kind == "site"]) == 15


def test_the_word_gate_never_changes_a_tag(taxonomy: Taxonomy, monkeypatch: pytest.MonkeyPatch) -> None:
    """Taxonomy.tag skips a pattern when the text holds none of its first words (a speed-up: tagging was two thirds of
    a first ingest pass). Every term, abbreviation and stem of the taxonomy, in several surroundings and as plurals,
    plus the labeled headlines and the bundled seed pages, must get the same topics with the gate and without it."""
    texts = [f"{title}\n{blurb}" for title, blurb, _ in load_headlines()]
    for page in sorted((Path(__file__).parent.parent / "config" / "seeds").rglob("*.txt")):
        texts.extend(page.read_text(encoding="utf-8").splitlines())
    for topic in taxonomy.topics:
        for word in (*topic.terms, *topic.abbreviations, *topic.exclude, *(f"xyz{s}" for s in topic.stems)):
            for shape in ("{}", "{}s", "{}es", "A {} update", "Data in {}: more", "x_{}_y", "({})", "a{}", "{}b"):
                texts.append(shape.format(word))
                texts.append(shape.format(word).upper())
    gated = [taxonomy.tag([t]) for t in texts]
    monkeypatch.setattr(topics, "_text_words", lambda text: None)
    assert [taxonomy.tag([t]) for t in texts] == gated
    assert sum(map(bool, gated)) > len(texts) / 2  # the texts do find topics: the comparison means something

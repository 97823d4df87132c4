"""The shipped task-vector task data (src/iclab/taskvectors/data, built by scripts/build_task_data.py)."""

import importlib.resources
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

TASKS = [
    "translation_en_fr",
    "translation_fr_en",
    "translation_en_es",
    "translation_es_en",
    "linguistic_present_simple_past_simple",
    "linguistic_present_simple_gerund",
    "linguistic_plural_singular",
    "linguistic_antonyms",
    "knowledge_country_capital",
    "knowledge_location_continent",
    "knowledge_person_sport",
    "knowledge_landmark_country",
]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build_task_data.py"
FV_DIR = Path("/work/shared/data/function_vectors")


def data_dir():
    return importlib.resources.files("iclab.taskvectors").joinpath("data")


def load(task):
    return json.loads(data_dir().joinpath(f"{task}.json").read_text(encoding="utf-8"))


def test_shipped_files_are_exactly_the_tasks():
    names = {p.name for p in data_dir().iterdir() if p.name.endswith(".json") and ".alternatives" not in p.name}
    assert names == {f"{t}.json" for t in TASKS}
    assert data_dir().joinpath("README.md").is_file()
    licence = data_dir().joinpath("LICENSE-function-vectors").read_text(encoding="utf-8")
    assert "MIT License" in licence and "Eric Todd" in licence


@pytest.mark.parametrize("task", TASKS)
def test_flat_clean_mapping(task):
    text = data_dir().joinpath(f"{task}.json").read_text(encoding="utf-8")
    assert text.endswith("\n")
    mapping = json.loads(text)
    assert isinstance(mapping, dict)
    assert len(mapping) >= 100
    assert list(mapping) == sorted(mapping)
    for k, v in mapping.items():
        assert isinstance(k, str) and isinstance(v, str)
        assert k and v and k == k.strip() and v == v.strip() and k != v
        assert "\n" not in k + v and "->" not in k + v


@pytest.mark.parametrize("task", [t for t in TASKS if t.startswith("translation_")])
def test_translation_is_lowercase_single_words(task):
    for k, v in load(task).items():
        assert k == k.lower() and v == v.lower()
        assert not any(ch.isspace() for ch in k + v)


def test_readme_counts_match_files():
    readme = data_dir().joinpath("README.md").read_text(encoding="utf-8")
    for task in TASKS:
        assert f"| `{task}.json` | {len(load(task))} |" in readme
    assert "CounterFact" in readme and "public domain" in readme and "lemminflect" in readme


def test_spot_facts():
    en_fr = load("translation_en_fr")
    assert en_fr["dog"] == "chien" and en_fr["water"] == "eau" and en_fr["cat"] == "chat"
    assert load("translation_fr_en")["chien"] == "dog"
    assert load("translation_en_es")["dog"] == "perro"
    assert load("translation_es_en")["agua"] == "water"
    past = load("linguistic_present_simple_past_simple")
    assert past["run"] == "ran" and past["take"] == "took"
    gerund = load("linguistic_present_simple_gerund")
    assert gerund["run"] == "running"
    assert set(past) <= set(gerund)
    assert all(v.endswith("ing") for v in gerund.values())
    assert load("linguistic_plural_singular")["mice"] == "mouse"
    antonyms = load("linguistic_antonyms")
    assert antonyms["true"] == "false" and antonyms["good"] == "bad"
    capitals = load("knowledge_country_capital")
    assert capitals["France"] == "Paris" and capitals["Japan"] == "Tokyo"
    continent = load("knowledge_location_continent")
    assert continent["Paris"] == "Europe"
    assert continent["Tokyo"] == "Asia"
    assert continent["Buenos Aires"] == "South America"
    assert continent["Chicago"] == "North America"
    assert continent["Sydney"] == "Oceania"
    assert continent["Nairobi"] == "Africa"
    assert continent["Brazil"] == "South America" and continent["Japan"] == "Asia"
    assert set(continent.values()) == {"Europe", "Asia", "Africa", "North America", "South America", "Oceania"}
    sport = load("knowledge_person_sport")
    assert sport["Michael Jordan"] == "basketball" and sport["Babe Ruth"] == "baseball"
    assert load("knowledge_landmark_country")["Bastille"] == "France"


def test_rebuild_is_byte_identical(tmp_path):
    if not SCRIPT.is_file():
        pytest.skip(f"build script not found at {SCRIPT} (not a source checkout)")
    if not FV_DIR.is_dir():
        pytest.skip(f"Function Vectors source data not found at {FV_DIR}")
    if importlib.util.find_spec("lemminflect") is None:
        pytest.skip("lemminflect is not installed (build-time dependency: pip install -e '.[data]')")
    readme = data_dir().joinpath("README.md").read_text(encoding="utf-8")
    tz = subprocess.run(
        [sys.executable, str(SCRIPT), "--tz-info"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if f"Time-zone source used: {tz}." not in readme:
        pytest.skip(f"this machine's tz database ({tz}) differs from the one the shipped data was built from")
    subprocess.run(
        [sys.executable, str(SCRIPT), "--fv-dir", str(FV_DIR), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    built = sorted(p.name for p in tmp_path.iterdir())
    shipped = sorted(p.name for p in data_dir().iterdir() if p.is_file() and not p.name.startswith("."))
    assert built == shipped
    for name in built:
        assert (tmp_path / name).read_bytes() == data_dir().joinpath(name).read_bytes(), name

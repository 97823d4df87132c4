#!/usr/bin/env python
"""Build the shipped task-vector task data (Hendel, Geva, Globerson 2023, section 3).

Writes flat JSON objects ``{"input": "output", ...}`` into ``src/iclab/taskvectors/data/``,
plus ``README.md`` (sources, transformations, pair counts, licences) and ``LICENSE-function-vectors``.

Deterministic and offline: the same inputs give byte-identical files.

Sources:
  * the MIT-licensed Function Vectors task data (Todd et al. 2024), ``--fv-dir``;
  * the IANA time-zone database (public domain): ``/usr/share/zoneinfo``, else the PyPI ``tzdata`` package;
  * the PyPI package ``lemminflect==0.2.3`` (MIT) for gerunds (build-time only: ``pip install .[data]``).

Usage:
  python scripts/build_task_data.py [--fv-dir DIR] [--out DIR]
  python scripts/build_task_data.py --tz-info   # print the time-zone source and version that would be used
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FV_DIR = Path("/work/shared/data/function_vectors")
DEFAULT_OUT = REPO / "src" / "iclab" / "taskvectors" / "data"
SYSTEM_ZONEINFO = Path("/usr/share/zoneinfo")

Pairs = list[tuple[str, str]]

# The only hand-written geography fact: ISO 3166 codes whose America/ zones count as South America.
SOUTH_AMERICA = frozenset("AR BO BR CL CO EC FK GF GY PE PY SR UY VE".split())
# Zone regions kept, and their continent label (America/ is split by country code).
TZ_REGIONS = {
    "Europe": "Europe",
    "Asia": "Asia",
    "Africa": "Africa",
    "America": None,
    "Australia": "Oceania",
}

FV_LICENCE = "MIT, Copyright (c) 2023 Eric Todd (see `LICENSE-function-vectors`)"


# --------------------------------------------------------------------------------------------------
# Cleaning
# --------------------------------------------------------------------------------------------------


def clean(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Strip, drop empty / identity / newline / '->' pairs, keep the first pair per input in sorted order."""
    kept: list[tuple[str, str]] = []
    for inp, out in pairs:
        inp, out = inp.strip(), out.strip()
        if not inp or not out or inp == out:
            continue
        if any("\n" in s or "->" in s for s in (inp, out)):
            continue
        kept.append((inp, out))
    result: dict[str, str] = {}
    for inp, out in sorted(kept):
        result.setdefault(inp, out)
    return result


def invert(mapping: dict[str, str]) -> Pairs:
    """Swap inputs and outputs; `clean` then keeps the alphabetically first value per duplicate key."""
    return [(out, inp) for inp, out in mapping.items()]


def is_single_word(s: str) -> bool:
    return bool(s) and not any(ch.isspace() for ch in s)


def lowercase_single_words(pairs: Iterable[tuple[str, str]]) -> Pairs:
    """Keep pairs whose two sides are already lowercase single alphabetic words (accents allowed)."""
    return [
        (i, o)
        for i, o in ((i.strip(), o.strip()) for i, o in pairs)
        if i.isalpha() and o.isalpha() and i == i.lower() and o == o.lower()
    ]


def alternatives(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Every output the source lists per input, for inputs with more than one (the synonym comparator)."""
    out: dict[str, set[str]] = {}
    for i, o in pairs:
        out.setdefault(i, set()).add(o)
    return {i: sorted(v) for i, v in sorted(out.items()) if len(v) > 1}


def load_fv(fv_dir: Path, name: str) -> Pairs:
    with open(fv_dir / "abstractive" / f"{name}.json", encoding="utf-8") as f:
        rows = json.load(f)
    return [(str(r["input"]), str(r["output"])) for r in rows]


# --------------------------------------------------------------------------------------------------
# Time-zone database
# --------------------------------------------------------------------------------------------------


def tz_source() -> tuple[str, str, dict[str, str]]:
    """Return (description, version, {filename: text}) for zone.tab and iso3166.tab.

    Prefers the system database in /usr/share/zoneinfo, falls back to the PyPI `tzdata` package.
    """
    names = ("zone.tab", "iso3166.tab", "tzdata.zi")
    if all((SYSTEM_ZONEINFO / n).is_file() for n in names[:2]):
        present = [n for n in names if (SYSTEM_ZONEINFO / n).is_file()]
        texts = {n: (SYSTEM_ZONEINFO / n).read_text(encoding="utf-8") for n in present}
        desc = "system IANA tz database, `/usr/share/zoneinfo`"
    else:
        try:
            root = importlib.resources.files("tzdata").joinpath("zoneinfo")
        except ModuleNotFoundError as exc:  # pragma: no cover - depends on the machine
            raise SystemExit("no IANA tz database: neither /usr/share/zoneinfo nor the `tzdata` package") from exc
        texts = {n: root.joinpath(n).read_text(encoding="utf-8") for n in names if root.joinpath(n).is_file()}
        desc = "IANA tz database from the PyPI `tzdata` package (`tzdata/zoneinfo`)"
    version = "unknown"
    for line in texts.get("tzdata.zi", "").splitlines()[:5]:
        if line.startswith("# version "):
            version = line.removeprefix("# version ").strip()
    return desc, version, texts


def tab_rows(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines() if line.strip() and not line.startswith("#")]


def zone_continent(code: str, zone: str) -> str | None:
    region = zone.split("/", 1)[0]
    if region not in TZ_REGIONS:
        return None
    if region == "America":
        return "South America" if code in SOUTH_AMERICA else "North America"
    return TZ_REGIONS[region]


def location_continent_pairs(texts: dict[str, str]) -> tuple[Pairs, dict[str, int]]:
    zones = [(r[0], r[2]) for r in tab_rows(texts["zone.tab"])]  # (country code, zone id), file order
    countries = {r[0]: r[1].strip() for r in tab_rows(texts["iso3166.tab"])}
    candidates: dict[str, set[str]] = {}
    stats = {"cities": 0, "countries": 0}
    for code, zone in zones:
        continent = zone_continent(code, zone)
        if continent is None:
            continue
        city = zone.rsplit("/", 1)[-1].replace("_", " ")
        candidates.setdefault(city, set()).add(continent)
        stats["cities"] += 1
    first_zone: dict[str, str] = {}
    for code, zone in zones:
        first_zone.setdefault(code, zone)
    for code, name in sorted(countries.items()):
        if code not in first_zone:
            continue
        continent = zone_continent(code, first_zone[code])
        if continent is None:
            continue
        candidates.setdefault(name, set()).add(continent)
        stats["countries"] += 1
    ambiguous = sorted(k for k, v in candidates.items() if len(v) > 1)
    stats["ambiguous_dropped"] = len(ambiguous)
    pairs = [(k, next(iter(v))) for k, v in sorted(candidates.items()) if len(v) == 1]
    return pairs, stats


# --------------------------------------------------------------------------------------------------
# Gerunds
# --------------------------------------------------------------------------------------------------


def gerund_pairs(verbs: Iterable[str]) -> Pairs:
    try:
        import lemminflect
    except ModuleNotFoundError as exc:
        msg = "lemminflect is required: pip install 'lemminflect==0.2.3' (or `pip install .[data]`)"
        raise SystemExit(msg) from exc
    pairs = []
    for verb in sorted(set(verbs)):
        forms = lemminflect.getInflection(verb, "VBG")
        if forms:
            pairs.append((verb, forms[0]))
    return pairs


# --------------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------------


def build(fv_dir: Path) -> tuple[dict[str, dict[str, str]], dict[str, str], dict[str, str], dict[str, dict[str, list[str]]]]:
    """Return ({task_id: mapping}, {task_id: provenance markdown}, tz info, {task_id: alternatives})."""
    data: dict[str, dict[str, str]] = {}
    notes: dict[str, str] = {}
    alts: dict[str, dict[str, list[str]]] = {}

    def fv(name: str) -> str:
        return f"Function Vectors `abstractive/{name}.json`"

    for code, lang, source in (("fr", "French", "english-french"), ("es", "Spanish", "english-spanish")):
        raw = lowercase_single_words(load_fv(fv_dir, source))
        forward, backward = f"translation_en_{code}", f"translation_{code}_en"
        alts[forward] = alternatives(raw)
        alts[backward] = alternatives((o, i) for i, o in raw)
        data[forward] = clean(raw)
        notes[forward] = f"{fv(source)}; lowercase single-word pairs only."
        data[backward] = clean(invert(data[forward]))
        notes[backward] = (
            f"Inversion of `{forward}`; on duplicate {lang} keys the alphabetically first English value is kept."
        )

    present_past = load_fv(fv_dir, "present-past")
    data["linguistic_present_simple_past_simple"] = clean(present_past)
    notes["linguistic_present_simple_past_simple"] = (
        f"{fv('present-past')}, as is (so verbs with an unchanged past, e.g. set -> set, are dropped)."
    )
    data["linguistic_present_simple_gerund"] = clean(gerund_pairs(i.strip() for i, _ in present_past if i.strip()))
    notes["linguistic_present_simple_gerund"] = (
        f"Base verbs = the inputs of {fv('present-past')} (all of them); gerund = "
        '`lemminflect.getInflection(verb, "VBG")[0]` (lemminflect 0.2.3); verbs with no result are skipped.'
    )
    data["linguistic_plural_singular"] = clean(invert(clean(load_fv(fv_dir, "singular-plural"))))
    notes["linguistic_plural_singular"] = (
        f"Inversion of {fv('singular-plural')} (mostly regular plurals, unlike the paper's irregular-only list)."
    )
    data["linguistic_antonyms"] = clean(
        (i, o) for i, o in load_fv(fv_dir, "antonym") if is_single_word(i.strip()) and is_single_word(o.strip())
    )
    notes["linguistic_antonyms"] = f"{fv('antonym')}; single-word pairs only."

    data["knowledge_country_capital"] = clean(load_fv(fv_dir, "country-capital"))
    notes["knowledge_country_capital"] = f"{fv('country-capital')}; surrounding whitespace stripped."

    tz_desc, tz_version, tz_texts = tz_source()
    loc_pairs, loc_stats = location_continent_pairs(tz_texts)
    data["knowledge_location_continent"] = clean(loc_pairs)
    notes["knowledge_location_continent"] = (
        f"Built from the {tz_desc}, version {tz_version}: `zone.tab` and `iso3166.tab`. "
        "Inputs are (a) city names, the last component of each zone id in `zone.tab` with `_` replaced by a space "
        f"({loc_stats['cities']} zones), and (b) country names from `iso3166.tab`, whose continent is that of the "
        f"country's first zone in `zone.tab` ({loc_stats['countries']} countries). Only the zone regions Europe, "
        "Asia, Africa, America and Australia are used (Antarctica/Arctic/Atlantic/Indian/Pacific/Etc zones are "
        "skipped, and so are countries whose first zone lies in one of them). Labels: Europe, Asia, Africa, "
        "Oceania (for Australia/), and North America / South America for America/ zones, split by the zone's "
        "ISO country code: South America = {" + ", ".join(sorted(SOUTH_AMERICA)) + "}, all other America zones = "
        "North America. That list is the only hand-written geography fact. Inputs that would map to two "
        f"continents are dropped ({loc_stats['ambiguous_dropped']} dropped)."
    )

    data["knowledge_person_sport"] = clean(load_fv(fv_dir, "person-sport"))
    notes["knowledge_person_sport"] = (
        f"{fv('person-sport')}, as is. **Substitute** for the paper's `knowledge_person_language` (person -> "
        "language, CounterFact P1412): also a person -> small label set."
    )
    data["knowledge_landmark_country"] = clean(load_fv(fv_dir, "landmark-country"))
    notes["knowledge_landmark_country"] = (
        f"{fv('landmark-country')}, as is. **Substitute** for the paper's `knowledge_location_religion` (location "
        "-> Christian/Jewish/Muslim, CounterFact P140): also a location -> categorical attribute."
    )
    for task, alt in alts.items():  # only inputs that survived cleaning, each list holding the gold output
        alts[task] = {i: v for i, v in alt.items() if i in data[task] and data[task][i] in v}
        notes[task] += (
            f" `{task}.alternatives.json` lists every translation the source gives for {len(alts[task])} inputs"
            " with several; any of them counts as correct (the paper's WordNet synonym match needs data we lack)."
        )
    return data, notes, {"desc": tz_desc, "version": tz_version}, alts


LICENCES = {
    "linguistic_present_simple_gerund": (
        "inputs: " + FV_LICENCE + "; gerund outputs generated by lemminflect (MIT)"
    ),
    "knowledge_location_continent": "IANA tz database: public domain",
}


def readme(data: dict[str, dict[str, str]], notes: dict[str, str], tz: dict[str, str]) -> str:
    lines = [
        "# Task data for the task-vector experiments",
        "",
        "Generated by `scripts/build_task_data.py`; do not edit by hand (re-run the script instead).",
        "Each `<task_id>.json` is a flat JSON object `{\"input\": \"output\", ...}` with sorted keys, UTF-8.",
        "",
        "All files are cleaned the same way: surrounding whitespace stripped; empty pairs, pairs with "
        "input == output, and pairs containing a newline or `->` dropped; for duplicate inputs the first pair in "
        "sorted (input, output) order is kept.",
        "",
        f"Time-zone source used: {tz['desc']}, version {tz['version']}.",
        "",
        "| file | pairs | licence |",
        "|---|---:|---|",
    ]
    for task in sorted(data):
        lines.append(f"| `{task}.json` | {len(data[task])} | {LICENCES.get(task, FV_LICENCE)} |")
    lines += ["", "## Sources and transformations", ""]
    for task in sorted(data):
        lines.append(f"- `{task}.json` ({len(data[task])} pairs): {notes[task]}")
    lines += [
        "",
        "## Substitutions",
        "",
        "The paper's knowledge tasks are built from CounterFact, which is not available offline. Two of them have no "
        "offline equivalent here and are replaced by tasks of the same shape from the Function Vectors data:",
        "",
        "- `knowledge_person_language` -> `knowledge_person_sport` (a person -> a small label set).",
        "- `knowledge_location_religion` -> `knowledge_landmark_country` (a location -> a categorical attribute).",
        "",
        "`knowledge_country_capital` uses the Function Vectors list and `knowledge_location_continent` the IANA tz "
        "database instead of CounterFact.",
        "",
        "## Licences",
        "",
        "- Function Vectors data (Todd et al., ICLR 2024, ericwtodd/function_vectors): " + FV_LICENCE + ".",
        "- Gerund outputs: generated with lemminflect 0.2.3 (MIT).",
        "- IANA tz database (`zone.tab`, `iso3166.tab`): public domain.",
        "",
    ]
    return "\n".join(lines)


def write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fv-dir", type=Path, default=DEFAULT_FV_DIR, help="Function Vectors data directory")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--tz-info", action="store_true", help="print the tz source and version, then exit")
    args = parser.parse_args(argv)

    if args.tz_info:
        desc, version, _ = tz_source()
        print(f"{desc}, version {version}")
        return 0

    data, notes, tz, alts = build(args.fv_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    for task, mapping in sorted(data.items()):
        text = json.dumps(mapping, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
        write_text(args.out / f"{task}.json", text)
    for task, alt in sorted(alts.items()):
        text = json.dumps(alt, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
        write_text(args.out / f"{task}.alternatives.json", text)
    write_text(args.out / "README.md", readme(data, notes, tz))
    shutil.copyfile(args.fv_dir / "LICENSE", args.out / "LICENSE-function-vectors")
    for task in sorted(data):
        print(f"{len(data[task]):6d}  {task}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

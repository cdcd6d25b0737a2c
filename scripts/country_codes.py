"""Regenerate panorama_elt/data/country_codes.csv from the countryinfo package (MIT licence).

    python -m venv /tmp/cc && /tmp/cc/bin/pip install countryinfo==1.0.1
    /tmp/cc/bin/python scripts/country_codes.py > panorama_elt/data/country_codes.csv

One row per ISO 3166-1 country in countryinfo's data: alpha-2, alpha-3, English name, and the
latitude/longitude of its representative point (countryinfo's ``latlng``).
"""

from __future__ import annotations

import csv
import sys

from countryinfo import all_countries


# countryinfo has two entries for these codes: keep the one named as ISO 3166 names it.
PREFERRED = {"MM": "Myanmar", "VA": "Holy See (Vatican City State)"}


def main() -> None:
    rows = {}
    for country in all_countries():
        info = country.info()
        iso = info.get("ISO") or {}
        code = iso.get("alpha2")
        # Entries without an ISO numeric code are not ISO 3166-1 countries (Wales, AN).
        if not code or not iso.get("numeric") or PREFERRED.get(code, info["name"]) != info["name"]:
            continue
        latlng = info.get("latlng") or ["", ""]  # a few territories have no point: NULL
        rows[code] = (code, iso.get("alpha3", ""), info["name"], latlng[0], latlng[1])
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(("alpha2_code", "alpha3_code", "name", "latitude", "longitude"))
    out.writerows(sorted(rows.values()))


if __name__ == "__main__":
    main()

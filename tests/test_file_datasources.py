"""csv and xls datasources: awkward values round-trip cell for cell through the typed views; bad
files fail their table with the file, line and cause, and register nothing."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from click.testing import CliRunner

from panorama_elt.cli import main
from panorama_elt.datasources.source_settings import CsvSettings, XlsSettings
from tests.conftest import local_datalake, write_settings

# Awkward cells, as a spreadsheet user would type them.
AWKWARD = [
    ["1", 'say "hi"', "a,b", "x"],
    ["2", "line one\nline two", "back\\slash \\N", "NULL"],
    ["3", "", "emoji 😀 ñ 東京", "\r\nCRLF inside"],
    ["4", "'single'", "trailing space ", ""],
]
FIELDS = ["id", "text", "other", "last"]


def cli(settings: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["--settings", str(settings), *args], catch_exceptions=False)


def csv_text(rows: list[list[str]], header: list[str] | None = FIELDS, sep: str = ",") -> str:
    """CSV written by hand: every field quoted, quotes doubled, CRLF line ends (as Excel does)."""
    lines = [header] if header else []
    lines += rows
    return "".join(
        sep.join('"' + cell.replace('"', '""') + '"' for cell in line) + "\r\n" for line in lines
    )


def csv_settings(tmp_path: Path, data: Path, **extra: Any) -> Path:
    source = {
        "type": "csv",
        "name": "sheet",
        "location": str(data),
        "tables": {"name": "people", "fields": [{"name": f, "type": "varchar"} for f in FIELDS]},
        **extra,
    }
    return write_settings(tmp_path / "settings.yaml", local_datalake(tmp_path / "lake"), [source])


def load(settings: Path) -> Any:
    for command in ("create-datalake-tables", "create-datalake-views"):
        result = cli(settings, command, "--tables", "people")
        assert result.exit_code == 0, result.output
    return cli(settings, "extract-and-load", "--tables", "people")


def view_rows(tmp_path: Path, name: str = "openedx_table_people") -> list[tuple[Any, ...]]:
    with duckdb.connect(str(tmp_path / "lake" / "panorama.duckdb"), read_only=True) as db:
        return db.execute(f'SELECT * EXCLUDE (lms) FROM "{name}" ORDER BY 1').fetchall()


@pytest.mark.parametrize("bom", [False, True])
def test_awkward_csv_round_trips(tmp_path: Path, bom: bool) -> None:
    data = tmp_path / "people.csv"
    data.write_bytes((b"\xef\xbb\xbf" if bom else b"") + csv_text(AWKWARD).encode("utf-8"))
    result = load(csv_settings(tmp_path, data))
    assert result.exit_code == 0, result.output
    assert view_rows(tmp_path) == [tuple(row) for row in AWKWARD]


def test_null_value_and_no_header_and_delimiter(tmp_path: Path) -> None:
    data = tmp_path / "people.csv"
    rows = [["1", "NULL", "\\N", "null"], ["2", "", "NULL", "x;y"]]
    data.write_text(csv_text(rows, header=None, sep=";"), encoding="utf-8")
    settings = csv_settings(tmp_path, data, header=False, delimiter=";", null_value="NULL")
    result = load(settings)
    assert result.exit_code == 0, result.output
    assert view_rows(tmp_path) == [("1", None, "\\N", "null"), ("2", "", None, "x;y")]


def test_latin1_file_with_typed_fields(tmp_path: Path) -> None:
    data = tmp_path / "people.csv"
    data.write_bytes("id;name;score\n7;Zoë Ñandú;2.5\n8;Ågot;-1\n".encode("latin-1"))
    source = {
        "type": "csv",
        "name": "sheet",
        "location": str(data),
        "delimiter": ";",
        "encoding": "latin-1",
        "tables": [
            {
                "name": "people",
                "fields": [
                    {"name": "score", "type": "double"},
                    {"name": "id", "type": "int"},
                    {"name": "name", "type": "varchar"},
                ],
            }
        ],
    }
    settings = write_settings(tmp_path / "s.yaml", local_datalake(tmp_path / "lake"), [source])
    result = load(settings)
    assert result.exit_code == 0, result.output
    # Columns are matched to fields by header name, whatever their order in the file.
    assert view_rows(tmp_path) == [(-1.0, 8, "Ågot"), (2.5, 7, "Zoë Ñandú")]


def test_set_tables_fields_reads_the_header(tmp_path: Path) -> None:
    data = tmp_path / "people.csv"
    data.write_text("User ID,First Name,2nd,user id\n1,Ann,b,c\n", encoding="utf-8")
    settings = write_settings(
        tmp_path / "settings.yaml",
        local_datalake(tmp_path / "lake"),
        [{"type": "csv", "name": "sheet", "location": str(data), "tables": {"name": "people"}}],
    )
    result = cli(settings, "set-tables-fields", "--all")
    assert result.exit_code == 0, result.output
    assert result.output == "sheet.people: 4 fields\n"
    written = yaml.safe_load(settings.read_text())["datasources"][0]["tables"]
    assert written["fields"] == [
        {"name": "user_id", "type": "varchar"},
        {"name": "first_name", "type": "varchar"},
        {"name": "_2nd", "type": "varchar"},
        {"name": "user_id_2", "type": "varchar"},
    ]
    assert load(settings).exit_code == 0
    with duckdb.connect(str(tmp_path / "lake" / "panorama.duckdb"), read_only=True) as db:
        assert db.execute('SELECT * FROM "openedx_table_people"').fetchall() == [
            ("1", "Ann", "b", "c", "lms.example.com")
        ]


GOOD = csv_text(AWKWARD)


@pytest.mark.parametrize(
    "content, message",
    [
        (GOOD + '"5","a","b"\r\n', "people.csv: line 8: 3 fields, expected 4 (too few)"),
        (GOOD + '"5","a","b","c","d"\r\n', "people.csv: line 8: 5 fields, expected 4 (too many)"),
        (
            GOOD.encode() + b'"5","caf\xe9","b","c"\r\n',
            "people.csv: line 8: not valid utf-8: invalid continuation byte",
        ),
        (GOOD + '"5","open quote,"b","c"\r\n', "people.csv: line 8: "),
        (None, "people.csv: file not found"),
        (b"", "people.csv: the file is empty"),
    ],
)
def test_bad_file_fails_its_table_and_registers_nothing(
    tmp_path: Path, content: str | bytes | None, message: str
) -> None:
    data = tmp_path / "people.csv"
    settings = csv_settings(tmp_path, data)
    data.write_text(csv_text(AWKWARD[:1]), encoding="utf-8")
    assert load(settings).exit_code == 0  # a first good load
    if content is None:
        data.unlink()
    else:
        data.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    result = cli(settings, "extract-and-load", "--tables", "people")
    assert result.exit_code == 1
    [line] = [x for x in result.output.splitlines() if x.startswith("people ")]
    assert "FAILED: " in line and message in line, line
    # The rows of the last good load are still what the lake shows.
    assert view_rows(tmp_path) == [tuple(AWKWARD[0])]


def test_header_without_a_configured_field(tmp_path: Path) -> None:
    data = tmp_path / "people.csv"
    data.write_text("id,text\n1,a\n", encoding="utf-8")
    result = load(csv_settings(tmp_path, data))
    assert result.exit_code == 1
    assert "people.csv: the header has no column other, last (it has id, text)" in result.output


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"delimiter": ";;"}, "datasources[0].delimiter: must be one character"),
        ({"encoding": "klingon"}, "datasources[0].encoding: unknown encoding 'klingon'"),
        ({"header": "maybe"}, "datasources[0].header: must be true or false"),
        ({"quotechar": ","}, "datasources[0].quotechar: must differ from the delimiter"),
        ({"location": None}, "datasources[0].location: is required"),
        ({"sheet": "x"}, "datasources[0].sheet: unknown key"),
    ],
)
def test_bad_csv_settings(tmp_path: Path, extra: dict[str, Any], message: str) -> None:
    settings = csv_settings(tmp_path, tmp_path / "x.csv", **extra)
    result = cli(settings, "test-connections")
    assert result.exit_code == 2
    assert message in result.output


def test_csv_tables_hold_one_table(tmp_path: Path) -> None:
    source = {
        "type": "csv",
        "name": "sheet",
        "location": "x.csv",
        "tables": [{"name": "a"}, {"name": "b"}],
    }
    settings = write_settings(tmp_path / "s.yaml", local_datalake(tmp_path / "lake"), [source])
    result = cli(settings, "test-connections")
    assert result.exit_code == 2
    assert "datasources[0].tables: a csv datasource is one file: give it one table" in result.output


# xls (xlsx workbooks)


def workbook(path: Path) -> Path:
    """A workbook as a user keeps it: awkward text, numbers, dates, empty cells, two sheets."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Grades 2024"
    sheet.append(["Student", "Score", "Date", "Note"])
    sheet.append(['say "hi", ok', 95, datetime(2024, 3, 1), "line one\nline two"])
    sheet.append(["back\\slash \\N", 2.5, datetime(2024, 3, 2, 14, 30, 5), "NULL"])
    sheet.append(["emoji 😀 東京", 0.1, date(2024, 3, 3), None])
    sheet.append([None, None, None, None])  # a blank row
    sheet.append([None, -3.0, None, True])
    for row in (2, 4):
        sheet.cell(row=row, column=3).number_format = "yyyy-mm-dd"
    other = book.create_sheet("courses")
    other.append(["id", "name"])
    other.append([1, "Intro"])
    book.save(path)
    return path


def xls_settings(tmp_path: Path, tables: list[dict[str, Any]]) -> Path:
    source = {
        "type": "xls",
        "name": "book",
        "location": str(workbook(tmp_path / "book.xlsx")),
        "tables": tables,
    }
    return write_settings(tmp_path / "settings.yaml", local_datalake(tmp_path / "lake"), [source])


def test_xlsx_sheets_round_trip(tmp_path: Path) -> None:
    settings = xls_settings(
        tmp_path, [{"name": "grades", "sheet": "Grades 2024"}, {"name": "courses"}]
    )
    result = cli(settings, "test-connections")
    assert "book.xlsx: sheets Grades 2024, courses" in result.output
    result = cli(settings, "set-tables-fields", "--all")
    assert result.exit_code == 0, result.output
    for command in ("create-datalake-tables", "create-datalake-views", "extract-and-load"):
        result = cli(settings, command, "--tables", "grades,courses")
        assert result.exit_code == 0, result.output
    assert view_rows(tmp_path, "openedx_table_grades") == [
        ("back\\slash \\N", "2.5", "2024-03-02 14:30:05", "NULL"),
        ("emoji 😀 東京", "0.1", "2024-03-03", None),
        ('say "hi", ok', "95", "2024-03-01", "line one\nline two"),
        (None, "-3", None, "TRUE"),
    ]
    assert view_rows(tmp_path, "openedx_table_courses") == [("1", "Intro")]


def test_set_tables_lists_the_sheets(tmp_path: Path) -> None:
    settings = xls_settings(tmp_path, [])
    result = cli(settings, "set-tables", "--datasource", "book")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(settings.read_text())["datasources"][0]["tables"] == [
        {"name": "grades_2024", "sheet": "Grades 2024"},
        {"name": "courses"},
    ]
    assert cli(settings, "set-tables-fields", "--all").exit_code == 0
    for command in ("create-datalake-tables", "create-datalake-views", "extract-and-load"):
        assert cli(settings, command, "--all").exit_code == 0
    assert view_rows(tmp_path, "openedx_table_courses") == [("1", "Intro")]
    result = cli(settings, "set-tables")
    assert result.exit_code == 2
    assert "--tables is required (only an xls datasource lists its sheets)" in result.output


def test_xlsx_missing_sheet_and_not_a_workbook(tmp_path: Path) -> None:
    settings = xls_settings(
        tmp_path, [{"name": "grades", "fields": [{"name": "student", "type": "varchar"}]}]
    )
    result = load_table(settings, "grades")
    assert "book.xlsx: no sheet 'grades' (sheets: Grades 2024, courses)" in result.output
    (tmp_path / "book.xlsx").write_text("not a zip", encoding="utf-8")
    result = cli(settings, "extract-and-load", "--tables", "grades")
    assert result.exit_code == 1
    assert "book.xlsx: not an xlsx workbook: File is not a zip file" in result.output


def load_table(settings: Path, table: str) -> Any:
    for command in ("create-datalake-tables", "create-datalake-views"):
        assert cli(settings, command, "--tables", table).exit_code == 0
    result = cli(settings, "extract-and-load", "--tables", table)
    assert result.exit_code == 1
    return result


def test_readme_file_datasource_examples_are_valid_settings(tmp_path: Path) -> None:
    from panorama_elt.settings import parse_settings
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in readme.split("```yaml\n")[1:]]
    examples = [yaml.safe_load(b) for b in blocks if b.startswith(("- type: csv", "- type: xls"))]
    assert [e[0]["type"] for e in examples] == ["csv", "xls"]
    document = {"datalake": local_datalake(tmp_path / "lake"), "datasources": sum(examples, [])}
    settings = parse_settings(document, tmp_path / "settings.yaml")
    assert [t.name for t in settings.tables] == ["institutions", "grades", "courses"]
    csv = settings.datasources[0].block(CsvSettings)
    xls = settings.datasources[1].block(XlsSettings)
    assert csv is not None and csv.null_value == "NULL"
    assert xls is not None
    assert xls.sheet("grades") == "Grades 2024"
    assert xls.sheet("courses") == "courses"


def test_large_csv_streams_in_flat_memory(tmp_path: Path) -> None:
    """Reading a 6 MB file holds one batch at a time, not the file (Python allocations)."""
    import tracemalloc

    from panorama_elt.datasources.csv_files import CsvDatasource
    from panorama_elt.settings import load_settings

    data = tmp_path / "people.csv"
    row = '"{}","' + "x" * 80 + '","a,b","line\nbreak"\r\n'
    with data.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(FIELDS) + "\r\n")
        for i in range(50_000):
            out.write(row.format(i))
    assert data.stat().st_size > 5_000_000
    settings = load_settings(csv_settings(tmp_path, data))
    source = CsvDatasource(settings.datasources[0])
    extraction = source.extract(settings.tables[0], force=True, mark=None)
    assert extraction.batches is not None
    tracemalloc.start()
    try:
        rows = 0
        for batch in extraction.batches:
            rows += len(batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == 50_000
    assert peak < 2_000_000, peak

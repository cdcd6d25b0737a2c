"""A test-side reader that splits lines the way Athena's OpenCSVSerde does.

OpenCSVSerde reads text files line by line (Hadoop's TextInputFormat: LF, CR or CRLF end a
record, so no field can span lines) and parses each line with opencsv 2.3's CSVParser using the
table's separatorChar, quoteChar and escapeChar. The escape character only escapes the quote
character or itself, and only inside a quoted field; before any other character it is dropped.
A quote in the middle of a field is kept; a line ending inside quotes is an error.
"""

from __future__ import annotations

import re

SEPARATOR, QUOTE, ESCAPE = ",", '"', "\\"


def split_records(text: str) -> list[str]:
    """Records as TextInputFormat sees them."""
    lines = re.split(r"\r\n|\r|\n", text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def parse_line(line: str) -> list[str]:
    """opencsv 2.3 CSVParser.parseLine (strictQuotes and ignoreLeadingWhiteSpace off)."""
    tokens: list[str] = []
    field: list[str] = []
    in_quotes = in_field = False
    i = 0
    n = len(line)
    while i < n:
        c = line[i]
        if c == ESCAPE:
            if (in_quotes or in_field) and i + 1 < n and line[i + 1] in (QUOTE, ESCAPE):
                field.append(line[i + 1])
                i += 1
        elif c == QUOTE:
            if (in_quotes or in_field) and i + 1 < n and line[i + 1] == QUOTE:
                field.append(line[i + 1])
                i += 1
            else:
                if i > 2 and line[i - 1] != SEPARATOR and i + 1 < n and line[i + 1] != SEPARATOR:
                    field.append(c)
                in_quotes = not in_quotes
            in_field = not in_field
        elif c == SEPARATOR and not in_quotes:
            tokens.append("".join(field))
            field = []
            in_field = False
        else:
            field.append(c)
            in_field = True
        i += 1
    if in_quotes:
        raise ValueError(f"un-terminated quoted field at end of line: {line[:80]!r}")
    tokens.append("".join(field))
    return tokens


def read_records(text: str, skip_header: bool = True) -> list[list[str]]:
    """Every record of a file's text, as OpenCSVSerde yields them."""
    records = [parse_line(line) for line in split_records(text)]
    return records[1:] if skip_header else records

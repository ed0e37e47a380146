"""Report tables: rows of different stages carry different counts; every column has a header and every cell its column."""

from tasks.eval.report import html_table, md_table

ROWS = [{"stage": "ingest", "kept": 3, "rejected by reason": {}},
        {"stage": "clean", "kept": 2, "pii_email": 1, "rejected by reason": {"too_short": 1}}]


def test_html_table_heads_every_key_and_leaves_missing_cells_empty():
    table = html_table(ROWS)
    assert table.count("<th>") == 4 and "<th>pii_email</th>" in table
    assert all(row.count("<td>") == 4 for row in table.split("<tr>")[2:])
    assert "<td>too_short: 1</td>" in table and "<td>-</td>" in table


def test_markdown_table_rows_have_as_many_cells_as_the_header():
    lines = md_table(ROWS).splitlines()
    assert {line.count("|") for line in lines} == {5}
    assert lines[0] == "| stage | kept | rejected by reason | pii_email |"

"""A small HTML reader for the display and report tests (stdlib only): every element's tag and
attributes, and every table's class, header and body rows as cell texts."""
from __future__ import annotations

import dataclasses
from html.parser import HTMLParser


@dataclasses.dataclass
class Table:
    cls: str
    header: list[str] = dataclasses.field(default_factory=list)
    rows: list[list[str]] = dataclasses.field(default_factory=list)


class Page(HTMLParser):
    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.tables: list[Table] = []
        self._stack: list[Table] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_head = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes))
        if tag == "table":
            self._stack.append(Table(attributes.get("class", "")))
            self.tables.append(self._stack[-1])
        elif tag == "thead":
            self._in_head = True
        elif tag == "tbody":
            self._in_head = False
        elif tag == "tr" and self._stack:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._stack:
            if self._in_head:
                self._stack[-1].header = self._row
            else:
                self._stack[-1].rows.append(self._row)
            self._row = None
        elif tag == "table" and self._stack:
            self._stack.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def table(self, cls: str) -> Table:
        found = [t for t in self.tables if cls in t.cls.split()]
        assert len(found) == 1, f"expected one table of class {cls!r}, found {len(found)} in {[t.cls for t in self.tables]}"
        return found[0]

    def tags(self, name: str) -> list[dict[str, str]]:
        return [attrs for tag, attrs in self.elements if tag == name]

    def column(self, cls: str, name: str) -> list[str]:
        table = self.table(cls)
        index = table.header.index(name)
        return [row[index] for row in table.rows]

"""HTML → plain text for the text part of an html email.

Mail clients that do not show HTML (and spam filters, which dislike html-only mail) read the
text/plain alternative, so it must carry the same content: the visible text with the paragraph
structure kept, links written as "text (url)", and scripts, styles and the head dropped.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_DROPPED = frozenset({"head", "script", "style", "template", "noscript"})
_PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table"})
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "dd", "div", "dl", "dt", "fieldset", "figcaption",
        "figure", "footer", "form", "header", "li", "main", "nav", "ol", "section", "tr", "ul",
    }
)  # fmt: skip
_VOID_DROPPED = frozenset({"meta", "link", "base"})
_WHITESPACE = re.compile(r"[ \t\r\n\f\v]+")


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._dropped: list[str] = []
        self._pre = 0
        self._lists: list[list[int]] = []  # one entry per open list: [next number] or [] for ul
        self._links: list[tuple[str | None, int]] = []

    def text(self) -> str:
        lines = [line.rstrip() for line in "".join(self._out).split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"

    def _ends_with_break(self) -> bool:
        tail = "".join(self._out[-2:])
        return not tail or tail.endswith("\n")

    def _newlines(self, count: int) -> None:
        if not self._out:
            return
        tail = "".join(self._out[-3:])
        have = len(tail) - len(tail.rstrip("\n"))
        if have < count:
            self._out.append("\n" * (count - have))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._dropped or tag in _DROPPED:
            if tag in _DROPPED:
                self._dropped.append(tag)
            return
        if tag in _VOID_DROPPED:
            return
        attributes = dict(attrs)
        if tag in _PARAGRAPHS:
            self._newlines(2)
        elif tag in _BLOCKS:
            self._newlines(1)
        if tag == "pre":
            self._pre += 1
        elif tag == "br":
            self._out.append("\n")
        elif tag == "hr":
            self._newlines(1)
            self._out.append("---\n")
        elif tag in ("ul", "ol"):
            self._lists.append([1] if tag == "ol" else [])
        elif tag == "li":
            self._list_marker()
        elif tag in ("td", "th") and not self._ends_with_break():
            self._out.append("  ")
        elif tag == "a":
            self._links.append((attributes.get("href"), len(self._out)))
        elif tag == "img" and attributes.get("alt"):
            self._data(attributes["alt"] or "")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in ("br", "hr", "img", *_VOID_DROPPED):
            self.handle_endtag(tag)

    def _list_marker(self) -> None:
        indent = "  " * max(len(self._lists) - 1, 0)
        current = self._lists[-1] if self._lists else []
        if current:
            marker = f"{current[0]}. "
            current[0] += 1
        else:
            marker = "- "
        self._out.append(indent + marker)

    def handle_endtag(self, tag: str) -> None:
        if self._dropped:
            if tag == self._dropped[-1]:
                self._dropped.pop()
            return
        if tag == "pre":
            self._pre = max(self._pre - 1, 0)
        elif tag in ("ul", "ol") and self._lists:
            self._lists.pop()
        elif tag == "a" and self._links:
            self._close_link(*self._links.pop())
        if tag in _PARAGRAPHS:
            self._newlines(2)
        elif tag in _BLOCKS:
            self._newlines(1)

    def _close_link(self, href: str | None, start: int) -> None:
        if not href or href.startswith(("#", "javascript:")):
            return
        target = href.removeprefix("mailto:")
        label = "".join(self._out[start:]).strip()
        if label != target and label != href:
            self._out.append(f" ({target})" if label else target)

    def handle_data(self, data: str) -> None:
        if not self._dropped:
            self._data(data)

    def _data(self, data: str) -> None:
        if self._pre:
            self._out.append(data)
            return
        text = _WHITESPACE.sub(" ", data)
        if self._ends_with_break() or "".join(self._out[-1:]).endswith(" "):
            text = text.lstrip(" ")
        if text:
            self._out.append(text)


def html_to_text(html: str) -> str:
    """The readable text of an HTML document, ending with one newline."""
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    return collector.text()

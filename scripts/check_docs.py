#!/usr/bin/env python3
"""Checks the documentation's links: every relative link and image in README.md, SECURITY.md,
CHANGELOG.md and docs/**/*.md must name a file that exists in the repository, and a `#fragment`
into a Markdown file must name one of its headings (mdBook's heading ids: lowercase, whitespace
to '-', other punctuation than '-' and '_' dropped, repeats suffixed -1, -2, ...). Links that
leave the repository (absolute URLs, absolute paths, `..` past the root) are refused, and so are
links from the book (docs/) to files outside it, which the built book would not contain. Every
page of the book must be listed in docs/SUMMARY.md, and README.md stays at most 250 lines.

Prints every problem as `file:line: link: why` and exits 1 if there is any; python3 stdlib only.
Usage: python3 scripts/check_docs.py [ROOT]   (ROOT defaults to the repository of this script)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import unquote

README_MAX_LINES = 250
TOP_LEVEL = ("README.md", "SECURITY.md", "CHANGELOG.md")
BOOK = "docs"

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# A code span: a run of backticks, then anything up to the same run, within one paragraph.
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.S)
HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
# [text](target "title") and ![alt](target); text may hold one level of brackets and newlines.
INLINE_LINK = re.compile(
    r"(!?)\[((?:[^\[\]\\]|\\.|\[[^\[\]]*\])*)\]"
    r"\(\s*(<[^<>\n]*>|[^\s()<>]*(?:\([^\s()]*\)[^\s()<>]*)*)"
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\)",
    re.S,
)
REFERENCE_DEF = re.compile(r"^ {0,3}\[((?:[^\]\\]|\\.)+)\]:\s*(<[^<>\n]*>|\S+)", re.M)
HTML_ATTR = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*(\"[^\"]*\"|'[^']*')", re.I)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
CUSTOM_ID = re.compile(r"\s*\{#([^}\s]+)[^}]*\}\s*$")


def blank_code(text: str) -> str:
    """The text with fenced code blocks, code spans and HTML comments blanked out (newlines kept,
    so offsets still give line numbers): what they contain is not a link."""
    lines = text.split("\n")
    fence: str | None = None
    for i, line in enumerate(lines):
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            lines[i] = ""
        elif fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip(fence[0] + " \t"):
                fence = None
            lines[i] = ""
    text = "\n".join(lines)
    keep_newlines = lambda m: re.sub(r"[^\n]", " ", m.group(0))  # noqa: E731
    text = HTML_COMMENT.sub(keep_newlines, text)
    return CODE_SPAN.sub(keep_newlines, text)


def heading_text(source: str) -> str:
    """What a heading renders as text: code spans keep their content, link and image syntax keeps
    the text, emphasis markers, HTML tags and backslash escapes go."""
    text = re.sub(r"(`+)(.+?)\1", lambda m: m.group(2).strip(), source)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"&[A-Za-z0-9#]+;", "", text)
    text = re.sub(r"\\(.)", r"\1", text)
    return text.replace("*", "")


def mdbook_id(text: str) -> str:
    """mdBook's id_from_content: lowercase, whitespace to '-', keep alphanumerics, '-' and '_'."""
    out = []
    for ch in text.strip().lower():
        if ch.isalnum() or ch in "-_":
            out.append(ch)
        elif ch.isspace():
            out.append("-")
    return "".join(out)


def heading_ids(text: str) -> set[str]:
    """Every heading id of a Markdown page, made unique in order as mdBook does."""
    lines = blank_code(text).split("\n")
    raw = text.split("\n")
    used: set[str] = set()
    for i, line in enumerate(lines):
        source = None
        m = ATX.match(raw[i]) if ATX.match(line) and line.strip() else None
        if m:
            source = re.sub(r"[ \t]+#+[ \t]*$", "", m.group(2) or "")
            source = source if source.strip("#") else ""
        elif i > 0 and SETEXT.match(line) and lines[i - 1].strip() and "|" not in lines[i - 1]:
            previous = lines[i - 1]
            if not ATX.match(previous) and not re.match(r"^ {0,3}([-*+]|\d+[.)])\s", previous):
                source = raw[i - 1]
        if source is None:
            continue
        custom = CUSTOM_ID.search(source)
        if custom:
            used.add(custom.group(1))
            continue
        base = mdbook_id(heading_text(source))
        candidate, n = base, 0
        while candidate in used:
            n += 1
            candidate = f"{base}-{n}"
        used.add(candidate)
    return used


class Checker:
    def __init__(self, root: Path):
        self.root = root.resolve()
        self.book = self.root / BOOK
        self.problems: list[str] = []
        self.ids: dict[Path, set[str]] = {}

    def problem(self, page: Path, line: int, link: str, why: str) -> None:
        self.problems.append(f"{page.relative_to(self.root)}:{line}: {link}: {why}")

    def ids_of(self, page: Path) -> set[str]:
        if page not in self.ids:
            self.ids[page] = heading_ids(page.read_text(encoding="utf-8"))
        return self.ids[page]

    def pages(self) -> list[Path]:
        found = [self.root / name for name in TOP_LEVEL if (self.root / name).is_file()]
        return found + sorted(p for p in self.book.rglob("*.md") if p.is_file())

    def links(self, text: str):
        """(line, target) of every link, image, reference definition and HTML href/src."""
        clean = blank_code(text)
        line_of = lambda offset: clean.count("\n", 0, offset) + 1  # noqa: E731
        for m in INLINE_LINK.finditer(clean):
            yield line_of(m.start()), m.group(3)
        for m in REFERENCE_DEF.finditer(clean):
            yield line_of(m.start()), m.group(2)
        for m in HTML_ATTR.finditer(clean):
            yield line_of(m.start()), m.group(1)[1:-1]

    def check_link(self, page: Path, line: int, link: str) -> None:
        target = link[1:-1] if link.startswith("<") and link.endswith(">") else link
        if not target:
            self.problem(page, line, link, "empty link")
            return
        if SCHEME.match(target) or target.startswith("//"):
            self.problem(page, line, link, "leaves the repository (an absolute URL): link to a file in it")
            return
        path_part, _, fragment = target.partition("#")
        path_part = unquote(path_part.split("?", 1)[0])
        if path_part.startswith("/"):
            self.problem(page, line, link, "leaves the repository (an absolute path): use a relative link")
            return
        resolved = (page.parent / path_part).resolve() if path_part else page
        if resolved != self.root and self.root not in resolved.parents:
            self.problem(page, line, link, "leaves the repository")
            return
        in_book = page == self.book or self.book in page.parents
        if in_book and resolved != self.book and self.book not in resolved.parents:
            self.problem(page, line, link, "leaves the book (docs/): name the file as `code` instead")
            return
        if not resolved.exists():
            self.problem(page, line, link, f"no such file: {resolved.relative_to(self.root)}")
            return
        if in_book and resolved.suffix == ".md" and resolved not in self.summary:
            self.problem(page, line, link, "a page the book does not contain (not in docs/SUMMARY.md)")
        if fragment and resolved.suffix == ".md" and resolved.is_file():
            if unquote(fragment) not in self.ids_of(resolved):
                self.problem(page, line, link, f"no heading with id `{fragment}` in {resolved.relative_to(self.root)}")

    def summary_pages(self) -> set[Path]:
        summary = self.book / "SUMMARY.md"
        if not summary.is_file():
            self.problems.append(f"{BOOK}/SUMMARY.md: missing")
            return set()
        text = summary.read_text(encoding="utf-8")
        listed = {summary}
        for _, link in self.links(text):
            path = unquote(link.partition("#")[0])
            if path and not SCHEME.match(path):
                listed.add((summary.parent / path).resolve())
        return listed

    def run(self) -> list[str]:
        self.summary = self.summary_pages()
        for page in self.pages():
            text = page.read_text(encoding="utf-8")
            for line, link in self.links(text):
                self.check_link(page, line, link)
            if (page == self.book or self.book in page.parents) and page.resolve() not in self.summary:
                self.problems.append(f"{page.relative_to(self.root)}: not listed in {BOOK}/SUMMARY.md")
        readme = self.root / "README.md"
        if readme.is_file():
            count = len(readme.read_text(encoding="utf-8").splitlines())
            if count > README_MAX_LINES:
                self.problems.append(f"README.md: {count} lines, more than {README_MAX_LINES}")
        return self.problems


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    checker = Checker(root)
    problems = checker.run()
    for p in problems:
        print(p)
    pages = len(checker.pages())
    if problems:
        print(f"check_docs: {len(problems)} broken link(s) or problem(s) in {pages} pages")
        return 1
    print(f"check_docs: {pages} pages, every link resolves")
    return 0


if __name__ == "__main__":
    sys.exit(main())

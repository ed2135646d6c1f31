#!/usr/bin/env python3
"""Fails on a module import circle inside any crate of the workspace.

A module is one source file. It depends on another when it names it: `crate::a::b`, `super::x`,
`self::x`, or a child module it declares (`mod x;` then `x::…`); a name re-exported with `pub use`
counts as the module it comes from. Modules that depend on each other, directly or around a loop,
are printed as a cycle and the exit status is 1. Unit tests (`#[cfg(test)] mod tests { … }` inline,
or a `tests.rs` file) use what they test and nothing uses them, so they never close a loop.

    python3 scripts/check_cycles.py            # every crate of the workspace
    python3 scripts/check_cycles.py sidecar    # one crate directory
    python3 scripts/check_cycles.py -v sidecar # and the imports inside each cycle
"""
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MOD_DECL = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", re.M)
PATH_REF = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
REEXPORT = re.compile(r"^\s*pub(?:\([^)]*\))?\s+use\s+([^;]+);", re.M)


def strip_comments_and_strings(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r"'[{}]'", "' '", text)  # brace literals would unbalance the test-block scan
    return without_test_blocks(re.sub(r'"(?:\\.|[^"\\])*"', '""', text))


def without_test_blocks(text: str) -> str:
    """Drops inline `#[cfg(test)] mod x { … }`: a test may use any module without being used."""
    while m := re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text):
        depth, end = 1, m.end()
        while depth and end < len(text):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        text = text[:m.start()] + text[end:]
    return text


class Crate:
    def __init__(self, root_file: Path):
        self.files: dict[tuple, Path] = {}  # module path -> file
        self.text: dict[tuple, str] = {}
        self._walk((), root_file)

    def _walk(self, path: tuple, file: Path):
        self.files[path] = file
        self.text[path] = strip_comments_and_strings(file.read_text())
        base = file.parent if file.name in ("lib.rs", "main.rs", "mod.rs") or not path else file.parent / file.stem
        for name in MOD_DECL.findall(self.text[path]):
            for child in (base / f"{name}.rs", base / name / "mod.rs"):
                if child.exists():
                    self._walk(path + (name,), child)
                    break

    def resolve(self, segments: tuple, seen: int = 0) -> tuple | None:
        """The module a path names: its longest prefix that is a module file, through re-exports."""
        for cut in range(len(segments), -1, -1):
            module = segments[:cut]
            if module in self.files:
                rest = segments[cut:]
                if rest and seen < 8:
                    target = self.reexport(module, rest[0])
                    if target is not None:
                        return self.resolve(target + rest[1:], seen + 1)
                return module
        return None

    def reexport(self, module: tuple, name: str) -> tuple | None:
        for spec in REEXPORT.findall(self.text[module]):
            spec = re.sub(r"\s*(::|,|\{|\})\s*", r"\1", re.sub(r"\s+", " ", spec)).strip()
            head, _, tail = spec.partition("::{")
            names = tail.rstrip("}").split(",") if tail else [spec.rsplit("::", 1)[-1]]
            prefix = head if tail else spec.rsplit("::", 1)[0]
            for n in names:
                original, _, renamed = n.partition(" as ")
                alias = renamed.strip() or original.split("::")[-1]
                if alias == name and prefix != spec:
                    full = prefix + ("::" + original.strip() if tail else "")
                    return self.absolute(module, tuple(p for p in full.split("::") if p))
        return None

    def absolute(self, module: tuple, parts: tuple) -> tuple:
        if not parts:
            return module
        head = parts[0]
        if head == "crate":
            return parts[1:]
        if head == "self":
            return module + parts[1:]
        if head == "super":
            return self.absolute(module[:-1], parts[1:])
        return module + parts  # a child module declared here

    def edges(self) -> dict[tuple, set]:
        out: dict[tuple, set] = {m: set() for m in self.files}
        for module, text in self.text.items():
            refs = [self.absolute(module, (kind,) + tuple(rest.split("::")[1:])) for kind, rest in PATH_REF.findall(text)]
            refs += [self.absolute(module, parts) for parts in grouped_imports(text)]
            for child in MOD_DECL.findall(text):
                for m in re.finditer(rf"(?<![:\w]){child}((?:::[A-Za-z_][A-Za-z0-9_]*)+)", text):
                    refs.append(module + (child,) + tuple(m.group(1).split("::")[1:]))
            for parts in refs:
                target = self.resolve(parts)
                if target is not None and target != module:
                    out[module].add(target)
        return out


def grouped_imports(text: str) -> list[tuple]:
    """The paths inside `crate::{a, b::{c, D}}`-style groups, each as its own path."""
    out = []
    for m in re.finditer(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{", text):
        depth, end = 1, m.end()
        while depth and end < len(text):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        prefix = (m.group(1),) + tuple(p for p in m.group(2).split("::") if p)
        out += expand(prefix, text[m.end():end - 1])
    return out


def expand(prefix: tuple, group: str) -> list[tuple]:
    items, depth, current = [], 0, ""
    for ch in group + ",":
        if ch == "," and depth == 0:
            items.append(current.strip())
            current = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        current += ch
    out = []
    for item in filter(None, items):
        head, brace, rest = item.partition("{")
        parts = tuple(p for p in head.split(" as ")[0].strip().split("::") if p and p != "self")
        out += expand(prefix + parts, rest.rsplit("}", 1)[0]) if brace else [prefix + parts]
    return out


def cycles(graph: dict[tuple, set]) -> list[list[tuple]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def crate_roots(member: Path) -> list[Path]:
    src = member / "src"
    roots = [src / n for n in ("lib.rs", "main.rs") if (src / n).exists()]
    return roots + sorted((src / "bin").glob("*.rs")) + sorted((src / "bin").glob("*/main.rs"))


def main() -> int:
    args = sys.argv[1:]
    verbose = "-v" in args
    args = [a for a in args if a != "-v"]
    if args:
        members = [ROOT / a for a in args]
    else:
        members = [ROOT / m for m in tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]]
        members.append(ROOT / "fuzz")  # the cargo-fuzz crate, its own workspace
    bad = 0
    for member in members:
        for root in crate_roots(member):
            crate = Crate(root)
            graph = crate.edges()
            for component in cycles(graph):
                bad += 1
                name = lambda m: str(crate.files[m].relative_to(ROOT))  # noqa: E731
                print(f"cycle in {root.relative_to(ROOT)}: {', '.join(name(m) for m in component)}")
                for m in component if verbose else []:
                    for target in sorted(graph[m] & set(component)):
                        print(f"    {name(m)} -> {name(target)}")
    total = sum(len(Crate(r).files) for m in members for r in crate_roots(m))
    print(f"module cycles: {bad} ({total} modules checked)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Fails when the library's modules import each other in a cycle that is not already known.

    python3 .ci/module-cycles.py            # check (CI)
    python3 .ci/module-cycles.py --print    # print every cycle and the imports that close it

The graph: one node per module file under src/ (src/a.rs and src/a/mod.rs are `a`,
src/a/b.rs is `a::b`; src/main.rs and the binary's own modules are left out: they sit above
the library). An edge A -> B for every `crate::...` or `super::...` path in A's code (in `use`
trees and inline), B being the longest module that the path names; code after the file's
`#[cfg(test)]` module is not read, nor are test-only module files (tests may reach anywhere). Cycles are the strongly connected
components with more than one module.

Known cycles are listed in .ci/module-cycles.txt, one cycle a line, its modules separated by
spaces. The check fails when a cycle has a module that no known cycle has (a new cycle, or an
old one that grew), and when a known cycle lists a module that is no longer in one (so the list
only ever shrinks: remove it). Standard library only.

Layers are listed in .ci/layers.txt, bottom to top: an import from a module to one in a higher
layer fails the check (lower layers never call up), and so does a module in no layer.
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
KNOWN = os.path.join(ROOT, ".ci", "module-cycles.txt")
LAYERS = os.path.join(ROOT, ".ci", "layers.txt")
# The binary crate's files: not library modules.
BINARY = {"main"}

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def modules():
    """{module path: file} for every library source file."""
    out = {}
    for dirpath, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), SRC)[:-3].split(os.sep)
            if rel[-1] == "mod":
                rel = rel[:-1]
            if rel == ["lib"]:
                rel = []
            name = "::".join(rel)
            if name.split("::")[0] in BINARY:
                continue
            out[name] = os.path.join(dirpath, f)
    # Test-only modules (`#[cfg(test)] mod tests;` in their parent) are left out, with their
    # children: tests may reach anywhere.
    test_only = set()
    for name, path in out.items():
        text = open(path, encoding="utf-8").read()
        for child in re.findall(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", text):
            test_only.add(f"{name}::{child}" if name else child)
    return {
        n: p for n, p in out.items() if not any(n == t or n.startswith(t + "::") for t in test_only)
    }


def code_of(path):
    """The file's code without comments, string and char literals, and without its test module."""
    text = open(path, encoding="utf-8").read()
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif re.match(r'b?r#*"', text[i : i + 40]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'b?r(#*)"', text[i:])
            end = text.find('"' + m.group(1), i + len(m.group(0)))
            out.append('""')
            i = n if end < 0 else end + 1 + len(m.group(1))
        elif c == '"' or text.startswith('b"', i) and (i == 0 or not text[i - 1].isalnum()):
            i += 2 if c == "b" else 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'":
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'\n])'", text[i:])
            if m:
                out.append("' '")
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    code = "".join(out)
    cut = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+", code)
    return code[: cut.start()] if cut else code


def expand_use(tree):
    """The paths of a `use` tree: `a::{b, c::{d, self}}` -> a::b, a::c::d, a::c."""
    tree = re.sub(r"\s+as\s+" + IDENT, "", tree)
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, t):
        i = t.find("{")
        if i < 0 or (t.find(",") >= 0 and t.find(",") < i):
            for part in split_top(t):
                if "{" in part:
                    walk(prefix, part)
                elif part == "self":
                    out.append(prefix.rstrip(":"))
                elif part:
                    out.append(prefix + part)
            return
        head, body = t[:i], t[i + 1 : t.rfind("}")]
        for part in split_top(body):
            walk(prefix + head, part)

    walk("", tree)
    return out


def split_top(t):
    parts, depth, cur = [], 0, ""
    for ch in t:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p]


def resolve(path, here, mods, is_mod_file):
    """The module a path (crate::a::b::X, super::y::Z) names, or None."""
    segs = path.split("::")
    if segs[0] == "crate":
        base = []
        segs = segs[1:]
    elif segs[0] in ("super", "self"):
        base = here.split("::") if here else []
        # In a.rs or a/mod.rs `self` is `a`; `super` is a's parent.
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    else:
        return None
    best = None
    for n in range(len(segs) + 1):
        cand = "::".join(base + segs[:n])
        if cand in mods:
            best = cand
    return best


def graph(mods):
    edges = {m: {} for m in mods}
    path_re = re.compile(r"\b((?:crate|super|self)(?:::(?:" + IDENT + r"))+)")
    for m, f in mods.items():
        code = code_of(f)
        paths = []
        for u in re.finditer(r"\buse\s+([^;]+);", code):
            tree = u.group(1)
            if tree.startswith(("crate", "super", "self")):
                paths.extend(expand_use(tree))
        paths.extend(p.group(1) for p in path_re.finditer(code))
        # Paths through this module's own children (`mod s3;` ... `s3::S3Location`), as
        # `self::` paths.
        for child in re.findall(r"\bmod\s+(" + IDENT + r")\s*;", code):
            child_mod = f"{m}::{child}" if m else child
            if child_mod in mods:
                for c in re.finditer(r"(?<![:\w])" + child + r"((?:::" + IDENT + r")+)", code):
                    paths.append("self::" + child + c.group(1))
        paths.extend(
            "self::" + u.group(1)
            for u in re.finditer(r"\buse\s+((?!crate|super|self)" + IDENT + r"::[^;]+);", code)
            if (f"{m}::" if m else "") + u.group(1).split("::")[0] in mods
            for _ in [0]
        )
        for p in paths:
            target = resolve(p, m, mods, f.endswith("mod.rs"))
            if target is None or target == m:
                continue
            # A module's own `mod child;` and `pub use child::X` are not what ties a cycle
            # downward: they are kept (a parent that re-exports from a child that imports
            # the parent is a real cycle).
            edges[m].setdefault(target, set()).add(p.split("::")[-1])
    return edges


def cycles(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def name(m):
    return m or "lib"


def layer_of():
    """{top-level module: its layer's rank} from .ci/layers.txt (0 is the bottom)."""
    out, rank = {}, 0
    for line in open(LAYERS, encoding="utf-8"):
        words = line.split("#")[0].split()
        if words:
            for w in words:
                out[w] = rank
            rank += 1
    return out


def layer_errors(mods, edges):
    """Each import that goes up a layer, and each module in no layer, described."""
    rank = layer_of()
    top = lambda m: m.split("::")[0] or "lib"
    out = [f"error: module {name(m)} is in no layer of .ci/layers.txt" for m in sorted(mods) if top(m) not in rank]
    for a in sorted(edges):
        for b in sorted(edges[a]):
            if top(a) in rank and top(b) in rank and rank[top(a)] < rank[top(b)]:
                out.append(
                    f"error: {name(a)} imports {name(b)} ({', '.join(sorted(edges[a][b]))}), a higher layer"
                )
    return out


def main():
    mods = modules()
    edges = graph(mods)
    found = cycles(edges)
    up = layer_errors(mods, edges)
    if "--print" in sys.argv:
        for c in found:
            print(f"cycle of {len(c)}: {' '.join(name(m) for m in c)}")
            for a in c:
                for b in sorted(edges[a]):
                    if b in c:
                        print(f"  {name(a)} -> {name(b)}: {', '.join(sorted(edges[a][b]))}")
        return 0
    known = []
    if os.path.exists(KNOWN):
        for line in open(KNOWN, encoding="utf-8"):
            line = line.split("#")[0].split()
            if line:
                known.append(set(line))
    failed = bool(up)
    for line in up:
        print(line)
    in_cycles = set()
    for c in found:
        names = {name(m) for m in c}
        in_cycles |= names
        if not any(names <= k for k in known):
            new = sorted(names - set().union(*known)) if known else sorted(names)
            print(f"error: a new module cycle: {' '.join(sorted(names))}")
            print(f"  (modules not in any known cycle: {' '.join(new) or 'none: two known cycles joined'})")
            for a in c:
                for b in sorted(edges[a]):
                    if b in c:
                        print(f"  {name(a)} -> {name(b)}: {', '.join(sorted(edges[a][b]))}")
            failed = True
    stale = sorted(set().union(*known) - in_cycles) if known else []
    if stale:
        print(f"error: no longer in a cycle, remove from .ci/module-cycles.txt: {' '.join(stale)}")
        failed = True
    if not failed:
        total = sum(len(c) for c in found)
        print(f"module cycles: {len(found)} known ({total} modules), none new; layers: no import goes up")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

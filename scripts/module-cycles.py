#!/usr/bin/env python3
"""Fails when the top-level modules of a crate import each other in a cycle.

Usage: scripts/module-cycles.py core/src

Each file's `crate::<module>` paths (including the names inside `use crate::{...}` groups) are
its module's dependencies; code from `#[cfg(test)]` on is left out (tests may use the test
support module from anywhere). Prints the dependency graph and every cycle found.
"""
import glob
import re
import sys


def names_after(text):
    """Top-level module names named right after a `crate::`."""
    if not text.startswith("{"):
        m = re.match(r"([a-z_][a-z0-9_]*)", text)
        return {m.group(1)} if m else set()
    names, depth, item = set(), 0, ""
    for ch in text:
        if ch == "{":
            depth += 1
            if depth == 2:
                item += "::"
            continue
        if ch == "}":
            depth -= 1
            if depth == 0:
                break
            continue
        if depth == 1:
            if ch == ",":
                m = re.match(r"\s*([a-z_][a-z0-9_]*)", item)
                if m:
                    names.add(m.group(1))
                item = ""
            else:
                item += ch
    m = re.match(r"\s*([a-z_][a-z0-9_]*)", item)
    if m:
        names.add(m.group(1))
    return names


def graph(root):
    g = {}
    for path in glob.glob(f"{root}/**/*.rs", recursive=True):
        module = path[len(root) + 1 :].split("/")[0].removesuffix(".rs")
        if module in ("lib", "main"):
            continue
        text = open(path, encoding="utf-8").read()
        cut = text.find("#[cfg(test)]")
        if cut >= 0:
            text = text[:cut]
        text = re.sub(r"//.*", "", text)
        deps = g.setdefault(module, set())
        for m in re.finditer(r"\bcrate::", text):
            deps |= names_after(text[m.end() : m.end() + 4000])
        deps.discard(module)
        deps.discard("self")
    return g


def cycles(g):
    found, state, stack = [], {}, []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(g.get(v, ())):
            if w not in g:
                continue
            if state.get(w) == 1:
                found.append(stack[stack.index(w) :] + [w])
            elif w not in state:
                visit(w)
        stack.pop()
        state[v] = 2

    for v in sorted(g):
        if v not in state:
            visit(v)
    return found


def main():
    root = sys.argv[1].rstrip("/")
    g = graph(root)
    for module in sorted(g):
        print(f"{module} -> {', '.join(sorted(d for d in g[module] if d in g)) or '-'}")
    found = cycles(g)
    for c in found:
        print("import cycle: " + " -> ".join(c), file=sys.stderr)
    if found:
        sys.exit(1)
    print(f"{root}: {len(g)} modules, no import cycles")


main()

"""Reading a spec file that its author may have written to hurt us.

PyYAML's SafeLoader already refuses python tags, but it happily builds a 2 KB "billion laughs" alias bomb into
hundreds of millions of objects, lets a repeated key silently overrule the first one a reviewer read, and
raises UnicodeDecodeError on a latin-1 file. This module bounds the file's size, checks the composed node
graph *before* anything is constructed (expanded size, nesting depth, recursion, tags, duplicate keys, string
lengths), and turns every problem into one line that names where it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

#: A spec is a page of YAML; 1 MiB is far above any real one and far below anything that hurts.
MAX_SPEC_BYTES = 1 << 20
#: Nodes after expanding every alias (a real spec has a few hundred).
MAX_EXPANDED_NODES = 20_000
#: Nesting deeper than this is not a spec (the deepest real path is about 6 levels).
MAX_DEPTH = 40
#: Longest scalar (a description, a column name) in characters.
MAX_SCALAR_CHARS = 4_096

_STD = "tag:yaml.org,2002:"
#: Tags a spec may use: plain mappings, lists, strings, numbers, booleans, null (and the merge key ``<<``).
ALLOWED_TAGS = frozenset(_STD + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "merge"))


def clip(text: str, limit: int = 80) -> str:
    """Text bounded to ``limit`` characters (an ellipsis marks the cut): messages never echo unbounded input."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short(value: object, limit: int = 80) -> str:
    """A user-supplied value as it may appear in a message: repr'd (strings too) and bounded to ``limit``."""
    return clip(repr(value), limit)


@dataclass(frozen=True)
class YamlProblem(Exception):
    """One problem with the YAML itself; ``field`` is the spec path (``checks.fairness``) or "spec"."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def decode(raw: bytes) -> str:
    """The file's text; a file that is not UTF-8 is refused naming the first bad byte and its line."""
    if len(raw) > MAX_SPEC_BYTES:
        raise YamlProblem("spec", f"the file has {len(raw)} bytes; a spec is at most {MAX_SPEC_BYTES} bytes (1 MiB)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise YamlProblem("spec", f"the file is not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} "
                                  f"(line {line}) is invalid; save the spec as UTF-8") from None


def _key_text(node: Node) -> str:
    if isinstance(node, ScalarNode):
        text = str(node.value)
        return text if len(text) <= 40 else text[:39] + "…"
    return "<complex key>"


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def _check_graph(root: Node) -> None:
    """Refuse what must never reach the constructor. Walks the graph once per distinct node (aliases share
    nodes), computing each node's expanded size bottom-up so an alias bomb is refused without expanding it."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()
    # Iterative post-order walk: (node, path, depth, children_done)
    stack: list[tuple[Node, str, int, bool]] = [(root, "", 0, False)]
    while stack:
        node, path, depth, done = stack.pop()
        nid = id(node)
        where = path or "(top level)"
        if done:
            in_progress.discard(nid)
            if isinstance(node, MappingNode):
                children = [n for pair in node.value for n in pair]
            elif isinstance(node, SequenceNode):
                children = list(node.value)
            else:
                children = []
            size = 1 + sum(sizes[id(c)] for c in children)
            if size > MAX_EXPANDED_NODES:
                raise YamlProblem(where, f"expands to more than {MAX_EXPANDED_NODES} YAML nodes through aliases "
                                         f"(line {node.start_mark.line + 1}); a spec is at most "
                                         f"{MAX_EXPANDED_NODES} nodes once aliases are expanded")
            sizes[nid] = size
            continue
        if nid in sizes:
            continue
        if nid in in_progress:
            raise YamlProblem(where, f"recursive alias at line {node.start_mark.line + 1}; "
                                     "a spec cannot contain itself")
        if depth > MAX_DEPTH:
            raise YamlProblem(where, f"nested more than {MAX_DEPTH} levels deep (line {node.start_mark.line + 1})")
        if node.tag not in ALLOWED_TAGS:
            raise YamlProblem(where, f"tag {short(node.tag.replace(_STD, '!!'))} at line {node.start_mark.line + 1} "
                                     "is not allowed; a spec holds only mappings, lists, strings, numbers, "
                                     "booleans and null")
        in_progress.add(nid)
        stack.append((node, path, depth, True))
        if isinstance(node, ScalarNode):
            if len(node.value) > MAX_SCALAR_CHARS:
                raise YamlProblem(where, f"a value of {len(node.value)} characters at line {node.start_mark.line + 1}; "
                                         f"at most {MAX_SCALAR_CHARS} allowed")
        elif isinstance(node, SequenceNode):
            for i, child in enumerate(node.value):
                stack.append((child, _join(path, str(i)), depth + 1, False))
        elif isinstance(node, MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.tag != _STD + "merge":
                    ident = (key.tag, key.value)
                    line = key.start_mark.line + 1
                    if ident in seen:
                        raise YamlProblem(_join(path, _key_text(key)),
                                          f"duplicate key at line {line} (first at line {seen[ident]}); YAML would "
                                          "let the last one silently win; keep exactly one")
                    seen[ident] = line
                stack.append((key, _join(path, "<key>"), depth + 1, False))
                stack.append((value, _join(path, _key_text(key)), depth + 1, False))


def load(text: str) -> Any:
    """Parse one YAML document with the checks above; YAML syntax errors name line and column."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise YamlProblem("spec", f"character #x{exc.character:04x} at line {line} is not allowed "
                                  "(control characters cannot appear in YAML)") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node)
        return loader.construct_document(node)
    except YamlProblem:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlProblem("spec", f"malformed YAML{where}: {clip(str(problem), 160)}") from None
    except RecursionError:
        raise YamlProblem("spec", f"nested too deeply to parse; a spec is at most {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()

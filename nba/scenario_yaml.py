"""Reading scenario YAML safely: bounded size, depth, aliases and nodes; string keys only.

A scenario file comes from users (and ``nba serve --trusted-scenario``), so reading one is
linear in its size whatever it contains, and anything a scenario never needs (explicit tags,
non-string or duplicate keys, recursive aliases) is refused with a :class:`ScenarioError` that
names the line. :mod:`nba.scenario` re-exports the limits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nba.errors import ScenarioError

# Bounds on what a scenario file may ask of us: reading one is linear in its size and the
# catalogues stay small enough that validation and the arrays built from them are instant.
MAX_YAML_BYTES = 1 << 20  # 1 MiB: the built-in scenario is about 25 KiB
MAX_YAML_DEPTH = 32  # nested collections; a scenario needs 6
MAX_YAML_NODES = 50_000  # scalars and collections, aliases at full size; built-in: 970
MAX_YAML_ALIASES = 100


def read_scenario_yaml(source: str | Path) -> Any:
    """The parsed YAML of a path or of a YAML string, within the limits above."""
    return _load_yaml(_read_text(source))


def _read_text(source: str | Path) -> str:
    """The YAML text of a path or of a string, refused past :data:`MAX_YAML_BYTES`.

    A file is read at most one byte past the limit, so a huge file or an endless device costs
    nothing. Bytes that are not UTF-8 raise :class:`UnicodeDecodeError` (a ``ValueError``) as
    they did before: the CLI names the file and the offset.
    """
    if isinstance(source, Path) or (
        isinstance(source, str) and "\n" not in source and len(source) < 4096
    ):
        path = Path(source)
        if path.suffix in {".yaml", ".yml"} or path.exists():
            if not path.is_file():
                raise ScenarioError(f"scenario path: no such file {str(path)!r}")
            with path.open("rb") as handle:
                data = handle.read(MAX_YAML_BYTES + 1)
            if len(data) > MAX_YAML_BYTES:
                raise ScenarioError(
                    f"scenario file {str(path)!r}: larger than the {MAX_YAML_BYTES:,} byte limit"
                )
            return data.decode("utf-8")
    text = str(source)
    if len(text) > MAX_YAML_BYTES:
        raise ScenarioError(
            f"scenario YAML: {len(text):,} characters, over the {MAX_YAML_BYTES:,} byte limit"
        )
    return text


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _ScenarioLoader(_BaseLoader):  # type: ignore[misc]
    """PyYAML's safe loader (libyaml when present) that also refuses what a scenario never needs.

    Mapping keys must be plain strings (``no:`` or ``1:`` would silently become a bool or an
    int) and appear once (YAML keeps the last of a duplicate without a word).
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, _ in node.value:
                if key.tag == _MERGE_TAG:
                    continue
                line = key.start_mark.line + 1
                if not isinstance(key, yaml.ScalarNode) or key.tag != _STR_TAG:
                    shown = key.value if isinstance(key, yaml.ScalarNode) else key.id
                    raise ScenarioError(
                        f"scenario YAML: line {line}: key {_short(shown)} is not a string; quote it"
                    )
                if key.value in seen:
                    raise ScenarioError(
                        f"scenario YAML: line {line}: duplicate key {_short(key.value)}"
                    )
                seen.add(key.value)
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


def _load_yaml(text: str) -> Any:
    """Parse scenario YAML in time and memory linear in its length, whatever it contains.

    A first pass over the parser's events (no objects built) bounds the nesting depth, the
    number of aliases and the size of the document with every alias expanded, and refuses
    explicit tags: a "billion laughs" block of 1.3 KB is refused after a few dozen events.
    """
    try:
        _check_events(text)
        return yaml.load(text, Loader=_ScenarioLoader)  # a safe loader subclass
    except yaml.YAMLError as exc:
        raise ScenarioError(f"scenario YAML: cannot parse: {exc}") from None


def _check_events(text: str) -> None:
    open_anchors: list[tuple[str | None, int]] = []  # per open collection: (anchor, nodes before)
    sizes: dict[str, int] = {}  # expanded node count of each anchored node
    nodes = aliases = 0
    for event in yaml.parse(text, Loader=_ScenarioLoader):
        if not isinstance(event, yaml.NodeEvent | yaml.CollectionEndEvent):
            continue
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_YAML_ALIASES:
                raise ScenarioError(
                    f"scenario YAML: line {line}: more than {MAX_YAML_ALIASES} aliases"
                )
            if any(anchor == event.anchor for anchor, _ in open_anchors):
                raise ScenarioError(
                    f"scenario YAML: line {line}: alias *{event.anchor} is recursive"
                )
            nodes += sizes.get(str(event.anchor), 1)  # an unknown anchor: the parser says so
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, before = open_anchors.pop()
            if anchor is not None:
                sizes[anchor] = nodes - before
            continue
        else:
            if event.tag is not None:  # type: ignore[attr-defined]
                raise ScenarioError(
                    f"scenario YAML: line {line}: tag {_short(event.tag)} is not allowed"  # type: ignore[attr-defined]
                )
            nodes += 1
            if isinstance(event, yaml.CollectionStartEvent):
                open_anchors.append((event.anchor, nodes - 1))
                if len(open_anchors) > MAX_YAML_DEPTH:
                    raise ScenarioError(
                        f"scenario YAML: line {line}: nested deeper than {MAX_YAML_DEPTH} levels"
                    )
            elif event.anchor is not None:
                sizes[event.anchor] = 1
        if nodes > MAX_YAML_NODES:
            raise ScenarioError(
                f"scenario YAML: line {line}: more than {MAX_YAML_NODES:,} values "
                "(aliases counted at their full size)"
            )


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""Reading a pipeline file: YAML data plus the line of every key, so errors can point at it.

PyYAML composes the document into a node tree first; each node knows where it starts. We walk
that tree once, mapping each key path (``("fan_out", 2, "channel")``) to its line, then build
the plain data from the same tree. Every error about the file is a :class:`SpecError` that
reads ``order.yaml:14: fan_out[2].channel: 'emial' is not installed (...)``.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable
from typing import Any

import attrs
import yaml

from vow.errors import ConfigError, KeyPath, format_path

Path = KeyPath
"""A key path into the file: mapping keys and list indices."""


class SpecError(ConfigError):
    """A problem with a pipeline file (or its input): where it is and what is allowed."""

    def __init__(self, problem: str, *, file: str | None = None, line: int | None = None,
                 path: Path = ()) -> None:
        self.file = file
        self.line = line
        super().__init__(problem, path=path)

    def _text(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        key = format_path(self.path)
        return f"{where}{key}: {self.problem}" if key else f"{where}{self.problem}"


@attrs.frozen
class Source:
    """A parsed pipeline file: its data and the line of each key path."""

    file: str
    data: Any
    lines: dict[Path, int]
    text_lines: dict[Path, int] = attrs.Factory(dict)  # where a multi-line string's first line of text is

    def line(self, path: Path) -> int:
        """The line of ``path``, or of its closest ancestor that is in the file."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return 1

    def text_line(self, path: Path, line_in_text: int) -> int:
        """The file line of line ``line_in_text`` (from 1) of the string at ``path``."""
        first = self.text_lines.get(tuple(path))
        return first + line_in_text - 1 if first is not None else self.line(path)

    def error(self, path: Path, problem: str) -> SpecError:
        """A :class:`SpecError` at ``path`` in this file."""
        return SpecError(problem, file=self.file, line=self.line(path), path=path)

    def relocate(self, exc: ConfigError, path: Path) -> SpecError:
        """The error ``exc``, raised checking the data at ``path`` (a plugin's options, a retry
        policy), located in this file: at the key path of its issue that comes first in the file."""
        if isinstance(exc, SpecError):
            return exc
        located = [(tuple(path) + tuple(p), problem) for p, problem in exc.issues]
        found, problem = min(located, key=lambda issue: (self.line(issue[0]), len(issue[0])))
        return SpecError(problem, file=self.file, line=self.line(found), path=found)

    def at(self, path: Path) -> Any:
        """The data at ``path`` (``None`` when it is not in the file)."""
        node = self.data
        for part in path:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return None
        return node


MAX_FILE_BYTES = 1_000_000
"""The most bytes a pipeline file may hold: more is data, which belongs in ``--input @file.json``. Read
past that, a file could fill the memory (``/dev/zero``) or keep the YAML reader busy for minutes."""


def read(file: str) -> Source:
    """Read and parse the pipeline file ``file`` (named in errors as given)."""
    if not file:  # Path("") is the working directory
        raise SpecError("no pipeline file given (the file name is empty)")
    try:
        text = read_bytes(file, MAX_FILE_BYTES, "a pipeline file").decode("utf-8")
    except FileNotFoundError:
        raise SpecError("no such file", file=file) from None
    except IsADirectoryError:
        raise SpecError("is a directory, not a pipeline file", file=file) from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=file) from None
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror}", file=file) from None
    except Unreadable as exc:
        raise SpecError(str(exc), file=file) from None
    return parse(text, file)


class Unreadable(Exception):
    """What :func:`read_bytes` found wrong with a file it could open: too large, or a FIFO without a writer."""


def read_bytes(file: str, limit: int, what: str) -> bytes:
    """The bytes of ``file``, which is ``what`` (``"a pipeline file"``): :class:`Unreadable` when it holds
    more than ``limit`` bytes (only ``limit`` + 1 are read: ``/dev/zero`` filled the memory), or when it
    is a FIFO (named pipe) that no process writes to (opened as usual, it waited for a writer for ever);
    an :class:`OSError` when it cannot be opened or read."""
    fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb", buffering=0) as handle:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), file)
        chunks: list[bytes] = []
        if stat.S_ISFIFO(mode):
            # Opened without waiting: a read now is empty when no process has the pipe open for writing
            # (`vow run <(make-pipeline)` has one; a FIFO made with mkfifo and left alone has not).
            try:
                first = os.read(fd, limit + 1)
            except BlockingIOError:
                first = b""
            else:
                if not first:
                    raise Unreadable("is a FIFO (named pipe) that no process is writing to: nothing to read")
            chunks.append(first)
        os.set_blocking(fd, True)  # a writer that is still writing is waited for, as `cat` does
        size = sum(map(len, chunks))
        while size <= limit:
            chunk = handle.read(limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    if size > limit:
        raise Unreadable(f"larger than {limit:,} bytes, the most {what} may be")
    return b"".join(chunks)


def parse(text: str, file: str = "<pipeline>") -> Source:
    """Parse YAML ``text``; a syntax error is a :class:`SpecError` with the line it is on."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not take; checked before reading
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        raise SpecError(f"invalid YAML: the character #x{exc.character:04x} is not allowed (YAML takes printable "
                        f"characters, tabs and line breaks) (column {column})", file=file, line=line) from None
    try:
        node = loader.get_single_node()
        lines: dict[Path, int] = {}
        text_lines: dict[Path, int] = {}
        if node is not None:
            _index(node, (), lines, text_lines, file, _Walk(key_of=loader.construct_object))
        data = loader.construct_document(node) if node is not None else None
    except _TooManyValues as exc:
        raise SpecError(f"invalid YAML: more than {MAX_NODES:,} values (keys, values and list items); a pipeline "
                        f"file holds at most {MAX_NODES:,}: pass large data with --input @file.json", file=file,
                        line=exc.line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        start = exc.context_mark
        if exc.context and exc.problem and start is not None and exc.context.startswith("while "):
            problem += f" {exc.context} that starts on line {start.line + 1}, column {start.column + 1}"
        elif exc.context and exc.problem and start is not None and mark is not None:  # the composer's two halves
            problem = (f"{exc.context} (on line {start.line + 1}, column {start.column + 1}); {exc.problem} "
                       f"(column {mark.column + 1})")
        elif mark is not None:
            problem += f" (column {mark.column + 1})"
        raise SpecError(f"invalid YAML: {problem}", file=file,
                        line=mark.line + 1 if mark is not None else None) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", file=file) from None
    except RecursionError:  # PyYAML composes and constructs recursively
        raise SpecError("nested too deeply to read (lists or mappings hundreds of levels deep)", file=file) from None
    finally:
        loader.dispose()
    return Source(file, data, lines, text_lines)


MAX_NODES = 20_000
"""How many values (keys, values, list items) a pipeline file may hold. PyYAML reads in pure Python, some
tens of microseconds a value: a file of a million short values took minutes before any check ran."""


class _TooManyValues(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, counting the nodes it parses: it stops at the :data:`MAX_NODES` + 1st, so
    reading a file costs at most that many values, however long the file is. (Counted in the parser,
    which is a loop, not in the composer, which recurses: a frame more per level would read fewer levels.)"""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.parsed = 0

    def parse_node(self, block: bool = False, indentless_sequence: bool = False) -> Any:
        self.parsed += 1
        if self.parsed > MAX_NODES:
            raise _TooManyValues(self.peek_token().start_mark.line + 1)  # type: ignore[no-untyped-call]
        return super().parse_node(block, indentless_sequence)


MAX_REPEATED_NODES = 100_000
"""How many values aliases (``*name``) may repeat in one file: each alias stands for its anchor's
whole value, so a few lines of aliases of aliases could stand for billions of values."""


@attrs.define
class _Walk:
    """What :func:`_index` keeps across the file: the nodes met so far, and the ones it is inside."""

    key_of: Callable[[yaml.Node], Any]  # a key node's key as the data has it (`on` is true, `2` a number)
    seen: set[int] = attrs.Factory(set)
    inside: set[int] = attrs.Factory(set)
    repeated: int = 0


def _index(node: yaml.Node, path: Path, lines: dict[Path, int], text_lines: dict[Path, int], file: str,
           walk: _Walk) -> None:
    key = id(node)
    if key in walk.inside:
        raise SpecError("invalid YAML: an alias (*name) inside the value of its own anchor (&name): "
                        "the value would contain itself", file=file, line=_nearest_line(path, lines), path=path)
    if key in walk.seen:
        walk.repeated += 1
        if walk.repeated > MAX_REPEATED_NODES:
            raise SpecError(f"invalid YAML: aliases (*name) repeat more than {MAX_REPEATED_NODES:,} values; "
                            "write the data out, or pass it with --input", file=file,
                            line=_nearest_line(path, lines), path=path)
    walk.seen.add(key)
    walk.inside.add(key)
    try:
        _index_children(node, path, lines, text_lines, file, walk)
    finally:
        walk.inside.discard(key)


def _nearest_line(path: Path, lines: dict[Path, int]) -> int | None:
    """The line of ``path``, or of the nearest key above it that has one."""
    return next((lines[path[:end]] for end in range(len(path), -1, -1) if path[:end] in lines), None)


def too_long_number() -> str:
    """What is wrong with a whole number longer than Python reads (4,300 digits unless configured)."""
    return (f"a whole number of more than {sys.get_int_max_str_digits():,} digits cannot be read; give it as text "
            "(in quotes)")


def _check_number(node: yaml.ScalarNode, path: Path, file: str) -> None:
    """A :class:`SpecError` at ``node`` when it is a whole number too long to read (a ValueError, not a
    YAML error, when PyYAML constructs it)."""
    digits = node.value.lstrip("+-").replace("_", "")
    limit = sys.get_int_max_str_digits()
    if node.tag == "tag:yaml.org,2002:int" and limit and digits.isdigit() and len(digits) > limit:
        raise SpecError(f"invalid YAML: {too_long_number()}", file=file, line=node.start_mark.line + 1, path=path)


_TAGGED = {"int": "a whole number", "float": "a number", "bool": "true or false",
           "timestamp": "a date or time (such as 2025-06-01 or 2025-06-01T09:30:00Z)"}


def _construct(node: yaml.ScalarNode, path: Path, file: str, walk: _Walk) -> Any:
    """The value of ``node`` (kept by the loader for the data it builds next): a :class:`SpecError` when
    an explicit tag does not fit it (``!!int nonsense`` was a ValueError from PyYAML, ``!!bool`` a
    KeyError, ``!!timestamp`` an AttributeError: none of them a YAML error)."""
    try:
        return walk.key_of(node)
    except (ValueError, KeyError, AttributeError, TypeError):
        kind = node.tag.rpartition(":")[2]
        what = _TAGGED.get(kind, "a value of its tag")
        raise SpecError(f"invalid YAML: {node.value!r} tagged !!{kind} is not {what}", file=file,
                        line=node.start_mark.line + 1, path=path) from None


def _index_children(node: yaml.Node, path: Path, lines: dict[Path, int], text_lines: dict[Path, int], file: str,
                    walk: _Walk) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.ScalarNode):
        _check_number(node, path, file)
        _construct(node, path, file, walk)
        # A block scalar (| or >) starts its text on the line after the indicator.
        text_lines[path] = node.start_mark.line + 1 + (1 if node.style in ("|", ">") else 0)
    elif isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: its keys belong here
                for merged in (value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]):
                    _index(merged, path, lines, text_lines, file, walk)
                continue
            if isinstance(key_node, yaml.ScalarNode):
                _check_number(key_node, path, file)
            key = _construct(key_node, path, file, walk) if isinstance(key_node, yaml.ScalarNode) \
                else str(key_node.start_mark)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise SpecError(f"duplicate key (first given on line {seen[key]})", file=file, line=line,
                                path=path + (key,))
            seen[key] = line
            lines[path + (key,)] = line
            _index(value_node, path + (key,), lines, text_lines, file, walk)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, path + (i,), lines, text_lines, file, walk)

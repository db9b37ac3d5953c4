"""The schema of a scratch database kept up to date step by step, reading only what changed.

Replaying a history and reading the whole schema after every step costs the size of
the schema once per step (on a history of 250 steps, eight times the run itself).
A ``Tracker`` reads the whole schema once, then after each step only the objects
that step may have changed, so the cost grows with the schema once:

- **SQLite** keeps every definition as text in ``sqlite_master``: after a step that
  table is read (one small query) and compared with the texts before; only the
  tables, views and triggers whose text changed are read again.  Exact: there is no
  change to a SQLite schema that does not change that text.
- **PostgreSQL**: the statements a step ran name what they touch, so their words
  (captured with ``connection.execute_wrapper``) are the names to read again: of a
  ``CREATE`` only what it creates (``CREATE TABLE fills (... REFERENCES orders)`` does
  not change ``orders``), of any other statement every name it uses.  To those are
  added the objects that depend on a name an ``ALTER``/``DROP`` uses, known from the
  definitions read before (a view on a dropped table, a foreign key to it, a trigger
  calling a dropped function: ``CASCADE`` drops them unnamed).  After a statement that
  may act unnamed (a ``DO`` block, ``CALL``, ``SELECT f()``), or one on a partitioned
  table (its partitions get clones), the catalog rows written since the last reading
  (``age(xmin)``) add what no statement named.  One prepared query per step, of the
  few objects named.

What a step changed is returned as ``{key: (before, after)}`` (``None``: absent), which
is all ``origins`` and the round trip need.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from migrator.validation.introspect import OWNERLESS, Key, Objects, Schema, ignored_tables
from migrator.vendors import pg_catalog, sqlite_catalog

Changes = dict[Key, tuple[dict[str, Any] | None, dict[str, Any] | None]]

_WORD = re.compile(r"[A-Za-z_][\w$]*")
_QUOTED = re.compile(r'"((?:[^"]|"")+)"|`([^`]+)`|\[([^\]]+)\]')
_TEXT_KINDS_WITHOUT_LINKS = {"function", "procedure"}


def words_of(text: str) -> set[str]:
    """Every identifier-like word of ``text``, lower case, quoted ones unquoted."""
    return {word.lower() for word in names_in(text)}


def names_in(text: str) -> set[str]:
    """The names ``text`` may use, as PostgreSQL spells them: unquoted words in lower
    case (it folds them), quoted ones as written (and in lower case too)."""
    found = {word.lower() for word in _WORD.findall(text)}
    if '"' in text or "`" in text or "[" in text:
        for groups in _QUOTED.findall(text):
            for group in groups:
                if group:
                    name = group.replace('""', '"')
                    found.update((name, name.lower()))
    return found


_NAME = r'(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
_QUALIFIED = rf"(?:{_NAME}\.)?({_NAME})"
_CREATE = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?"
    r"(?:(?:UNIQUE|TEMP|TEMPORARY|UNLOGGED|GLOBAL|LOCAL|MATERIALIZED|RECURSIVE|CONSTRAINT)\s+)*"
    r"(TABLE|VIEW|SEQUENCE|FUNCTION|PROCEDURE|TYPE|DOMAIN|EXTENSION|INDEX|TRIGGER)\s+"
    r"(?:IF\s+NOT\s+EXISTS\s+)?(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
    rf"((?!ON\s){_QUALIFIED})?",
    re.IGNORECASE,
)
_ON = re.compile(rf"\bON\s+(?:ONLY\s+)?{_QUALIFIED}", re.IGNORECASE)


# Statements that do what they say: they change nothing they do not name.
_PLAIN_STATEMENTS = {
    "create", "alter", "drop", "comment", "insert", "update", "delete", "truncate", "set",
    "reset", "begin", "commit", "rollback", "savepoint", "release", "grant", "revoke",
    "analyze", "vacuum", "reindex", "cluster", "refresh", "lock", "show", "select",
}  # fmt: skip


def may_act_unnamed(sql: str) -> bool:
    """Whether a statement may change objects it does not name: a ``DO`` block, a
    ``CALL``, a function called by ``SELECT f()`` (a plain query selects ``FROM``)."""
    head = sql.lstrip().split(None, 1)
    word = head[0].lower() if head else ""
    if word == "select":
        return " from " not in sql.lower() and "(" in sql
    return word not in _PLAIN_STATEMENTS


def statement_names(sql: str) -> set[str]:
    """The names a statement may change (see ``names_in`` for the spelling).

    A ``CREATE`` changes only what it creates (and, for an index or a trigger, the
    table it is ``ON``): ``CREATE TABLE fills (... REFERENCES orders)`` does not change
    ``orders``.  Any other statement (``ALTER``, ``DROP ... CASCADE``, ``DO``, ``COMMENT``,
    a function call) may change whatever it names, so all its words count.
    """
    match = _CREATE.match(sql)
    if not match:
        return names_in(sql)
    kind = match.group(1).upper()
    found: set[str] = set()
    if match.group(3):
        found |= names_in(match.group(3))
    if kind in ("INDEX", "TRIGGER"):
        on = _ON.search(sql, match.end())
        if not on:
            return names_in(sql)
        found |= names_in(on.group(1))
    return found or names_in(sql)


def read_name(key: Key) -> str:
    """The name a catalog reading of ``key`` is filtered on (its table, or its own)."""
    if key[0] in ("function", "procedure"):
        return key[1].split("(", 1)[0]
    return key[1]


def filter_names(key: Key, attrs: dict[str, Any]) -> set[str]:
    """Every name whose reading returns ``key`` (a sequence also comes with its table)."""
    names = {read_name(key)}
    if key[0] == "sequence" and attrs.get("owned_by"):
        names.add(str(attrs["owned_by"]).split(".", 1)[0])
    return names


class Tracker:
    """The current schema of ``connection``'s database, updated by ``step()``."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.ignored = ignored_tables()
        self.objects: Objects = {}
        self._by_name: dict[str, set[Key]] = {}  # filter name -> keys
        self._linked: dict[str, set[Key]] = {}  # a name -> keys whose definitions use it
        self._links: dict[Key, set[str]] = {}
        self._filters: dict[Key, set[str]] = {}
        self._names: set[str] = set()  # names of tables, views, functions, types...
        self._partitioned: set[str] = set()
        self._master: dict[tuple[str, str], tuple[str, str]] = {}
        self._watermark: int | None = None
        self.reads = 0
        self.refresh()

    @property
    def postgresql(self) -> bool:
        return self.connection.vendor == "postgresql"

    def schema(self) -> Schema:
        return Schema(dict(self.objects))

    # -- reading -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Read everything again (the start, or after something the tracker cannot follow)."""
        for key in list(self.objects):
            self._forget(key)
        if self.postgresql:
            with self.connection.cursor() as cursor:
                # The reading after each step is one prepared statement: plan it once
                # (this is a scratch database's session, nothing else is prepared there).
                cursor.execute("SET plan_cache_mode = force_generic_plan")
            self._watermark = pg_catalog.watermark(self.connection)
            objects = pg_catalog.read(self.connection, ignored=self.ignored).objects
        else:
            self._master = sqlite_catalog.master(self.connection)
            objects = sqlite_catalog.read(self.connection, ignored=self.ignored)
        self.reads += 1
        self._remember_all(objects)

    @contextlib.contextmanager
    def step(self) -> Iterator[Changes]:
        """Around one step: collect the words of its statements; afterwards fill the
        yielded dict with what it changed (also when the step raised: a failed step
        rolled back changes nothing, a non-atomic one may have)."""
        words: set[str] = set()
        unnamed = [False]

        def capture(execute, sql, params, many, context):
            if self.postgresql:
                text = str(sql)
                words.update(statement_names(text))
                unnamed[0] = unnamed[0] or may_act_unnamed(text)
            return execute(sql, params, many, context)

        changes: Changes = {}
        try:
            with self.connection.execute_wrapper(capture):
                yield changes
        finally:
            changes.update(self.update(words, scan=unnamed[0]))

    def update(self, words: set[str], scan: bool = True) -> Changes:
        """Read again what a step with statements of these ``words`` may have changed
        (``scan``: it may also have changed what it did not name, see the module)."""
        if self.postgresql:
            wanted = set(words)
            for word in {w.lower() for w in words}:
                for key in self._linked.get(word, ()):
                    wanted |= self._filters.get(key, set())
                if word in self._partitioned:
                    scan = True  # its partitions get clones of what is made on it
            reading = pg_catalog.read(
                self.connection,
                names=wanted,
                ignored=self.ignored,
                since=self._watermark,
                scan=scan,
                prepare=True,
            )
            self._watermark = reading.watermark
            names = {name.lower() for name in wanted | reading.touched}
            fresh = reading.objects
        else:
            now = sqlite_catalog.master(self.connection)
            names = {
                (now.get(k) or self._master[k])[0].lower()
                for k in set(now) | set(self._master)
                if now.get(k) != self._master.get(k)
            }
            self._master = now
            if not names:
                return {}
            fresh = sqlite_catalog.read(self.connection, names=names, ignored=self.ignored)
        self.reads += 1
        before: Objects = {}
        for name in names:
            for key in list(self._by_name.get(name, ())):
                before[key] = self.objects[key]
                self._forget(key)
        self._remember_all(fresh)
        changes: Changes = {}
        for key in set(before) | set(fresh):
            old, new = before.get(key), fresh.get(key)
            if old != new:
                changes[key] = (old, new)
        return changes

    # -- book-keeping ------------------------------------------------------------------
    def _remember_all(self, objects: Objects) -> None:
        # Names first, so that a view read together with its table links to it.
        self._names.update(read_name(key).lower() for key in objects if key[0] in OWNERLESS)
        for key, attrs in objects.items():
            self._remember(key, attrs)

    def _remember(self, key: Key, attrs: dict[str, Any]) -> None:
        self.objects[key] = attrs
        filters = filter_names(key, attrs)
        self._filters[key] = filters
        for name in filters:
            self._by_name.setdefault(name.lower(), set()).add(key)
        if not self.postgresql:
            return
        if key[0] == "table" and attrs.get("partition_key"):
            self._partitioned.add(key[1].lower())
        links = {name.lower() for name in filters}
        if key[0] == "foreign key":
            links.add(key[3].split(".", 1)[0].lower())
        if key[0] not in _TEXT_KINDS_WITHOUT_LINKS:
            for name, value in attrs.items():
                if isinstance(value, str) and name != "comment":
                    links |= words_of(value) & self._names
        self._links[key] = links
        for name in links:
            self._linked.setdefault(name, set()).add(key)

    def _forget(self, key: Key) -> None:
        self.objects.pop(key, None)
        for name in self._filters.pop(key, set()):
            keys = self._by_name.get(name.lower())
            if keys is not None:
                keys.discard(key)
        for name in self._links.pop(key, set()):
            keys = self._linked.get(name)
            if keys is not None:
                keys.discard(key)

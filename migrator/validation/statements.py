"""What one SQL statement does, as far as the lock-hazard gate needs to know.

The gate (``hazards.py``) learns the *facts* of a statement from PostgreSQL itself on a
scratch database (which locks it held, whether the table was rewritten), but to know
which statement touches which table, and how, it reads the text: ``UPDATE fills ...``,
``ALTER TABLE orders ALTER COLUMN note SET NOT NULL, ADD CONSTRAINT ...``, ``CREATE
INDEX ... ON trades``.  This module is that reading: a small tokenizer (comments,
quoted names, strings, dollar-quoted bodies and placeholders handled as PostgreSQL
lexes them) and a shape per statement.  It never raises on odd SQL: what it does not
recognise is ``Shape("other")``, which no rule matches.

Names are kept as PostgreSQL resolves them: unquoted ones folded to lower case, quoted
ones as written (``Name``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<line_comment>--[^\n]*)
  | (?P<block_comment>/\*)
  | (?P<quoted>"(?:[^"]|"")*")
  | (?P<string>[EeBbXxNn]?'(?:[^'\\]|''|\\.)*')
  | (?P<dollar>\$(?P<tag>[A-Za-z_][\w]*)?\$)
  | (?P<param>%s|%\(\w+\)s|\$\d+)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_][\w$]*)
  | (?P<op><=|>=|<>|!=|::|[-+*/<>=~!@#%^&|`?(),;.\[\]:])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # word | ident | string | param | number | op
    text: str  # as written
    value: str  # words lower case, quoted identifiers unquoted

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.value in words

    def is_op(self, *ops: str) -> bool:
        return self.kind == "op" and self.value in ops


def tokenize(sql: str) -> list[Token]:
    """The tokens of ``sql`` without whitespace and comments (never raises)."""
    tokens: list[Token] = []
    i, size = 0, len(sql)
    while i < size:
        match = _TOKEN.match(sql, i)
        if match is None:
            tokens.append(Token("op", sql[i], sql[i]))
            i += 1
            continue
        kind = match.lastgroup
        text = match.group(0)
        if kind == "tag":
            kind = "dollar"
        if kind == "block_comment":
            i = _end_of_comment(sql, match.end())
            continue
        if kind == "dollar":
            end = sql.find(text, match.end())
            end = size if end < 0 else end + len(text)
            tokens.append(Token("string", sql[i:end], sql[match.end() : end - len(text)]))
            i = end
            continue
        i = match.end()
        if kind in ("space", "line_comment"):
            continue
        if kind == "quoted":
            tokens.append(Token("ident", text, text[1:-1].replace('""', '"')))
        elif kind == "word":
            tokens.append(Token("word", text, text.lower()))
        else:
            tokens.append(Token(str(kind), text, text))
    return tokens


def _end_of_comment(sql: str, i: int) -> int:
    """Past the ``*/`` closing a block comment opened just before ``i`` (they nest)."""
    depth = 1
    while i < len(sql) and depth:
        if sql.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
        else:
            i += 1
    return i


@dataclass(frozen=True)
class Name:
    """A table as PostgreSQL resolves it: ``schema`` None means "by the search path"."""

    schema: str | None
    name: str
    text: str = field(default="", compare=False)  # as written, for to_regclass()

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass(frozen=True)
class Action:
    """One subcommand of ``ALTER TABLE``."""

    kind: str  # add-column | add-constraint | alter-type | set-not-null | validate | other
    column: str | None = None
    constraint: str | None = None  # check | foreign | primary | unique | exclude
    not_valid: bool = False
    using_index: bool = False
    default: bool = False  # ADD COLUMN ... DEFAULT ...
    references: bool = False  # ADD COLUMN ... REFERENCES (a foreign key to validate)
    checks: bool = False  # ADD COLUMN ... CHECK (...)
    indexed: bool = False  # ADD COLUMN ... PRIMARY KEY / UNIQUE
    stored: bool = False  # ADD COLUMN ... GENERATED ALWAYS AS (...) STORED


@dataclass(frozen=True)
class Shape:
    """What a statement does to which table."""

    verb: str  # update | delete | insert | select | create-index | alter-table | rewrite |
    #            reindex | create-table-as | other
    table: Name | None = None
    concurrently: bool = False
    actions: tuple[Action, ...] = ()
    reads: tuple[Name, ...] = ()  # tables read FROM/JOIN (insert-select, select, CTAS)
    conditions: tuple[tuple[Token, ...], ...] = ()  # WHERE, as top-level AND conjuncts
    # SELECT: LIMIT anywhere (a batch's upper key is one).  UPDATE/DELETE: a LIMIT outside
    # the SET list (a CTE, a FROM/USING subquery, the WHERE), so the rows come from a batch.
    limited: bool = False

    def bounded_by(self, keys: frozenset[str] | set[str]) -> bool:
        """Whether the WHERE pins the rows by one of ``keys`` (unique, single-column
        keys): ``key = v``, ``key IN (v, ...)``, ``key = ANY(v)``, ``key BETWEEN v AND
        w``, both a lower and an upper bound, or an upper bound given as a parameter
        (the first batch of a walk along the key, as ``db.batched_update`` sends it); or,
        in an ``UPDATE``/``DELETE`` whose rows come from a ``LIMIT`` (``WITH batch AS
        (SELECT id ... LIMIT %s) UPDATE t ... FROM batch WHERE t.id = batch.id``, ``id IN
        (SELECT id ... LIMIT %s)``), any ``key =`` / ``key IN`` condition."""
        lower = upper = False
        for tokens in self.conditions:
            found = _key_condition(tokens, keys)
            if found == "pinned" or (found == "joined" and self.limited):
                return True
            lower = lower or found == "lower"
            upper = upper or found in ("upper", "upper-param")
            if found == "upper-param":
                return True
        return lower and upper


def parse(sql: str) -> Shape:
    """The shape of one statement (``Shape("other")`` when it is none of the kinds)."""
    try:
        return _parse(tokenize(sql))
    except IndexError:  # truncated text: whatever it is, no rule applies
        return Shape("other")


def _parse(tokens: list[Token]) -> Shape:
    if not tokens:
        return Shape("other")
    ctes_limited = False
    if tokens[0].is_word("with"):
        whole = tokens
        tokens = _after_ctes(tokens)
        if not tokens:
            return Shape("other")
        ctes_limited = any(t.is_word("limit") for t in whole[: len(whole) - len(tokens)])
    head = tokens[0]
    if head.is_word("update"):
        return _update_or_delete("update", tokens, 1, ctes_limited)
    if head.is_word("delete") and len(tokens) > 1 and tokens[1].is_word("from"):
        return _update_or_delete("delete", tokens, 2, ctes_limited)
    if head.is_word("insert"):
        return Shape("insert", reads=_reads(tokens))
    if head.is_word("select"):
        if "into" in _depth0_words(tokens):
            return Shape("create-table-as", reads=_reads(tokens))
        limited = any(t.is_word("limit", "fetch") for t in tokens)
        return Shape("select", reads=_reads(tokens), conditions=_where(tokens), limited=limited)
    if head.is_word("create"):
        return _create(tokens)
    if head.is_word("alter") and len(tokens) > 2 and tokens[1].is_word("table"):
        return _alter_table(tokens)
    if head.is_word("cluster"):
        rest = [t for t in tokens[1:] if not t.is_word("verbose")]
        name, _ = _name(rest, 0)
        return Shape("rewrite", table=name) if name else Shape("other")
    if head.is_word("vacuum"):
        return _vacuum(tokens)
    if head.is_word("reindex"):
        return _reindex(tokens)
    return Shape("other")


def _after_ctes(tokens: list[Token]) -> list[Token]:
    """The main statement of ``WITH a AS (...), b AS (...) <statement>``."""
    depth = 0
    previous: Token | None = None
    for i, token in enumerate(tokens):
        if token.is_op("("):
            depth += 1
        elif token.is_op(")"):
            depth -= 1
        elif (
            depth == 0
            and previous is not None
            and previous.is_op(")")
            and token.is_word("select", "insert", "update", "delete")
        ):
            return tokens[i:]
        previous = token
    return []


def _depth0_words(tokens: list[Token]) -> set[str]:
    depth, found = 0, set()
    for token in tokens:
        if token.is_op("("):
            depth += 1
        elif token.is_op(")"):
            depth -= 1
        elif depth == 0 and token.kind == "word":
            found.add(token.value)
    return found


def _name(tokens: list[Token], i: int) -> tuple[Name | None, int]:
    """A possibly qualified name at ``i``; (None, i) when there is none."""
    if i >= len(tokens) or tokens[i].kind not in ("word", "ident"):
        return None, i
    parts = [tokens[i]]
    j = i + 1
    while j + 1 < len(tokens) and tokens[j].is_op(".") and tokens[j + 1].kind in ("word", "ident"):
        parts.append(tokens[j + 1])
        j += 2
    text = ".".join(p.text for p in parts)
    if len(parts) == 1:
        return Name(None, parts[0].value, text), j
    return Name(parts[-2].value, parts[-1].value, text), j


def _skip_words(tokens: list[Token], i: int, *words: str) -> int:
    while i < len(tokens) and tokens[i].is_word(*words):
        i += 1
    return i


def _update_or_delete(verb: str, tokens: list[Token], i: int, ctes_limited: bool) -> Shape:
    i = _skip_words(tokens, i, "only")
    name, _ = _name(tokens, i)
    # The SET list is left out: SET x = (SELECT ... LIMIT 1) bounds no row.
    depth, in_set, limited = 0, False, ctes_limited
    for token in tokens[i:]:
        if token.is_op("("):
            depth += 1
        elif token.is_op(")"):
            depth -= 1
        elif depth == 0 and token.is_word("set"):
            in_set = True
        elif depth == 0 and token.is_word("from", "using", "where", "returning"):
            in_set = False
        elif token.is_word("limit") and not in_set:
            limited = True
    return Shape(verb, table=name, conditions=_where(tokens), limited=limited)


def _where(tokens: list[Token]) -> tuple[tuple[Token, ...], ...]:
    """The top-level ``AND`` conjuncts of the statement's own ``WHERE`` clause."""
    depth, start = 0, None
    for i, token in enumerate(tokens):
        if token.is_op("("):
            depth += 1
        elif token.is_op(")"):
            depth -= 1
        elif depth == 0 and token.is_word("where"):
            start = i + 1
            break
    if start is None:
        return ()
    conjuncts: list[tuple[Token, ...]] = []
    current: list[Token] = []
    depth = 0
    between = False
    for token in tokens[start:]:
        if token.is_op("("):
            depth += 1
        elif token.is_op(")"):
            depth -= 1
            if depth < 0:
                break
        elif depth == 0 and (
            token.is_word("returning", "group", "order", "limit", "offset", "for", "window")
            or token.is_word("union")
            or token.is_op(";")
        ):
            break
        if depth == 0 and token.is_word("between"):
            between = True
        elif depth == 0 and token.is_word("and"):
            if between:
                between = False
            else:
                conjuncts.append(tuple(current))
                current = []
                continue
        current.append(token)
    if current:
        conjuncts.append(tuple(current))
    return tuple(conjuncts)


def _is_value(tokens: tuple[Token, ...] | list[Token]) -> bool:
    """A parameter or a literal, possibly cast (``%s::bigint``)."""
    if not tokens:
        return False
    if tokens[0].is_op("-", "+") and len(tokens) > 1:
        tokens = tokens[1:]
    if tokens[0].kind not in ("param", "number", "string"):
        return False
    rest = list(tokens[1:])
    while len(rest) >= 2 and rest[0].is_op("::") and rest[1].kind in ("word", "ident"):
        rest = rest[2:]
        while rest and rest[0].is_op("[", "]"):
            rest = rest[1:]
    return not rest


def _key_condition(tokens: tuple[Token, ...], keys: frozenset[str] | set[str]) -> str:
    """``pinned``, ``joined`` (to a name or a subquery), ``lower``, ``upper``,
    ``upper-param`` or ``""`` for one conjunct."""
    while len(tokens) >= 2 and tokens[0].is_op("(") and tokens[-1].is_op(")"):
        tokens = tokens[1:-1]
    name, i = _name(list(tokens), 0)
    if name is None or name.name not in keys or i >= len(tokens):
        return ""
    op, rest = tokens[i], tokens[i + 1 :]
    if op.is_op("=") and _is_value(rest):
        return "pinned"
    if op.is_op("=") and _name(list(rest), 0)[1] == len(rest):
        return "joined"  # key = batch.id: bounded when the batch has a LIMIT
    if (
        op.is_word("in")
        and rest
        and rest[0].is_op("(")
        and len(rest) > 1
        and rest[1].is_word("select")
    ):
        return "joined"
    if op.is_op("=") and rest and rest[0].is_word("any") and len(rest) >= 3:
        return "pinned" if _is_value(rest[2:-1]) else "joined"
    if op.is_word("in") and rest and rest[0].is_op("(") and rest[-1].is_op(")"):
        items = _split(list(rest[1:-1]), ",")
        return "pinned" if items and all(_is_value(item) for item in items) else ""
    if op.is_word("between"):
        parts = _split(list(rest), "and")
        return "pinned" if len(parts) == 2 and all(_is_value(p) for p in parts) else ""
    if op.is_op(">", ">=") and _is_value(rest):
        return "lower"
    if op.is_op("<", "<=") and _is_value(rest):
        return "upper-param" if rest[0].kind == "param" else "upper"
    return ""


def _split(tokens: list[Token], separator: str) -> list[list[Token]]:
    """``tokens`` cut at top-level ``separator`` (an operator like ``,`` or a word)."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.is_op("("):
            depth += 1
        elif token.is_op(")"):
            depth -= 1
        if depth == 0 and (token.is_op(separator) or token.is_word(separator)):
            parts.append([])
            continue
        parts[-1].append(token)
    return [p for p in parts if p]


def _reads(tokens: list[Token]) -> tuple[Name, ...]:
    """Tables named after ``FROM`` or ``JOIN`` anywhere in the statement."""
    found: list[Name] = []
    for i, token in enumerate(tokens):
        if token.is_word("from", "join"):
            j = _skip_words(tokens, i + 1, "only", "lateral")
            name, _ = _name(tokens, j)
            if name is not None and name.name not in ("select", "unnest", "generate_series"):
                found.append(name)
    return tuple(found)


def _create(tokens: list[Token]) -> Shape:
    i = _skip_words(tokens, 1, "or", "replace", "unique")
    if i < len(tokens) and tokens[i].is_word("index"):
        i += 1
        concurrently = i < len(tokens) and tokens[i].is_word("concurrently")
        for j in range(i, len(tokens)):
            if tokens[j].is_word("on"):
                k = _skip_words(tokens, j + 1, "only")
                name, _ = _name(tokens, k)
                return Shape("create-index", table=name, concurrently=concurrently)
        return Shape("other")
    i = _skip_words(tokens, i, "temp", "temporary", "unlogged", "global", "local")
    if (
        i < len(tokens)
        and tokens[i].is_word("table", "materialized")
        and "as" in _depth0_words(tokens)
    ):
        return Shape("create-table-as", reads=_reads(tokens))
    return Shape("other")


def _alter_table(tokens: list[Token]) -> Shape:
    i = _skip_words(tokens, 2, "if", "exists", "only")
    name, i = _name(tokens, i)
    if name is None:
        return Shape("other")
    if i < len(tokens) and tokens[i].is_op("*"):
        i += 1
    actions = tuple(_action(part) for part in _split(tokens[i:], ","))
    return Shape("alter-table", table=name, actions=actions)


_CONSTRAINT_KINDS = {
    "check": "check",
    "foreign": "foreign",
    "primary": "primary",
    "unique": "unique",
    "exclude": "exclude",
}


def _action(part: list[Token]) -> Action:
    words = [t.value for t in part if t.kind == "word"]
    if not part:
        return Action("other")
    first = part[0]
    if first.is_word("add"):
        j = 1
        if j < len(part) and part[j].is_word("constraint"):
            j += 2  # CONSTRAINT name
        if j < len(part) and part[j].kind == "word" and part[j].value in _CONSTRAINT_KINDS:
            kind = _CONSTRAINT_KINDS[part[j].value]
            text = " ".join(words)
            return Action(
                "add-constraint",
                constraint=kind,
                not_valid="not valid" in text,
                using_index="using index" in text,
            )
        j = _skip_words(part, 1, "column", "if", "not", "exists")
        column = part[j].value if j < len(part) else None
        depth0 = _depth0_words(part[j + 1 :])
        return Action(
            "add-column",
            column=column,
            default="default" in depth0 or "generated" in depth0,
            references="references" in depth0,
            checks="check" in depth0,
            indexed="primary" in depth0 or "unique" in depth0,
            stored="stored" in depth0,
        )
    if first.is_word("alter"):
        j = _skip_words(part, 1, "column")
        column = part[j].value if j < len(part) else None
        after = [t.value for t in part[j + 1 :] if t.kind == "word"]
        if after == ["set", "not", "null"]:
            return Action("set-not-null", column=column)
        if after[:1] == ["type"] or after[:3] == ["set", "data", "type"]:
            return Action("alter-type", column=column)
        return Action("other", column=column)
    if first.is_word("validate"):
        return Action("validate", constraint=part[2].value if len(part) > 2 else None)
    return Action("other")


def _vacuum(tokens: list[Token]) -> Shape:
    full = False
    i = 1
    if i < len(tokens) and tokens[i].is_op("("):
        depth = 0
        while i < len(tokens):
            if tokens[i].is_op("("):
                depth += 1
            elif tokens[i].is_op(")"):
                depth -= 1
                if depth == 0:
                    i += 1
                    break
            elif tokens[i].is_word("full"):
                nxt = tokens[i + 1] if i + 1 < len(tokens) else None
                full = not (nxt is not None and nxt.is_word("false", "off"))
            i += 1
    else:
        while i < len(tokens) and tokens[i].is_word("full", "freeze", "verbose", "analyze"):
            full = full or tokens[i].is_word("full")
            i += 1
    name, _ = _name(tokens, i)
    return Shape("rewrite", table=name) if full and name else Shape("other")


def _reindex(tokens: list[Token]) -> Shape:
    text = [t.value for t in tokens if t.kind == "word"]
    concurrently = "concurrently" in text
    for i, token in enumerate(tokens):
        if token.is_word("table"):
            j = _skip_words(tokens, i + 1, "concurrently")
            name, _ = _name(tokens, j)
            return Shape("reindex", table=name, concurrently=concurrently)
    return Shape("other")

"""Split SQL text into statements, each with its number and the line where it starts.

``db.execute_script`` and SQL migration files run one statement at a time (neither
SQLite's driver nor a parameterless psycopg call should be handed several), so the
text must be cut exactly where the database would cut it.  sqlparse's splitter does
that for the cases that break naive splitting on ``;``, each covered by
``tests/test_sqlsplit.py``: dollar-quoted bodies (``$$ … $$``, ``$fn$ … $fn$``), ``DO``
blocks, ``CREATE FUNCTION`` and SQLite ``CREATE TRIGGER … BEGIN … END``, ``BEGIN
ATOMIC`` bodies, quoted strings and identifiers holding ``;`` (``E'\\''`` escapes too),
and ``--`` / ``/* */`` comments holding ``;``.  Only its lexer and splitter run (no
grouping), and the pieces it returns are the text itself, so offsets, and from them
line numbers, are exact.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from sqlparse import engine
from sqlparse import tokens as T

# A statement that opens or ends a transaction: BEGIN [TRANSACTION|WORK|DEFERRED|…],
# START TRANSACTION, COMMIT, END, ROLLBACK (not ROLLBACK TO a savepoint), ABORT.
_TRANSACTION_CONTROL = re.compile(
    r"^(?:BEGIN(?:\s+(?:DEFERRED|IMMEDIATE|EXCLUSIVE))?(?:\s+(?:TRANSACTION|WORK))?"
    r"|START\s+TRANSACTION|COMMIT(?:\s+(?:TRANSACTION|WORK))?|END(?:\s+(?:TRANSACTION|WORK))?"
    r"|ROLLBACK(?:\s+(?:TRANSACTION|WORK))?|ABORT)\b(?!\s+TO\b)",
    re.IGNORECASE,
)

SHOWN_LENGTH = 80


@dataclass(frozen=True)
class Statement:
    """One statement of a script."""

    number: int  # 1-based position in the script
    line: int  # the line where it starts
    sql: str  # what runs: the comments around it and its final ";" left out

    @property
    def head(self) -> str:
        """Its first line, shortened, for messages."""
        first = self.sql.split("\n", 1)[0].strip()
        more = "\n" in self.sql or len(first) > SHOWN_LENGTH
        return first[:SHOWN_LENGTH] + (" …" if more else "")

    def where(self, source: str = "") -> str:
        """``statement 3, line 12 of x.up.sql`` (``…, line 12 of the script``)."""
        return f"statement {self.number}, line {self.line} of {source or 'the script'}"

    @property
    def controls_transaction(self) -> bool:
        return bool(_TRANSACTION_CONTROL.match(self.sql))


@functools.lru_cache(maxsize=128)
def split(sql: str, first_line: int = 1) -> tuple[Statement, ...]:
    """The statements of ``sql`` in order; comment-only pieces are left out.

    ``first_line`` is the line of the file on which ``sql`` starts (a section of a
    larger file), so that each statement's ``line`` is the file's.  Cached: a script
    split to check it is not split again to run it.
    """
    found: list[Statement] = []
    offset = 0
    for piece in engine.FilterStack().run(sql):
        text = str(piece)
        start = end = None
        position = offset
        for token in piece.flatten():
            length = len(token.value)
            if not token.is_whitespace and token.ttype not in T.Comment:
                if start is None:
                    start = position
                end = position + length
            position += length
        if start is not None and end is not None:
            body = sql[start:end].rstrip()
            if body.endswith(";"):
                body = body[:-1].rstrip()
            if body:
                line = first_line + sql.count("\n", 0, start)
                found.append(Statement(len(found) + 1, line, body))
        offset += len(text)
    return tuple(found)

"""The one place where SQL text is quoted and assembled.

Every statement the tool writes itself goes through these functions. Names and values from a
database or a backup are hostile data: they may hold quotes, `$`, newlines, backslashes, `;` or
psql meta-commands. So:

- identifiers are always double-quoted, with `"` doubled;
- literals are single-quoted with `'` doubled, and written as E'...' (backslashes doubled) when
  they hold a backslash, so they mean the same whatever `standard_conforming_strings` is;
- dollar-quoted bodies get a tag that does not occur in the body (as pg_dump picks them);
- no name ever goes into a comment (a newline would end the comment and start a command);
- NUL cannot be stored in a PostgreSQL name or text value; a string holding one is refused.

psql still reads what we send, so the session also runs under `\\restrict KEY` with a key only
this process knows (see restore/session.py): even a quoting mistake could not run `\\!`.
"""

from __future__ import annotations

import secrets

from .errors import IntegrityError


def _no_nul(text: str, what: str) -> str:
    if "\x00" in text:
        raise IntegrityError(
            f"A {what} holds a NUL character, which PostgreSQL cannot store", "the backup is damaged or was tampered with; restore another backup"
        )
    return text


def ident(name: str) -> str:
    """A quoted identifier: `my "table"` becomes the name in double quotes with each quote doubled (quotes doubled)."""
    return '"' + _no_nul(name, "name").replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{ident(schema)}.{ident(name)}"


def literal(text: str) -> str:
    """A string literal that means `text` under any standard_conforming_strings setting."""
    body = _no_nul(text, "value").replace("'", "''")
    if "\\" in body:
        return "E'" + body.replace("\\", "\\\\") + "'"
    return "'" + body + "'"


def dollar_quote(body: str, hint: str = "f") -> str:
    """`body` between dollar-quote tags that occur nowhere in it (nor across its end)."""
    _no_nul(body, "function body")
    n = 0
    while True:
        tag = f"${hint}{n or ''}$" if n < 3 else f"${hint}_{secrets.token_hex(4)}$"
        # `(body + tag).find(tag) == len(body)`: the closing tag is the first place the tag
        # occurs, also when the body ends with a prefix of it.
        if (body + tag).find(tag) == len(body) and tag not in body:
            return f"{tag}{body}{tag}"
        n += 1


def do_block(body: str) -> str:
    """An anonymous PL/pgSQL block with a safe dollar tag."""
    return f"DO {dollar_quote(body, 'do')};"


def restrict_key() -> str:
    """A key for psql's `\\restrict`: only the holder can lift the restriction."""
    return secrets.token_hex(24)


def pattern(*parts: str) -> str:
    """A pg_dump/psql object pattern that matches exactly these names: each part double-quoted,
    where `*`, `?` and `.` lose their meaning."""
    return ".".join('"' + _no_nul(p, "name").replace('"', '""') + '"' for p in parts)

"""The regular expressions of `field:~regex`: a small syntax that means the same on both
databases and cannot hang either of them.

PostgreSQL matches with its own engine (`~`), SQLite with RE2 (a function the store registers).
The two engines disagree on details (what `.` does with a newline, `$` before a final newline,
`\\d` beyond ASCII, POSIX classes, back references), so a pattern is parsed here into a tree
of the few constructs whose meaning both share, and written out once per engine:

- literal characters; metacharacters `\\ ^ $ . | ? * + ( ) [ ] { }` escaped with `\\`
- `.` (any character, newline included), `^` and `$` (start and end of the whole value)
- classes `[abc]`, `[a-z]`, `[^...]`; `\\d \\w \\s` (ASCII digits, word characters, white space)
  and their negations `\\D \\W \\S` outside classes
- groups `( )` and alternatives `|`; quantifiers `* + ? {n} {n,} {n,m}` (at most 100)

A match is a search: the pattern may match anywhere in the value unless anchored. Patterns are
at most 200 characters, nest at most 10 groups deep, and expand to at most 1,000 repeated
atoms. RE2 runs in linear time; PostgreSQL additionally runs such a query under a statement
timeout.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LENGTH = 200
MAX_REPEAT = 100
MAX_DEPTH = 10
MAX_EXPANDED_SIZE = 1000

_METACHARACTERS = frozenset("\\^$.|?*+()[]{}")
_CLASS_SPECIAL = frozenset("\\]^-[")
_SHORTHANDS: dict[str, tuple[tuple[str, str], ...]] = {
    "d": (("0", "9"),),
    "w": (("0", "9"), ("A", "Z"), ("a", "z"), ("_", "_")),
    "s": (("\t", "\r"), (" ", " ")),  # tab, newline, vertical tab, form feed, return, space
}
_CONTROL_ESCAPES = {"\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r"}


class RegexError(ValueError):
    """A pattern outside the supported syntax; `offset` is 0-based within the pattern."""

    def __init__(self, offset: int, problem: str) -> None:
        super().__init__(problem)
        self.offset = offset
        self.problem = problem


@dataclass(frozen=True)
class Regex:
    """A validated pattern and its spelling for each engine."""

    source: str
    postgresql: str
    re2: str


def compile_regex(source: str) -> Regex:
    if not source:
        raise RegexError(0, "empty regular expression")
    if len(source) > MAX_LENGTH:
        raise RegexError(MAX_LENGTH, f"regular expression longer than {MAX_LENGTH} characters")
    parser = _Parser(source)
    written, size = parser.alternation(0)
    if parser.position < len(source):
        raise RegexError(parser.position, "unbalanced ')'")
    if size > MAX_EXPANDED_SIZE:
        raise RegexError(0, f"regular expression repeats too much (more than {MAX_EXPANDED_SIZE})")
    # RE2's `.` skips newlines unless (?s); PostgreSQL's matches them (not newline-sensitive).
    return Regex(source=source, postgresql=written, re2="(?s)" + written)


def _literal(char: str) -> str:
    if char in _CONTROL_ESCAPES:
        return _CONTROL_ESCAPES[char]
    return "\\" + char if char in _METACHARACTERS else char


def _class_char(char: str) -> str:
    if char in _CONTROL_ESCAPES:
        return _CONTROL_ESCAPES[char]
    return "\\" + char if char in _CLASS_SPECIAL else char


def _class(ranges: list[tuple[str, str]], negated: bool) -> str:
    body = "".join(
        _class_char(low) if low == high else f"{_class_char(low)}-{_class_char(high)}"
        for low, high in ranges
    )
    return f"[{'^' if negated else ''}{body}]"


class _Parser:
    """Recursive descent; every method returns (the pattern as written out, expanded size)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.position = 0

    def _peek(self) -> str:
        return self.source[self.position] if self.position < len(self.source) else ""

    def alternation(self, depth: int) -> tuple[str, int]:
        branches = [self.sequence(depth)]
        while self._peek() == "|":
            self.position += 1
            branches.append(self.sequence(depth))
        return "|".join(text for text, _ in branches), sum(size for _, size in branches)

    def sequence(self, depth: int) -> tuple[str, int]:
        start = self.position
        parts: list[str] = []
        size = 0
        while self._peek() not in ("", "|", ")"):
            text, atom_size, repeatable = self.atom(depth)
            text, atom_size = self.quantified(text, atom_size, repeatable)
            parts.append(text)
            size += atom_size
        if not parts:
            raise RegexError(start, "empty alternative in regular expression")
        return "".join(parts), size

    def quantified(self, text: str, size: int, repeatable: bool) -> tuple[str, int]:
        char = self._peek()
        if char not in ("*", "+", "?", "{"):
            return text, size
        if not repeatable:
            raise RegexError(self.position, f"'{char}' has nothing to repeat")
        if char == "{":
            low, high = self._bounds()
            quantifier = (
                f"{{{low}}}"
                if low == high
                else (f"{{{low},}}" if high is None else f"{{{low},{high}}}")
            )
            factor = max(low, 1) if high is None else max(high, 1)
        else:
            self.position += 1
            quantifier, factor = char, 1
        if self._peek() in ("*", "+", "?", "{"):
            raise RegexError(self.position, "a quantifier cannot follow another (no lazy forms)")
        # Groups are written non-capturing, so a quantified group needs no extra wrapping.
        return text + quantifier, size * factor

    def _bounds(self) -> tuple[int, int | None]:
        start = self.position
        end = self.source.find("}", start)
        if end == -1:
            raise RegexError(start, "'{' without '}' (write \\{ for a brace)")
        low_text, comma, high_text = self.source[start + 1 : end].partition(",")
        if not _digits(low_text) or (high_text and not _digits(high_text)):
            raise RegexError(start, "repetition must be {n}, {n,} or {n,m} with whole numbers")
        low = int(low_text)
        high: int | None = low if not comma else (int(high_text) if high_text else None)
        if low > MAX_REPEAT or (high is not None and high > MAX_REPEAT):
            raise RegexError(start, f"repetition counts go up to {MAX_REPEAT}")
        if high is not None and high < low:
            raise RegexError(start, "repetition {n,m} needs n <= m")
        self.position = end + 1
        return low, high

    def atom(self, depth: int) -> tuple[str, int, bool]:
        """The atom, its size and whether a quantifier may follow it."""
        position = self.position
        char = self.source[position]
        if char == "(":
            if depth >= MAX_DEPTH:
                raise RegexError(position, f"groups nest at most {MAX_DEPTH} deep")
            if self.source.startswith("(?", position):
                raise RegexError(position, "'(?' constructs are not supported")
            self.position += 1
            text, size = self.alternation(depth + 1)
            if self._peek() != ")":
                raise RegexError(position, "'(' without ')'")
            self.position += 1
            return f"(?:{text})", size, True
        if char == "[":
            return self._bracket(), 1, True
        if char in ("^", "$"):
            self.position += 1
            return char, 0, False
        if char == ".":
            self.position += 1
            return ".", 1, True
        if char == "\\":
            return self._escape(), 1, True
        if char in "*+?{":
            raise RegexError(position, f"'{char}' has nothing to repeat")
        if char in "]}":
            raise RegexError(position, f"unescaped '{char}' (write \\{char})")
        self.position += 1
        return _literal(char), 1, True

    def _escape(self) -> str:
        position = self.position
        if position + 1 >= len(self.source):
            raise RegexError(position, "'\\' at the end of the regular expression")
        char = self.source[position + 1]
        self.position += 2
        if char.lower() in _SHORTHANDS:
            return _class(list(_SHORTHANDS[char.lower()]), negated=char.isupper())
        if char in _METACHARACTERS or (char.isascii() and not char.isalnum() and char != " "):
            return _literal(char) if char in _METACHARACTERS else char
        raise RegexError(position, f"unsupported escape '\\{char}'")

    def _bracket(self) -> str:
        opening = self.position
        self.position += 1
        negated = self._peek() == "^"
        if negated:
            self.position += 1
        ranges: list[tuple[str, str]] = []
        while self._peek() != "]":
            if self._peek() == "":
                raise RegexError(opening, "'[' without ']'")
            low = self._class_member(ranges)
            if low is None:
                continue
            if self._peek() == "-" and self.source[self.position + 1 : self.position + 2] not in (
                "]",
                "",
            ):
                dash = self.position
                self.position += 1
                high = self._class_member(ranges)
                if high is None:
                    raise RegexError(dash, "a range cannot end in a class like \\d")
                if high < low:
                    raise RegexError(dash, f"range '{low}-{high}' is out of order")
                ranges.append((low, high))
            else:
                ranges.append((low, low))
        if not ranges:
            raise RegexError(opening, "empty class '[]' (write \\] for a bracket)")
        self.position += 1
        return _class(ranges, negated)

    def _class_member(self, ranges: list[tuple[str, str]]) -> str | None:
        """One character of a class, or None when it was a shorthand (added to `ranges`)."""
        position = self.position
        char = self.source[position]
        if char == "[":
            raise RegexError(position, "'[' inside a class must be escaped (\\[)")
        if char != "\\":
            self.position += 1
            return char
        if position + 1 >= len(self.source):
            raise RegexError(position, "'\\' at the end of the regular expression")
        escaped = self.source[position + 1]
        self.position += 2
        if escaped in _SHORTHANDS:
            ranges.extend(_SHORTHANDS[escaped])
            return None
        if escaped.isascii() and not escaped.isalnum() and escaped != " ":
            return escaped
        raise RegexError(position, f"unsupported escape '\\{escaped}' in a class")


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 4

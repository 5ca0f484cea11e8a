"""java.text.SimpleDateFormat patterns for the common letters, in UTC:

    y  year (yy two digits)       M  month (MM number, MMM Jan, MMMM January)
    d  day of month               H  hour 0-23       h  hour 1-12     a  AM/PM
    m  minute                     s  second          S  milliseconds (SSS)
    E  weekday (EEE Mon, EEEE Monday)                D  day of year
    Z  +0000                      X  Z or +00, XX +0000, XXX +00:00   z  UTC
    'text' literal text, '' a quote

Other letters raise ValueError (Kafka: IllegalArgumentException on an unknown letter).
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

_TOKEN = re.compile(r"'(?:[^']|'')*'|''|([A-Za-z])\1*|.", re.DOTALL)
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


@dataclass(frozen=True)
class _Piece:
    letter: str  # "" for literal text
    count: int
    text: str = ""


class JavaDateFormat:
    """A SimpleDateFormat pattern: `format(datetime)` and `parse(text)` in UTC."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pieces: list[_Piece] = []
        for match in _TOKEN.finditer(pattern):
            token = match.group(0)
            if token == "''":
                self.pieces.append(_Piece("", 0, "'"))
            elif token.startswith("'"):
                self.pieces.append(_Piece("", 0, token[1:-1].replace("''", "'")))
            elif match.group(1):
                if token[0] not in "yMdHhmsSaEDZXzu":
                    raise ValueError(f"Illegal pattern character '{token[0]}'")
                self.pieces.append(_Piece(token[0], len(token)))
            else:
                self.pieces.append(_Piece("", 0, token))
        self._regex = re.compile("".join(self._piece_regex(p) for p in self.pieces),
                                 re.IGNORECASE)

    # -- formatting
    def format(self, value: _dt.datetime) -> str:
        if value.tzinfo is not None:
            value = value.astimezone(_dt.UTC)
        return "".join(self._format_piece(p, value) for p in self.pieces)

    @staticmethod
    def _format_piece(p: _Piece, v: _dt.datetime) -> str:
        if not p.letter:
            return p.text
        simple = {"d": v.day, "H": v.hour, "m": v.minute, "s": v.second,
                  "h": (v.hour % 12) or 12, "D": v.timetuple().tm_yday, "u": v.isoweekday()}
        if p.letter in simple:
            return str(simple[p.letter]).zfill(p.count)
        if p.letter == "y":
            return f"{v.year % 100:02d}" if p.count == 2 else str(v.year).zfill(p.count)
        if p.letter == "M":
            if p.count >= 4:
                return _MONTHS[v.month - 1]
            return _MONTHS[v.month - 1][:3] if p.count == 3 else str(v.month).zfill(p.count)
        if p.letter == "S":
            return str(v.microsecond // 1000).zfill(3)[:max(p.count, 3)].zfill(p.count)
        if p.letter == "E":
            day = _DAYS[v.weekday()]
            return day if p.count >= 4 else day[:3]
        return {"a": "AM" if v.hour < 12 else "PM", "Z": "+0000", "X": "Z"}.get(p.letter, "UTC")

    # -- parsing
    @staticmethod
    def _piece_regex(p: _Piece) -> str:
        if not p.letter:
            return re.escape(p.text)
        name = f"(?P<{p.letter}{id(p)}>"
        if p.letter in "yMdHhmsSDu":
            if p.letter == "M" and p.count >= 3:
                return name + "[A-Za-z]+)"
            if p.letter == "y":
                return name + (r"\d{2})" if p.count == 2 else r"\d+)")
            return name + (rf"\d{{{p.count}}})" if p.count > 1 else r"\d+)")
        if p.letter == "a":
            return name + "AM|PM)"
        if p.letter == "E":
            return name + "[A-Za-z]+)"
        return name + r"Z|[+-]\d{2}(?::?\d{2})?|[A-Za-z]{1,5})"

    def parse(self, text: str) -> _dt.datetime:
        match = self._regex.fullmatch(text)
        if match is None:
            raise ValueError(f'Unparseable date: "{text}"')
        fields = {"y": 1970, "M": 1, "d": 1, "H": 0, "m": 0, "s": 0, "S": 0, "h": -1, "a": 0,
                  "offset": 0}
        for p in self.pieces:
            if p.letter:
                _parse_piece(p, match.group(f"{p.letter}{id(p)}"), fields)
        if fields["h"] >= 0:
            fields["H"] = fields["h"] % 12 + (12 if fields["a"] else 0)
        result = _dt.datetime(fields["y"], fields["M"], fields["d"], fields["H"], fields["m"],
                              fields["s"], fields["S"] * 1000, tzinfo=_dt.UTC)
        return result - _dt.timedelta(minutes=fields["offset"])


def _parse_piece(p: _Piece, raw: str, fields: dict[str, int]) -> None:
    if p.letter == "M" and p.count >= 3:
        fields["M"] = [m[:3].lower() for m in _MONTHS].index(raw[:3].lower()) + 1
    elif p.letter == "y" and p.count == 2:
        fields["y"] = 2000 + int(raw)
    elif p.letter in "yMdHmsSh":
        fields[p.letter] = int(raw)
    elif p.letter == "a":
        fields["a"] = int(raw.upper() == "PM")
    elif p.letter in "ZX" and raw.upper() != "Z":
        sign = -1 if raw[0] == "-" else 1
        digits = raw[1:].replace(":", "")
        fields["offset"] = sign * (int(digits[:2]) * 60 + int(digits[2:4] or 0))

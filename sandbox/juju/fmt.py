# Output formats of Juju hook tools and the CLI (juju/cmd output.go): smart, yaml, json, byte for byte
# as Go prints them: encoding/json Marshal and gopkg.in/yaml.v2 (v2.4.0) Marshal with its libyaml emitter.
from __future__ import annotations

import functools
import math
import re
from typing import Any

from .flags import go_quote, invalid_value, parse_int, parse_uint

FORMATS = ("smart", "yaml", "json")


class FormatError(Exception):
    """An unknown --format name; str() is juju/cmd's message (exit code 2)."""

    def __init__(self, name: str):
        self.message = invalid_value(name, "format", f"unknown format {go_quote(name)}")
        super().__init__(self.message)


def check_format(name: str) -> str:
    if name not in FORMATS:
        raise FormatError(name)
    return name


# ---------------------------------------------------------------------------
# Float text as strconv.FormatFloat(f, fmt, -1, 64) writes it
# ---------------------------------------------------------------------------


def _shortest(f: float) -> tuple[str, int]:
    """Shortest round-trip digits and decimal point: |f| = 0.DIGITS x 10**dp."""
    r = repr(abs(f))
    mant, _, exp = r.partition("e")
    ip, _, fp = mant.partition(".")
    s = ip + fp
    digits = s.lstrip("0")
    dp = len(ip) + int(exp or 0) - (len(s) - len(digits))
    digits = digits.rstrip("0")
    return (digits, dp) if digits else ("", 0)


def _fmt_e(digits: str, dp: int) -> str:
    d = digits or "0"
    exp = dp - 1 if digits else 0
    body = d[0] + ("." + d[1:] if len(d) > 1 else "")
    return body + "e" + ("-" if exp < 0 else "+") + "%02d" % abs(exp)


def _fmt_f(digits: str, dp: int) -> str:
    prec = max(len(digits) - dp, 0)
    ip = (digits[:dp] + "0" * (dp - len(digits))) if dp > 0 else "0"
    frac = "".join(digits[dp + i] if 0 <= dp + i < len(digits) else "0" for i in range(prec))
    return ip + ("." + frac if prec else "")


def go_format_float(f: float, fmt: str) -> str:
    """strconv.FormatFloat(f, fmt, -1, 64) for fmt in 'e', 'f', 'g'."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, f) < 0 else ""
    digits, dp = _shortest(f)
    if fmt == "g":
        exp = dp - 1
        fmt = "e" if digits and (exp < -4 or exp >= 6) else "f"  # shortest: eprec = 6
    return sign + (_fmt_e(digits, dp) if fmt == "e" else _fmt_f(digits, dp))


# ---------------------------------------------------------------------------
# JSON: encoding/json Marshal (HTML escaping on, map keys sorted)
# ---------------------------------------------------------------------------

_JSON_ESC = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
             "\b": "\\b", "\f": "\\f"}  # \b and \f since Go 1.22


def _json_str(s: str) -> str:
    out = ['"']
    for c in s:
        o = ord(c)
        if c in _JSON_ESC:
            out.append(_JSON_ESC[c])
        elif o < 0x20 or c in "<>&" or o in (0x2028, 0x2029):
            out.append("\\u%04x" % o)
        elif 0xD800 <= o <= 0xDFFF:  # not valid UTF-8: Go writes U+FFFD
            out.append("\\ufffd")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _json_float(f: float) -> str:
    if math.isnan(f) or math.isinf(f):
        raise ValueError("json: unsupported value: " + go_format_float(f, "g"))
    a = abs(f)
    b = go_format_float(f, "e" if a != 0 and (a < 1e-6 or a >= 1e21) else "f")
    if len(b) >= 4 and b[-4] == "e" and b[-3] == "-" and b[-2] == "0":
        b = b[:-2] + b[-1]  # e-07 -> e-7
    return b


def go_json(value: Any) -> str:
    """json.Marshal(value), no trailing newline."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _json_float(value)
    if isinstance(value, str):
        return _json_str(value)
    if isinstance(value, dict):
        items = [(k if isinstance(k, str) else _json_key(k), v) for k, v in value.items()]
        items.sort(key=lambda kv: kv[0])
        return "{" + ",".join(_json_str(k) + ":" + go_json(v) for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    raise TypeError(f"json: unsupported type: {type(value).__name__}")


def _json_key(k: Any) -> str:
    if isinstance(k, int) and not isinstance(k, bool):
        return str(k)
    raise TypeError(f"json: unsupported map key type: {type(k).__name__}")


# ---------------------------------------------------------------------------
# YAML: which scalars yaml.v2 quotes (resolve.go, encode.go stringv)
# ---------------------------------------------------------------------------

_RESOLVE_MAP = {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON",
                "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF",
                "", "~", "null", "Null", "NULL", ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF",
                "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF"}
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?\Z")  # what strconv.ParseFloat takes after '.'
_BASE60 = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?\Z")
# time.Parse layouts yaml.v2 tries: 2006-1-2T15:4:5.999999999Z07:00 (T or t),
# "2006-1-2 15:4:5.999999999" and "2006-1-2".
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})"
    r"(?:(?:[Tt]([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:[.,][0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2}))"
    r"|(?: +([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:[.,][0-9]+)?))?\Z")


def _go_float_ok(s: str) -> bool:
    try:
        return not math.isinf(float(s))  # ParseFloat reports overflow as an error
    except ValueError:
        return False


def _is_timestamp(s: str) -> bool:
    m = _TIMESTAMP.match(s)
    if not m:
        return False
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    if not 1 <= month <= 12:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    mdays = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    if not 1 <= day <= mdays:
        return False
    hms = m.group(4, 5, 6) if m[4] is not None else m.group(8, 9, 10)
    if hms[0] is not None:
        h, mi, sec = (int(x) for x in hms)
        if h >= 24 or mi >= 60 or sec >= 60:
            return False
    zone = m[7]
    if zone and zone != "Z" and (int(zone[1:3]) > 24 or int(zone[4:6]) > 60):
        return False
    return True


def resolves_to_str(s: str) -> bool:
    """yaml.v2 resolve("", s) gives !!str (so the string may be written plain)."""
    if s in _RESOLVE_MAP:
        return False
    c = s[0]
    if c == ".":
        return not (_DOT_FLOAT.match(s) and _go_float_ok(s))
    if c in "+-0123456789":
        if _is_timestamp(s):
            return False
        plain = s.replace("_", "")
        for parse in (parse_int, parse_uint):
            try:
                parse(plain)
                return False
            except ValueError:
                pass
        if _YAML_FLOAT.match(plain) and _go_float_ok(plain):
            return False
        # resolve.go's extra "0b"/"-0b" tries accept nothing ParseInt(s, 0, 64) rejected.
    return True


def _is_base60_float(s: str) -> bool:
    return bool(s) and (s[0] in "+-" or "0" <= s[0] <= "9") and ":" in s and bool(_BASE60.match(s))


# ---------------------------------------------------------------------------
# YAML: the libyaml emitter as yaml.v2 drives it (emitterc.go), block style only
# ---------------------------------------------------------------------------

PLAIN, SINGLE, DOUBLE, LITERAL = "plain", "single", "double", "literal"
BEST_WIDTH = 80  # yaml.v2 v2.4.0 wraps long scalars unless yaml.FutureLineWrap() was called
_BREAKS = "\r\n\x85\u2028\u2029"


def _printable(c: str) -> bool:
    o = ord(c)
    return (o == 0x0A or 0x20 <= o <= 0x7E or 0xA0 <= o <= 0xD7FF
            or (0xE000 <= o <= 0xFFFD and o != 0xFEFF))


class _Analysis:
    def __init__(self, v: str):
        self.multiline = False
        if not v:
            self.block_plain = True
            self.single = True
            self.block = False
            return
        block_ind = v.startswith("---") or v.startswith("...")
        line_breaks = special = False
        leading_space = leading_break = trailing_space = trailing_break = False
        break_space = space_break = previous_space = previous_break = False
        preceded_by_ws = True
        n = len(v)
        for i, c in enumerate(v):
            followed_by_ws = i + 1 >= n or v[i + 1] in " \t"
            if i == 0:
                if c in "#,[]{}&*!|>'\"%@`":
                    block_ind = True
                elif c in "?:" and followed_by_ws:
                    block_ind = True
                elif c == "-" and followed_by_ws:
                    block_ind = True
            elif c == ":" and followed_by_ws:
                block_ind = True
            elif c == "#" and preceded_by_ws:
                block_ind = True
            if not _printable(c):
                special = True
            if c == " ":
                leading_space = leading_space or i == 0
                trailing_space = i == n - 1
                break_space = break_space or previous_break
                previous_space, previous_break = True, False
            elif c in _BREAKS:
                line_breaks = True
                leading_break = leading_break or i == 0
                trailing_break = i == n - 1
                space_break = space_break or previous_space
                previous_space, previous_break = False, True
            else:
                previous_space = previous_break = False
            preceded_by_ws = c in " \t\x00" or c in _BREAKS
        self.multiline = line_breaks
        self.block_plain = self.single = self.block = True
        if leading_space or leading_break or trailing_space or trailing_break or line_breaks or block_ind:
            self.block_plain = False
        if trailing_space:
            self.block = False
        if break_space:
            self.block_plain = self.single = False
        if space_break or special:
            self.block_plain = self.single = self.block = False


_DQ_ESC = {0x00: "0", 0x07: "a", 0x08: "b", 0x09: "t", 0x0A: "n", 0x0B: "v", 0x0C: "f",
           0x0D: "r", 0x1B: "e", 0x22: '"', 0x5C: "\\", 0x85: "N", 0xA0: "_",
           0x2028: "L", 0x2029: "P"}


def _go_kind(v: Any) -> int:
    """reflect.Kind order used when keys of different kinds meet."""
    for t, k in ((bool, 1), (int, 2), (float, 14), (str, 24)):
        if isinstance(v, t):
            return k
    return 20  # interface (nil)


def _key_less(a: Any, b: Any) -> bool:
    """yaml.v2 sorter.go keyList.Less: numbers by value; in strings, digit runs compare as numbers."""
    ak, bk = _go_kind(a), _go_kind(b)
    if ak < 20 and bk < 20:
        if float(a) != float(b):
            return float(a) < float(b)
        return ak < bk if ak != bk else a < b
    if ak != 24 or bk != 24:
        return ak < bk
    for i in range(min(len(a), len(b))):
        ca, cb = a[i], b[i]
        if ca == cb:
            continue
        al, bl = ca.isalpha(), cb.isalpha()  # unicode.IsLetter
        if al and bl:
            return ca < cb
        if al or bl:
            return bl
        an = bn = 0
        if ca == "0" or cb == "0":
            j = i - 1
            while j >= 0 and a[j].isdecimal():
                if a[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        ai = i
        while ai < len(a) and a[ai].isdecimal():
            an, ai = an * 10 + ord(a[ai]) - 48, ai + 1
        bi = i
        while bi < len(b) and b[bi].isdecimal():
            bn, bi = bn * 10 + ord(b[bi]) - 48, bi + 1
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return ca < cb
    return len(a) < len(b)


_YAML_KEY = functools.cmp_to_key(lambda a, b: -1 if _key_less(a, b) else 1 if _key_less(b, a) else 0)


class _Emitter:
    def __init__(self, width: int):
        self.out: list[str] = []
        self.width = width
        self.column = 0
        self.indent = -1
        self.indents: list[int] = []
        self.whitespace = True
        self.indention = True
        self.flow_level = 0
        self.mapping_ctx = self.simple_key_ctx = False

    # -- low level (put, write_indent, write_indicator) --------------------
    def put(self, s: str) -> None:
        self.out.append(s)
        self.column += len(s)

    def put_break(self) -> None:
        self.out.append("\n")
        self.column = 0

    def write_break(self, c: str) -> None:
        if c == "\n":
            self.put_break()
        else:
            self.out.append(c)
            self.column = 0

    def write_indent(self) -> None:
        indent = max(self.indent, 0)
        if not self.indention or self.column > indent or (self.column == indent and not self.whitespace):
            self.put_break()
        while self.column < indent:
            self.put(" ")
        self.whitespace = self.indention = True

    def write_indicator(self, ind: str, need_ws: bool, is_ws: bool, is_indention: bool) -> None:
        if need_ws and not self.whitespace:
            self.put(" ")
        self.put(ind)
        self.whitespace = is_ws
        self.indention = self.indention and is_indention

    def increase_indent(self, flow: bool, indentless: bool) -> None:
        self.indents.append(self.indent)
        if self.indent < 0:
            self.indent = 2 if flow else 0
        elif not indentless:
            self.indent += 2

    def pop_indent(self) -> None:
        self.indent = self.indents.pop()

    # -- nodes --------------------------------------------------------------
    def node(self, v: Any, mapping: bool = False, simple_key: bool = False) -> None:
        self.mapping_ctx, self.simple_key_ctx = mapping, simple_key
        if isinstance(v, dict):
            if not v:
                self.empty_flow("{", "}")
            else:
                self.block_mapping(v)
        elif isinstance(v, (list, tuple)):
            if not v:
                self.empty_flow("[", "]")
            else:
                self.block_sequence(v)
        else:
            self.scalar(*_scalar_event(v))

    def empty_flow(self, open_: str, close: str) -> None:
        self.write_indicator(open_, True, True, False)
        self.increase_indent(True, False)
        self.pop_indent()
        self.write_indicator(close, False, False, False)

    def block_sequence(self, items) -> None:
        self.increase_indent(False, self.mapping_ctx and not self.indention)
        for item in items:
            self.write_indent()
            self.write_indicator("-", True, False, True)
            self.node(item)
        self.pop_indent()

    def block_mapping(self, m: dict) -> None:
        self.increase_indent(False, False)
        for k in sorted(m, key=_YAML_KEY):
            self.write_indent()
            if isinstance(k, (dict, list, tuple)):
                raise TypeError("yaml: unsupported map key type")
            text, _ = _scalar_event(k)
            if not _Analysis(text).multiline and len(text.encode("utf-8")) <= 128:
                self.node(k, mapping=True, simple_key=True)
                self.write_indicator(":", False, False, False)
            else:
                self.write_indicator("?", True, False, True)
                self.node(k, mapping=True)
                self.write_indent()
                self.write_indicator(":", True, False, True)
            self.node(m[k], mapping=True)
        self.pop_indent()

    def scalar(self, text: str, style: str) -> None:
        a = _Analysis(text)
        if self.simple_key_ctx and a.multiline:
            style = DOUBLE
        if style == PLAIN:
            if not a.block_plain or (not text and self.simple_key_ctx):
                style = SINGLE
        if style == SINGLE and not a.single:
            style = DOUBLE
        if style == LITERAL and (not a.block or self.simple_key_ctx):
            style = DOUBLE
        self.increase_indent(True, False)
        allow_breaks = not self.simple_key_ctx
        if style == LITERAL:
            self.literal(text)
        else:
            {PLAIN: self.plain, SINGLE: self.single, DOUBLE: self.double}[style](text, allow_breaks)
        self.pop_indent()

    # -- scalar writers ------------------------------------------------------
    def _wrap(self, allow: bool, spaces: bool) -> bool:
        return allow and not spaces and self.column > self.width

    def plain(self, v: str, allow_breaks: bool) -> None:
        if not self.whitespace:
            self.put(" ")
        spaces = breaks = False
        for i, c in enumerate(v):
            if c == " ":
                if self._wrap(allow_breaks, spaces) and not (i + 1 < len(v) and v[i + 1] == " "):
                    self.write_indent()
                else:
                    self.put(c)
                spaces = True
            elif c in _BREAKS:
                if not breaks and c == "\n":
                    self.put_break()
                self.write_break(c)
                self.indention = breaks = True
            else:
                if breaks:
                    self.write_indent()
                self.put(c)
                self.indention = spaces = breaks = False
        self.whitespace = self.indention = False

    def single(self, v: str, allow_breaks: bool) -> None:
        self.write_indicator("'", True, False, False)
        spaces = breaks = False
        for i, c in enumerate(v):
            if c == " ":
                if self._wrap(allow_breaks, spaces) and 0 < i < len(v) - 1 and v[i + 1] != " ":
                    self.write_indent()
                else:
                    self.put(c)
                spaces = True
            elif c in _BREAKS:
                if not breaks and c == "\n":
                    self.put_break()
                self.write_break(c)
                self.indention = breaks = True
            else:
                if breaks:
                    self.write_indent()
                self.put("''" if c == "'" else c)
                self.indention = spaces = breaks = False
        self.write_indicator("'", False, False, False)
        self.whitespace = self.indention = False

    def double(self, v: str, allow_breaks: bool) -> None:
        self.write_indicator('"', True, False, False)
        bom = v.startswith("\ufeff")  # libyaml's is_bom() looks at the start of the value
        spaces = False
        for i, c in enumerate(v):
            o = ord(c)
            if not _printable(c) or bom or c in _BREAKS or c in '"\\':
                if o in _DQ_ESC:
                    self.put("\\" + _DQ_ESC[o])
                elif o <= 0xFF:
                    self.put("\\x%02X" % o)
                elif o <= 0xFFFF:
                    self.put("\\u%04X" % o)
                else:
                    self.put("\\U%08X" % o)
                spaces = False
            elif c == " ":
                if self._wrap(allow_breaks, spaces) and 0 < i < len(v) - 1:
                    self.write_indent()
                    if v[i + 1] == " ":
                        self.put("\\")
                else:
                    self.put(c)
                spaces = True
            else:
                self.put(c)
                spaces = False
        self.write_indicator('"', False, False, False)
        self.whitespace = self.indention = False

    def literal(self, v: str) -> None:
        self.write_indicator("|", True, False, False)
        if v[0] == " " or v[0] in _BREAKS:
            self.write_indicator("2", False, False, False)
        if not v or v[-1] not in _BREAKS:
            self.write_indicator("-", False, False, False)
        elif len(v) == 1 or v[-2] in _BREAKS:
            self.write_indicator("+", False, False, False)
        self.put_break()
        self.indention = self.whitespace = True
        breaks = True
        for c in v:
            if c in _BREAKS:
                self.write_break(c)
                self.indention = breaks = True
            else:
                if breaks:
                    self.write_indent()
                self.put(c)
                self.indention = breaks = False


def _scalar_event(v: Any) -> tuple[str, str]:
    """(text, requested style) as yaml.v2's encoder hands a scalar to the emitter."""
    if v is None:
        return "null", PLAIN
    if v is True or v is False:
        return ("true" if v else "false"), PLAIN
    if isinstance(v, int):
        return str(v), PLAIN
    if isinstance(v, float):
        s = go_format_float(v, "g")
        return {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}.get(s, s), PLAIN
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("yaml: cannot marshal invalid UTF-8 data") from None
        if "\n" in v:
            return v, LITERAL
        if resolves_to_str(v) and not _is_base60_float(v):
            return v, PLAIN
        return v, DOUBLE
    raise TypeError(f"yaml: cannot marshal type: {type(v).__name__}")


def go_yaml(value: Any, width: int = BEST_WIDTH) -> str:
    """yaml.Marshal(value) from gopkg.in/yaml.v2: block style, ends with a newline."""
    e = _Emitter(width)
    e.node(value)
    e.indent = -1
    e.write_indent()  # document end
    return "".join(e.out)


# ---------------------------------------------------------------------------
# juju/cmd formatters
# ---------------------------------------------------------------------------


def format_yaml(value: Any) -> str:
    """cmd.FormatYaml: nothing for nil, else Marshal with trailing newlines cut to one."""
    if value is None:
        return ""
    out = go_yaml(value)
    end = len(out)
    while end > 1 and out[end - 1] == "\n":
        end -= 1
    return out[:end] + "\n"


def format_output(value: Any, fmt: str, *, string_list: bool = True) -> str:
    """What the tool prints for value with --format fmt, trailing newline included.

    smart: a list of strings prints one per line when string_list is true (Go's
    []string); pass string_list=False for a Go []interface{} (it prints as YAML)."""
    check_format(fmt)
    if fmt == "json":
        return go_json(value) + "\n"
    if fmt == "yaml":
        return format_yaml(value)
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "True" if value else "False"
    elif string_list and isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value):
        text = "\n".join(value)
    else:
        return format_yaml(value)
    return text + "\n" if text else ""

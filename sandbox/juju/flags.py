# GNU-style argument parsing for hook tools and the juju CLI, as github.com/juju/gnuflag does it
# (with juju/cmd's FlagKnownAs "option"), plus Go's strconv.ParseBool/ParseInt and time.ParseDuration.
from __future__ import annotations

from typing import Any, Callable, Iterable

KNOWN_AS = "option"  # jujucmd.Info sets FlagKnownAs: "option" for every Juju command


class UsageError(Exception):
    """message is the text after 'ERROR ' (exit code 2)"""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class HelpRequested(Exception):
    """-h / --help given and not defined: Juju prints the help on stdout and exits 0."""


# ---------------------------------------------------------------------------
# Go quoting and number parsing
# ---------------------------------------------------------------------------

_SHORT_ESC = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(s: str) -> str:
    """strconv.Quote (what %q prints for a string)."""
    out = ['"']
    for c in s:
        o = ord(c)
        if c in '"\\':
            out.append("\\" + c)
        elif c.isprintable():  # same classes as Go's unicode.IsPrint: L M N P S and ' '
            out.append(c)
        elif c in _SHORT_ESC:
            out.append(_SHORT_ESC[c])
        elif o < 0x20 or o == 0x7F:
            out.append("\\x%02x" % o)
        elif 0xDC80 <= o <= 0xDCFF:  # a raw byte smuggled in by surrogateescape
            out.append("\\x%02x" % (o - 0xDC00))
        elif o < 0x10000:
            out.append("\\u%04x" % (0xFFFD if 0xD800 <= o <= 0xDFFF else o))
        else:
            out.append("\\U%08x" % o)
    out.append('"')
    return "".join(out)


def format_unrecognized(args: Iterable[str]) -> str:
    """cmd.CheckEmpty's text: fmt.Errorf("unrecognized args: %q", args)."""
    return "unrecognized args: [" + " ".join(go_quote(a) for a in args) + "]"


def check_empty(args: list[str]) -> None:
    if args:
        raise UsageError(format_unrecognized(args))


class _RangeError(ValueError):
    pass


def _num_error(func: str, s: str, err: str) -> ValueError:
    cls = _RangeError if err == "value out of range" else ValueError
    return cls(f"strconv.{func}: parsing {go_quote(s)}: {err}")


def parse_bool(s: str) -> bool:
    """strconv.ParseBool."""
    if s in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if s in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise _num_error("ParseBool", s, "invalid syntax")


def _underscore_ok(s: str) -> bool:
    saw, i = "^", 0
    if s[:1] in ("-", "+"):
        s = s[1:]
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "box":
        i, saw, hexa = 2, "0", s[1].lower() == "x"
    while i < len(s):
        c = s[i]
        if "0" <= c <= "9" or (hexa and "a" <= c.lower() <= "f"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
        i += 1
    return saw != "_"


def parse_uint(s: str, bits: int = 64, _func: str = "ParseUint") -> int:
    """strconv.ParseUint(s, 0, bits): 0x/0o/0b prefixes, leading 0 is octal."""
    s0 = s
    if s == "":
        raise _num_error(_func, s0, "invalid syntax")
    base, base0 = 10, False
    if s[0] == "0":
        base0 = True
        if len(s) >= 3 and s[1].lower() in "box":
            base = {"b": 2, "o": 8, "x": 16}[s[1].lower()]
            s = s[2:]
        else:
            base, s = 8, s[1:]
    max_val = (1 << bits) - 1
    n, underscores = 0, False
    for c in s:
        if c == "_" and base0:
            underscores = True
            continue
        if "0" <= c <= "9":
            d = ord(c) - 48
        elif "a" <= c.lower() <= "z":
            d = ord(c.lower()) - 87
        else:
            raise _num_error(_func, s0, "invalid syntax")
        if d >= base:
            raise _num_error(_func, s0, "invalid syntax")
        n = n * base + d
        if n > max_val:
            raise _num_error(_func, s0, "value out of range")
    if underscores and not _underscore_ok(s0):
        raise _num_error(_func, s0, "invalid syntax")
    return n


def parse_int(s: str, bits: int = 64) -> int:
    """strconv.ParseInt(s, 0, bits), with Go's error texts."""
    if s == "":
        raise _num_error("ParseInt", s, "invalid syntax")
    neg, body = s[0] == "-", s[1:] if s[0] in "+-" else s
    try:
        un = parse_uint(body, 64, "ParseInt")
    except _RangeError:
        un = 1 << 64
    except ValueError:
        raise _num_error("ParseInt", s, "invalid syntax") from None
    cutoff = 1 << (bits - 1)
    if (not neg and un >= cutoff) or (neg and un > cutoff):
        raise _num_error("ParseInt", s, "value out of range")
    return -un if neg else un


# ---------------------------------------------------------------------------
# time.ParseDuration
# ---------------------------------------------------------------------------

_UNITS = {"ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3, "ms": 10**6,
          "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def _time_quote(s: str) -> str:
    """The time package's own quote(): non-ASCII and controls as \\xNN bytes."""
    out = ['"']
    for c in s:
        if ord(c) >= 0x80 or c < " ":
            out.extend("\\x%02x" % b for b in c.encode("utf-8", "surrogateescape"))
        else:
            out.append("\\" + c if c in '"\\' else c)
    out.append('"')
    return "".join(out)


def parse_go_duration_ns(s: str) -> int:
    """time.ParseDuration, in nanoseconds."""
    orig = s
    bad = ValueError("time: invalid duration " + _time_quote(orig))
    neg = False
    if s and s[0] in "+-":
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if s == "":
        raise bad
    total = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise bad
        i = 0
        v = 0
        while i < len(s) and "0" <= s[i] <= "9":
            v = v * 10 + ord(s[i]) - 48
            if v > 1 << 63:
                raise bad
            i += 1
        pre, s = i > 0, s[i:]
        f, scale, post = 0, 1.0, False
        if s and s[0] == ".":
            s = s[1:]
            i, overflow = 0, False
            while i < len(s) and "0" <= s[i] <= "9":
                if not overflow:
                    if f > ((1 << 63) - 1) // 10:
                        overflow = True
                    else:
                        y = f * 10 + ord(s[i]) - 48
                        if y > 1 << 63:
                            overflow = True
                        else:
                            f, scale = y, scale * 10
                i += 1
            post, s = i > 0, s[i:]
        if not pre and not post:
            raise bad
        i = 0
        while i < len(s) and not (s[i] == "." or "0" <= s[i] <= "9"):
            i += 1
        if i == 0:
            raise ValueError("time: missing unit in duration " + _time_quote(orig))
        u, s = s[:i], s[i:]
        if u not in _UNITS:
            raise ValueError(f"time: unknown unit {_time_quote(u)} in duration {_time_quote(orig)}")
        unit = _UNITS[u]
        if v > (1 << 63) // unit:
            raise bad
        v *= unit
        if f > 0:
            v += int(float(f) * (float(unit) / scale))
            if v > 1 << 63:
                raise bad
        total += v
        if total > 1 << 63:
            raise bad
    if neg:
        return -total
    if total > (1 << 63) - 1:
        raise bad
    return total


def parse_go_duration(s: str) -> float:
    """time.ParseDuration as float seconds ("300ms" -> 0.3); ValueError with Go's text."""
    return parse_go_duration_ns(s) / 1e9


# ---------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------


def flag_with_minus(name: str) -> str:
    return ("--" if len(name.encode()) > 1 else "-") + name  # Go's len() counts bytes


def invalid_value(value: str, name: str, err: Any) -> str:
    """gnuflag's text for a value its Set rejected, e.g. for a custom -r check:
    invalid_value("one", "r", "invalid relation id")."""
    return f"invalid value {go_quote(value)} for {KNOWN_AS} {flag_with_minus(name)}: {err}"


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "bool": parse_bool,
    "int": parse_int,
    "duration": parse_go_duration,
}


class Flag:
    """names: short ("r") and long ("relation") names without dashes.
    kind: "str", "bool", "int", "duration" (float seconds), or a callable that
    converts the text and raises ValueError(message) to reject it (the message
    becomes the part after 'for option -x: ')."""

    def __init__(self, *names: str, kind: Any = "str", default: Any = None,
                 dest: str | None = None, multi: bool = False):
        if not names:
            raise ValueError("a flag needs a name")
        self.names = names
        self.kind = kind
        self.convert = kind if callable(kind) else _CONVERTERS[kind]
        self.is_bool = kind == "bool"
        if default is None and multi:
            default = []
        elif default is None and self.is_bool:
            default = False
        self.default = default
        self.dest = dest or max(names, key=len).replace("-", "_")
        self.multi = multi


def parse(args: list[str], flags: list[Flag], allow_interspersed: bool = True) -> tuple[dict, list[str]]:
    """Returns (options by dest, positional args). Raises UsageError or HelpRequested."""
    formal: dict[str, Flag] = {}
    opts: dict[str, Any] = {}
    for fl in flags:
        for n in fl.names:
            if n in formal:
                raise ValueError(f"{KNOWN_AS} redefined: {n}")
            formal[n] = fl
        opts[fl.dest] = list(fl.default) if fl.multi else fl.default

    positional: list[str] = []
    proc = list(args)
    pending = ""  # rest of a "-abc" bundle, or "=value" of a long flag

    while True:
        # parseOne
        long = False
        if pending:
            name, pending = pending[0], pending[1:]
        elif not proc:
            break
        else:
            a = proc[0]
            if a == "-" or a == "" or a[0] != "-":
                if allow_interspersed:
                    positional.append(a)
                    proc.pop(0)
                    continue
                positional.extend(proc)
                break
            if a == "--":
                positional.extend(proc[1:])
                break
            proc.pop(0)
            if a[1] == "-":
                long = True
                i = a.find("=")
                if i < 0:
                    name = a[2:]
                else:
                    name = a[2:i]
                    if name == "":
                        raise UsageError(f"empty {KNOWN_AS} in argument {go_quote(a)}")
                    pending = a[i:]
            else:
                name, pending = a[1], a[2:]

        # parseFlagArg
        fl = formal.get(name)
        if fl is None:
            if name in ("help", "h"):
                raise HelpRequested()
            raise UsageError(f"{KNOWN_AS} provided but not defined: {flag_with_minus(name)}")
        if fl.is_bool and not pending.startswith("="):
            value = True
        else:
            if pending:
                text = pending[1:] if long else pending  # "-a=x" keeps the "="
                pending = ""
            elif proc:
                text = proc.pop(0)
            else:
                raise UsageError(f"{KNOWN_AS} needs an argument: {flag_with_minus(name)}")
            try:
                value = fl.convert(text)
            except ValueError as e:
                raise UsageError(invalid_value(text, name, e)) from None
        if fl.multi:
            opts[fl.dest].append(value)
        else:
            opts[fl.dest] = value
    return opts, positional


def yaml_map(text, what):
    """The content of a --file/--params argument: a YAML (or JSON) map, {} when empty.
    ValueError says what is wrong (callers turn it into their own error)."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"cannot parse {what}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"expected YAML map in {what}")
    return data

# Unit tests for sandbox/juju/flags.py (gnuflag parsing) and sandbox/juju/fmt.py (juju/cmd formats).
# Expectations come from Go sources: juju/gnuflag flag.go, juju/cmd cmd.go + output.go, yaml.v2, encoding/json.
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sandbox"))
from juju import flags, fmt  # noqa: E402
from juju.flags import Flag, HelpRequested, UsageError  # noqa: E402


@pytest.fixture(scope="module")
def controller():
    """Pure unit tests: override conftest's autouse session fixture (no bootstrap)."""
    yield None


# ---------------------------------------------------------------------------
# flags: gnuflag semantics (github.com/juju/gnuflag flag.go: parseOne /
# parseFlagArg; messages use FlagKnownAs "option", as jujucmd.Info sets it)
# ---------------------------------------------------------------------------

TOOL_FLAGS = [
    Flag("r", "relation"),
    Flag("app", kind="bool"),
    Flag("format", default="smart"),
    Flag("o", "output"),
    Flag("n", "num-units", kind="int", default=1),
    Flag("config", multi=True),
    Flag("wait", kind="duration"),
    Flag("a", kind="bool"),
    Flag("b", kind="bool"),
]


def parse(*args, interspersed=True):
    return flags.parse(list(args), TOOL_FLAGS, allow_interspersed=interspersed)


def usage(*args, interspersed=True):
    with pytest.raises(UsageError) as e:
        parse(*args, interspersed=interspersed)
    return e.value.message


def test_defaults_and_dest():
    opts, pos = parse()
    assert pos == []
    assert opts == {"relation": None, "app": False, "format": "smart", "output": None,
                    "num_units": 1, "config": [], "wait": None, "a": False, "b": False}


def test_interleaved_flags_and_positionals():
    # allowIntersperse: a non-flag argument is appended and parsing goes on.
    opts, pos = parse("key", "-r", "db:3", "unit/0", "--app", "--format", "json")
    assert pos == ["key", "unit/0"]
    assert (opts["relation"], opts["app"], opts["format"]) == ("db:3", True, "json")


def test_not_interspersed_stops_at_first_positional():
    opts, pos = parse("-a", "foo", "-b", interspersed=False)
    assert opts["a"] and not opts["b"]
    assert pos == ["foo", "-b"]


def test_double_dash_ends_flags():
    # ops: `status-set --application=False active -- "msg"`; `-- -5` stays positional.
    opts, pos = parse("-a", "--", "-b", "--app", "-5")
    assert opts["a"] and not opts["b"] and not opts["app"]
    assert pos == ["-b", "--app", "-5"]


def test_single_dash_and_empty_string_are_positional():
    assert parse("-", "")[1] == ["-", ""]


def test_value_forms():
    assert parse("--relation=db:3")[0]["relation"] == "db:3"
    assert parse("--relation", "db:3")[0]["relation"] == "db:3"
    assert parse("-r", "db:3")[0]["relation"] == "db:3"
    assert parse("-rdb:3")[0]["relation"] == "db:3"
    # Only long flags strip the '=': "-r=3" gives the value "=3".
    assert parse("-r=3")[0]["relation"] == "=3"
    # The next argument is the value even if it looks like a flag.
    assert parse("--relation", "--app")[0] == dict(parse()[0], relation="--app")
    assert parse("--format=a=b")[0]["format"] == "a=b"
    assert parse("--relation=")[0]["relation"] == ""


def test_aliases_share_dest_and_last_wins():
    assert parse("-o", "x", "--output", "y")[0]["output"] == "y"


def test_single_dash_long_name_is_a_bundle_of_short_flags():
    # "-relation" is -r with the value "elation"; "-format" is an unknown -f.
    assert parse("-relation", "3") == (dict(parse()[0], relation="elation"), ["3"])
    assert usage("-format", "json") == "option provided but not defined: -f"


def test_bool_flags():
    assert parse("--app")[0]["app"] is True
    for v in ("1", "t", "T", "TRUE", "true", "True"):
        assert parse("--app=" + v)[0]["app"] is True
    for v in ("0", "f", "F", "FALSE", "false", "False"):
        assert parse("--app=" + v)[0]["app"] is False
    # A bool never takes the next argument.
    assert parse("--app", "false") == (dict(parse()[0], app=True), ["false"])
    # Bundled short bools.
    opts, _ = parse("-ab")
    assert opts["a"] and opts["b"]


def test_bool_invalid_values():
    assert usage("--app=yes") == \
        'invalid value "yes" for option --app: strconv.ParseBool: parsing "yes": invalid syntax'
    assert usage("--app=") == \
        'invalid value "" for option --app: strconv.ParseBool: parsing "": invalid syntax'
    # Short form keeps the '=' in the value.
    assert usage("-a=true") == \
        'invalid value "=true" for option -a: strconv.ParseBool: parsing "=true": invalid syntax'


def test_unknown_flag_messages():
    assert usage("--foo") == "option provided but not defined: --foo"
    assert usage("-x") == "option provided but not defined: -x"
    assert usage("---x") == "option provided but not defined: ---x"
    assert usage("-5") == "option provided but not defined: -5"
    assert usage("-é") == "option provided but not defined: --é"  # len(name) in bytes
    # Errors come in argument order.
    assert usage("key", "--foo", "--app=bad") == "option provided but not defined: --foo"


def test_missing_value_messages():
    assert usage("-r") == "option needs an argument: -r"
    assert usage("--relation") == "option needs an argument: --relation"
    assert usage("key", "--format") == "option needs an argument: --format"


def test_empty_long_flag_name():
    assert usage("--=x") == 'empty option in argument "--=x"'


def test_int_flags():
    # intValue.Set: strconv.ParseInt(s, 0, 64) - base prefixes, leading 0 is octal.
    assert parse("-n", "3")[0]["num_units"] == 3
    assert parse("-n", "0x10")[0]["num_units"] == 16
    assert parse("-n", "010")[0]["num_units"] == 8
    assert parse("-n", "-5")[0]["num_units"] == -5
    assert parse("--num-units=0b11")[0]["num_units"] == 3
    assert parse("-n", "0x_1F")[0]["num_units"] == 31
    assert usage("-n", "x") == \
        'invalid value "x" for option -n: strconv.ParseInt: parsing "x": invalid syntax'
    assert usage("--num-units", "1.5") == \
        'invalid value "1.5" for option --num-units: strconv.ParseInt: parsing "1.5": invalid syntax'
    # Underscores only with a base prefix.
    assert usage("-n", "1_000") == \
        'invalid value "1_000" for option -n: strconv.ParseInt: parsing "1_000": invalid syntax'
    assert usage("-n", "99999999999999999999") == (
        'invalid value "99999999999999999999" for option -n: '
        'strconv.ParseInt: parsing "99999999999999999999": value out of range')
    assert parse("-n", "9223372036854775807")[0]["num_units"] == 2**63 - 1
    assert parse("-n", "-9223372036854775808")[0]["num_units"] == -2**63
    assert "value out of range" in usage("-n", "9223372036854775808")


def test_multi_flags_collect():
    opts, _ = parse("--config", "a=1", "--config=b=2", "x")
    assert opts["config"] == ["a=1", "b=2"]


def test_duration_flag():
    assert parse("--wait", "1m30s")[0]["wait"] == 90.0
    assert usage("--wait", "60") == \
        'invalid value "60" for option --wait: time: missing unit in duration "60"'


def test_help():
    for arg in ("-h", "--help"):
        with pytest.raises(HelpRequested):
            parse("key", arg)
    # A defined help flag is an ordinary flag.
    opts, _ = flags.parse(["--help"], [Flag("help", kind="bool")])
    assert opts["help"] is True


def test_custom_kind_and_invalid_value_text():
    # relation-get's -r check (juju jujuc tests): `invalid value "one" for option -r: invalid relation id`.
    def rel(s):
        tail = s.rsplit(":", 1)[-1]
        if not tail.isdigit():
            raise ValueError("invalid relation id")
        return int(tail)

    opts, _ = flags.parse(["-r", "db:7"], [Flag("r", "relation", kind=rel)])
    assert opts["relation"] == 7
    with pytest.raises(UsageError) as e:
        flags.parse(["-r", "one"], [Flag("r", "relation", kind=rel)])
    assert e.value.message == 'invalid value "one" for option -r: invalid relation id'
    assert flags.invalid_value("2", "r", "relation not found") == \
        'invalid value "2" for option -r: relation not found'


def test_unrecognized_args_text():
    # cmd.CheckEmpty: fmt.Errorf("unrecognized args: %q", args); %q of []string.
    assert flags.format_unrecognized(["args"]) == 'unrecognized args: ["args"]'
    assert flags.format_unrecognized(["x", "y"]) == 'unrecognized args: ["x" "y"]'
    assert flags.format_unrecognized(['a"b', "c\\d", "t\tn\n", "\x01\x7f", "é", "\u00ad"]) == \
        'unrecognized args: ["a\\"b" "c\\\\d" "t\\tn\\n" "\\x01\\x7f" "é" "\\u00ad"]'
    with pytest.raises(UsageError) as e:
        flags.check_empty(["whoops"])
    assert e.value.message == 'unrecognized args: ["whoops"]'


def test_parse_bool():
    assert flags.parse_bool("T") is True and flags.parse_bool("False") is False
    with pytest.raises(ValueError) as e:
        flags.parse_bool("yes")
    assert str(e.value) == 'strconv.ParseBool: parsing "yes": invalid syntax'


# time.ParseDuration (Go src/time/format.go); values in seconds.
@pytest.mark.parametrize("text, seconds", [
    ("300ms", 0.3), ("-1.5h", -5400.0), ("2h45m", 9900.0), ("1h0m0s", 3600.0),
    ("1µs", 1e-6), ("1μs", 1e-6), ("1us", 1e-6), ("10ns", 1e-8), ("0", 0.0), ("-0", 0.0),
    ("+5s", 5.0), ("1.5s", 1.5), (".5s", 0.5), ("5.s", 5.0), ("1h1m1s1ms", 3661.001),
])
def test_parse_go_duration(text, seconds):
    assert flags.parse_go_duration(text) == pytest.approx(seconds)


def test_parse_go_duration_exact_ns():
    assert flags.parse_go_duration_ns("9223372036854775807ns") == 2**63 - 1
    assert flags.parse_go_duration_ns("-9223372036854775808ns") == -2**63
    assert flags.parse_go_duration_ns("0.1h") == 360_000_000_000


@pytest.mark.parametrize("text, message", [
    ("", 'time: invalid duration ""'),
    ("x", 'time: invalid duration "x"'),
    ("-", 'time: invalid duration "-"'),
    (".s", 'time: invalid duration ".s"'),
    ("1", 'time: missing unit in duration "1"'),
    ("1.5.5s", 'time: missing unit in duration "1.5.5s"'),
    ("3x", 'time: unknown unit "x" in duration "3x"'),
    ("1 h", 'time: unknown unit " h" in duration "1 h"'),
    ("1é", 'time: unknown unit "\\xc3\\xa9" in duration "1\\xc3\\xa9"'),
    ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
    ("3000000h", 'time: invalid duration "3000000h"'),
])
def test_parse_go_duration_errors(text, message):
    with pytest.raises(ValueError) as e:
        flags.parse_go_duration(text)
    assert str(e.value) == message


# ---------------------------------------------------------------------------
# fmt: JSON (encoding/json Marshal, HTML escaping on; cmd.FormatJson adds "\n")
# ---------------------------------------------------------------------------


def test_json_compact_sorted_keys():
    v = {"b": 1, "a": {"z": [1, 2], "y": None}, "A": True, "é": False, "10": 0, "9": 0}
    assert fmt.go_json(v) == '{"10":0,"9":0,"A":true,"a":{"y":null,"z":[1,2]},"b":1,"é":false}'
    assert fmt.go_json([]) == "[]" and fmt.go_json({}) == "{}" and fmt.go_json(None) == "null"
    assert fmt.go_json({1: "x"}) == '{"1":"x"}'


def test_json_string_escaping():
    assert fmt.go_json("<a href='x'>&</a>") == '"\\u003ca href=\'x\'\\u003e\\u0026\\u003c/a\\u003e"'
    assert fmt.go_json('q"b\\') == '"q\\"b\\\\"'
    assert fmt.go_json("\n\r\t") == '"\\n\\r\\t"'
    assert fmt.go_json("\b\f") == '"\\b\\f"'  # Go >= 1.22
    assert fmt.go_json("\x00\x01\x1f\x7f") == '"\\u0000\\u0001\\u001f\x7f"'
    assert fmt.go_json("\u2028\u2029") == '"\\u2028\\u2029"'
    assert fmt.go_json("héllo ✓ 😀 /") == '"héllo ✓ 😀 /"'
    assert fmt.go_json("\ud800") == '"\\ufffd"'


def test_json_numbers():
    cases = [(0, "0"), (-7, "-7"), (2**63 - 1, "9223372036854775807"),
             (0.0, "0"), (-0.0, "-0"), (1.0, "1"), (1.5, "1.5"), (0.1 + 0.2, "0.30000000000000004"),
             (1e20, "100000000000000000000"), (1e21, "1e+21"), (1.5e300, "1.5e+300"),
             (1e-6, "0.000001"), (1e-7, "1e-7"), (1.25e-10, "1.25e-10"), (5e-324, "5e-324"),
             (123456789.0, "123456789")]
    for v, want in cases:
        assert fmt.go_json(v) == want, v
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError):
            fmt.go_json(bad)


# ---------------------------------------------------------------------------
# fmt: YAML (gopkg.in/yaml.v2 Marshal). Vectors from yaml.v2's encode_test.go
# marshalTests, plus the libyaml emitter rules of emitterc.go.
# ---------------------------------------------------------------------------

YAML_V2_MARSHAL_TESTS = [
    (None, "null\n"),
    ({}, "{}\n"),
    ({"v": "hi"}, "v: hi\n"),
    ({"v": "true"}, 'v: "true"\n'),
    ({"v": "false"}, 'v: "false"\n'),
    ({"v": True}, "v: true\n"),
    ({"v": False}, "v: false\n"),
    ({"v": 10}, "v: 10\n"),
    ({"v": -10}, "v: -10\n"),
    ({"v": 4294967296}, "v: 4294967296\n"),
    ({"v": "10"}, 'v: "10"\n'),
    ({"v": 0.1}, "v: 0.1\n"),
    ({"v": -0.1}, "v: -0.1\n"),
    ({"v": math.inf}, "v: .inf\n"),
    ({"v": -math.inf}, "v: -.inf\n"),
    ({"v": math.nan}, "v: .nan\n"),
    ({"v": None}, "v: null\n"),
    ({"v": ""}, 'v: ""\n'),
    ({"v": ["A", "B"]}, "v:\n- A\n- B\n"),
    ({"v": ["A", "B\nC"]}, "v:\n- A\n- |-\n  B\n  C\n"),
    ({"v": ["A", 1, {"B": [2, 3]}]}, "v:\n- A\n- 1\n- B:\n  - 2\n  - 3\n"),
    ({"a": {"b": "c"}}, "a:\n  b: c\n"),
    ({"a": "-"}, "a: '-'\n"),
    (123, "123\n"),
    ({"a": [1, 2]}, "a:\n- 1\n- 2\n"),
    ({"a": 1.0}, "a: 1\n"),
    ({"a": "<foo>"}, "a: <foo>\n"),
    ({"a": "1:1"}, 'a: "1:1"\n'),
    ({"a": "\x00"}, 'a: "\\0"\n'),
    ({"a": "你好"}, "a: 你好\n"),
    ({"a": "2015-02-24T18:19:39Z"}, 'a: "2015-02-24T18:19:39Z"\n'),
    ({"a": "b: c"}, "a: 'b: c'\n"),
    ({"a": "Hello #comment"}, "a: 'Hello #comment'\n"),
    ({"a": "你好 #comment"}, "a: '你好 #comment'\n"),
    # v2.4.0 "Ensure that strings wrap" (best_width 80, no FutureLineWrap).
    ({"a": "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 1234567890 "
           "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 1234567890 "},
     "a: 'abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 1234567890 abcdefghijklmnopqrstuvwxyz\n"
     "  ABCDEFGHIJKLMNOPQRSTUVWXYZ 1234567890 '\n"),
]


@pytest.mark.parametrize("value, want", YAML_V2_MARSHAL_TESTS)
def test_yaml_v2_marshal_vectors(value, want):
    assert fmt.go_yaml(value) == want


def test_yaml_sorted_keys_natural_order():
    # yaml.v2 TestSortedOutput (string keys): digit runs compare as numbers.
    order = ["", ".1", ".2", ".a", "1", "2", "a!10", "a/0001", "a/002", "a/3", "a/10", "a/11",
             "a/0012", "a/100", "a~10", "ab/1", "b/1", "b/01", "b/2", "b/02", "b/3", "b/03",
             "b1", "b01", "b3", "c2.10", "c10.2", "d1", "d7", "d7abc", "d12", "d12a"]
    out = fmt.go_yaml({k: 1 for k in reversed(order)})
    keys = [line.rsplit(":", 1)[0] for line in out.splitlines()]
    assert [k.strip('"') for k in keys] == order
    assert keys[:6] == ['""', '".1"', '".2"', ".a", '"1"', '"2"']
    # Relation ids: db:3 before db:10 in YAML (JSON sorts bytewise: db:10 first).
    assert fmt.go_yaml({"db:10": 1, "db:3": 2}) == "db:3: 2\ndb:10: 1\n"
    assert fmt.go_json({"db:10": 1, "db:3": 2}) == '{"db:10":1,"db:3":2}'


def test_yaml_nested_structures():
    v = {"units": {"pg/0": {"status": "active", "ports": ["5432/tcp"], "data": {}}},
         "list": [{"a": 1, "b": [1, [2, 3]]}, [], "x"]}
    assert fmt.go_yaml(v) == (
        "list:\n"
        "- a: 1\n"
        "  b:\n"
        "  - 1\n"
        "  - - 2\n"
        "    - 3\n"
        "- []\n"
        "- x\n"
        "units:\n"
        "  pg/0:\n"
        "    data: {}\n"
        "    ports:\n"
        "    - 5432/tcp\n"
        "    status: active\n")
    assert fmt.go_yaml([]) == "[]\n"
    assert fmt.go_yaml([["a"], {"k": "v"}]) == "- - a\n- k: v\n"


@pytest.mark.parametrize("s, want", [
    # resolve.go: bools (yes/no/on/off/y/n too), nulls, numbers, timestamps -> double quotes.
    ("yes", '"yes"'), ("No", '"No"'), ("on", '"on"'), ("OFF", '"OFF"'), ("y", '"y"'), ("n", '"n"'),
    ("True", '"True"'), ("~", '"~"'), ("null", '"null"'), ("Null", '"Null"'),
    ("1", '"1"'), ("-1", '"-1"'), ("+1", '"+1"'), ("1.5", '"1.5"'), ("1e3", '"1e3"'), (".5", '".5"'),
    ("0x1F", '"0x1F"'), ("0o17", '"0o17"'), ("0b101", '"0b101"'), ("1_000", '"1_000"'), ("09", '"09"'),
    (".inf", '".inf"'), ("-.Inf", '"-.Inf"'), (".NaN", '".NaN"'),
    ("2025-06-09", '"2025-06-09"'), ("2025-6-9", '"2025-6-9"'), ("2024-02-29 10:00:00", '"2024-02-29 10:00:00"'),
    ("2015-02-24t18:19:39.5+01:00", '"2015-02-24t18:19:39.5+01:00"'),
    ("10:00:00", '"10:00:00"'), ("1:20", '"1:20"'),
    # ... but not these (still !!str for yaml.v2): plain.
    ("2025-13-01", "2025-13-01"), ("2025-02-30", "2025-02-30"), ("2024-02-29T10:00:00", "2024-02-29T10:00:00"),
    ("2025-06-09 11:14:50Z", "2025-06-09 11:14:50Z"), ("1.2.3", "1.2.3"), ("1e400", "1e400"),
    ("nan", "nan"), ("inf", "inf"), ("<<", "<<"), (".", "."), ("--", "--"), ("-x", "-x"), (":x", ":x"),
    ("a:b", "a:b"), ("x]", "x]"), ("a#b", "a#b"), ("a'b", "a'b"), ("10.0.0.5/32", "10.0.0.5/32"),
    ("secret:9m4e2mr0ui3e8a215n4g", "secret:9m4e2mr0ui3e8a215n4g"), ("a b", "a b"),
    # emitterc.go analyze_scalar: indicators, leading/trailing space -> single quotes.
    ("-", "'-'"), ("- x", "'- x'"), ("---", "'---'"), ("...", "'...'"), ("?", "'?'"), ("? x", "'? x'"),
    ("a:", "'a:'"), ("a: b", "'a: b'"), ("#x", "'#x'"), ("a #b", "'a #b'"), ("[x]", "'[x]'"),
    ("{x}", "'{x}'"), ("@x", "'@x'"), ("`x", "'`x'"), ("%x", "'%x'"), ("!x", "'!x'"), ("&x", "'&x'"),
    ("*x", "'*x'"), ("|", "'|'"), (">", "'>'"), (",x", "',x'"), ("'q'", "'''q'''"), ('"q"', "'\"q\"'"),
    (" lead", "' lead'"), ("trail ", "'trail '"),
    # Not printable for libyaml (tabs, controls, astral code points) -> double quotes with escapes.
    ("a\tb", '"a\\tb"'), ("\x1b[0m", '"\\e[0m"'), ("x\x7f", '"x\\x7F"'), ("😀", '"\\U0001F600"'),
    ("\u0085", '"\\N"'), ("a\rb", '"a\\rb"'), ("\ufeffx", '"\\uFEFF\\x78"'),
])
def test_yaml_scalar_quoting(s, want):
    assert fmt.go_yaml(s) == want + "\n"
    assert fmt.go_yaml({"k": s}) == "k: " + want + "\n"


def test_yaml_keys_are_quoted_like_values():
    assert fmt.go_yaml({"y": 1, "true": 2, "": 3, "a b": 4}) == '"": 3\na b: 4\n"true": 2\n"y": 1\n'


def test_yaml_multiline_strings():
    assert fmt.go_yaml("a\nb") == "|-\n  a\n  b\n"
    assert fmt.go_yaml({"k": "a\nb\n"}) == "k: |\n  a\n  b\n"
    assert fmt.go_yaml({"k": "a\n\nb\n\n"}) == "k: |+\n  a\n\n  b\n\n"
    assert fmt.go_yaml({"k": "  indented\nx"}) == "k: |2-\n    indented\n  x\n"
    assert fmt.go_yaml([{"k": "a\nb"}]) == "- k: |-\n    a\n    b\n"
    # Trailing space, space before a break, or a control char: no block scalar.
    assert fmt.go_yaml({"k": "a \nb"}) == 'k: "a \\nb"\n'
    assert fmt.go_yaml({"k": "a\nb "}) == 'k: "a\\nb "\n'
    assert fmt.go_yaml({"k": "a\r\nb"}) == 'k: "a\\r\\nb"\n'
    # A multi-line key is not a simple key: "? |-" form.
    assert fmt.go_yaml({"a\nb": 1}) == "? |-\n  a\n  b\n: 1\n"


def test_yaml_long_plain_and_double_quoted_wrap():
    words = " ".join(["word%02d" % i for i in range(20)])
    assert fmt.go_yaml({"k": words}) == (
        "k: word00 word01 word02 word03 word04 word05 word06 word07 word08 word09 word10 word11\n"
        "  word12 word13 word14 word15 word16 word17 word18 word19\n")
    assert fmt.go_yaml({"k": "x" * 100}) == "k: " + "x" * 100 + "\n"  # no space, no wrap
    # Double-quoted: breaks only at a space once past column 80 (escapes count as 2 columns).
    tabbed = "\t".join(["w"] * 30) + " end end"
    assert fmt.go_yaml({"k": tabbed}) == 'k: "' + "\\t".join(["w"] * 30) + '\n  end end"\n'
    assert fmt.go_yaml({"k": words}, width=1 << 31) == "k: " + words + "\n"  # FutureLineWrap()


def test_yaml_floats_like_go():
    # encode.go floatv: strconv.FormatFloat(f, 'g', -1, 64).
    cases = [(1.5, "1.5"), (3.0, "3"), (1e6, "1e+06"), (123456.0, "123456"), (1e21, "1e+21"),
             (0.0001, "0.0001"), (0.00001, "1e-05"), (-0.0, "-0"), (123456789.0, "1.23456789e+08")]
    for v, want in cases:
        assert fmt.go_yaml(v) == want + "\n", v


# ---------------------------------------------------------------------------
# fmt: juju/cmd output.go (FormatSmart / FormatYaml / FormatJson)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("value, smart, yaml_, json_", [
    ("x", "x\n", "x\n", '"x"\n'),
    ("", "", '""\n', '""\n'),
    (None, "", "", "null\n"),
    (True, "True\n", "true\n", "true\n"),
    (False, "False\n", "false\n", "false\n"),
    (["db:3", "db:10"], "db:3\ndb:10\n", "- db:3\n- db:10\n", '["db:3","db:10"]\n'),
    ([], "", "[]\n", "[]\n"),
    ([""], "", '- ""\n', '[""]\n'),
    (5, "5\n", "5\n", "5\n"),
    (1e6, "1e+06\n", "1e+06\n", "1000000\n"),
    ({"a": "b"}, "a: b\n", "a: b\n", '{"a":"b"}\n'),
    ({}, "{}\n", "{}\n", "{}\n"),
    ("a\nb", "a\nb\n", "|-\n  a\n  b\n", '"a\\nb"\n'),
])
def test_format_output(value, smart, yaml_, json_):
    assert fmt.format_output(value, "smart") == smart
    assert fmt.format_output(value, "yaml") == yaml_
    assert fmt.format_output(value, "json") == json_


def test_format_output_smart_interface_list_and_yaml_trim():
    # A Go []interface{} of strings is not []string: smart falls back to YAML.
    assert fmt.format_output(["a", "b"], "smart", string_list=False) == "- a\n- b\n"
    # FormatYaml cuts trailing newlines to one.
    assert fmt.go_yaml({"k": "a\n\n"}) == "k: |+\n  a\n\n"
    assert fmt.format_output({"k": "a\n\n"}, "yaml") == "k: |+\n  a\n"


def test_format_error():
    assert fmt.FORMATS == ("smart", "yaml", "json")
    with pytest.raises(fmt.FormatError) as e:
        fmt.format_output({}, "xml")
    assert str(e.value) == 'invalid value "xml" for option --format: unknown format "xml"'

# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""A strict reader of Prometheus' text exposition format (0.0.4), for the tests.

:func:`parse` raises AssertionError at the first line that the format does
not allow, and returns ``{family: {"type": ..., "samples": [(name, labels,
value)]}}``.
"""

import math
import re

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("", "_total")}


def _labels(text, line):
    labels, position = {}, 0
    while position < len(text):
        match = _LABEL.match(text, position)
        assert match, f"bad labels in {line!r}"
        key, value = match[1], match[2]
        assert key not in labels, f"label {key} twice in {line!r}"
        labels[key] = re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)
        position = match.end()
    return labels


def _family_of(name, families):
    for family, info in families.items():
        if name == family or any(name == family + s for s in _SUFFIXES.get(info["type"], ())):
            return family
    raise AssertionError(f"sample {name} before its # TYPE")


def parse(text):
    assert text.endswith("\n"), "the exposition ends with a line feed"
    families = {}
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            assert re.match(rf"^# HELP {_NAME} \S", line), f"bad HELP {line!r}"
        elif line.startswith("# TYPE "):
            _hash, _type, name, kind = line.split(" ")
            assert re.fullmatch(_NAME, name) and kind in _TYPES, f"bad TYPE {line!r}"
            assert name not in families, f"{name} typed twice"
            families[name] = {"type": kind, "samples": []}
        else:
            match = _SAMPLE.match(line)
            assert match, f"bad sample line {line!r}"
            name, labels, value = match[1], _labels(match[2] or "", line), float(match[3])
            assert not math.isnan(value), line
            families[_family_of(name, families)]["samples"].append((name, labels, value))
    return families

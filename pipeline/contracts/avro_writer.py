"""Avro binary encoding of the tower's output records, compiled once per schema to a plain
Python function.

Why: encoding is on every decision's path, and fastavro's writer resolves every
`["null", T]` union by trying each branch; an audit record has six of them plus a trace of
records. The compiled writer knows each field's type up front, so it skips that search. It
covers the types the output schemas use (record, string, bytes, int, long,
double, boolean, array, map and `["null", T]` unions); `tests/unit/contracts/test_avro_writer.py`
checks it byte for byte against fastavro on generated records.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

Writer = Callable[[Mapping[str, Any]], bytes]

_ONE_BYTE = [bytes([n]) for n in range(128)]
_DOUBLE = struct.Struct("<d")


def _long(n: int) -> bytes:
    """Zig-zag varint, the encoding of Avro int and long."""
    n = (n << 1) ^ (n >> 63)
    if n < 128:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _bytes(b: bytes) -> bytes:
    n = len(b)
    return (_ONE_BYTE[n << 1] if n < 64 else _long(n)) + b


def _string(s: str) -> bytes:
    b = s.encode()
    n = len(b)
    return (_ONE_BYTE[n << 1] if n < 64 else _long(n)) + b


def _opt_string(s: str | None) -> bytes:
    """`["null", "string"]`."""
    return b"\x00" if s is None else b"\x02" + _bytes(s.encode())


#: For writers specialised by hand on an output's own objects (processing/records.py):
#: int and long, bytes, string and `["null", "string"]`, as the compiled writers encode them.
#: the encodings of 0..127 as varints (of the longs 0..63 and -1..-64 once zig-zagged)
ONE_BYTE = _ONE_BYTE
avro_long = _long
avro_bytes = _bytes
avro_string = _string
avro_opt_string = _opt_string


def _double(x: float) -> bytes:
    return _DOUBLE.pack(x)


def _boolean(x: bool) -> bytes:
    return b"\x01" if x else b"\x00"


_PRIMITIVES = {
    "string": "_string",
    "bytes": "_bytes",
    "int": "_long",
    "long": "_long",
    "double": "_double",
    "boolean": "_boolean",
}


class _Compiler:
    def __init__(self) -> None:
        self.env: dict[str, Any] = {
            "_ONE_BYTE": _ONE_BYTE,
            "_long": _long,
            "_bytes": _bytes,
            "_string": _string,
            "_double": _double,
            "_boolean": _boolean,
        }
        self.source: list[str] = []
        self._names = 0

    def record(self, schema: Mapping[str, Any]) -> str:
        """Define `def _w<n>(r, out)` appending the record's encoding; return its name."""
        self._names += 1
        name = f"_w{self._names}"
        body: list[str] = []
        for i, field in enumerate(schema["fields"]):
            var = f"v{i}"
            key = repr(field["name"])
            if "default" in field:
                body.append(f"{var} = r.get({key}, {field['default']!r})")
            else:
                body.append(f"{var} = r[{key}]")
            body += self.value(field["type"], var, depth=1)
        self.source.append(f"def {name}(r, out):\n" + "".join(f"    {b}\n" for b in body))
        return name

    def value(self, schema: Any, var: str, depth: int) -> list[str]:
        """Statements appending the encoding of `var` (of type `schema`) to `out`."""
        if isinstance(schema, str):
            if schema in ("string", "bytes"):  # inlined: most of a record's fields
                b = f"b{depth}"
                encode = ".encode()" if schema == "string" else ""
                return [
                    f"{b} = {var}{encode}",
                    f"n = len({b})",
                    "out.append(_ONE_BYTE[n << 1] if n < 64 else _long(n))",
                    f"out.append({b})",
                ]
            if schema in _PRIMITIVES:
                return [f"out.append({_PRIMITIVES[schema]}({var}))"]
            raise NotImplementedError(f"Avro type {schema!r}")
        if isinstance(schema, list):
            branches = [b for b in schema if b != "null"]
            if len(schema) != 2 or schema[0] != "null" or len(branches) != 1:
                raise NotImplementedError(f"union {schema!r} (only ['null', T])")
            inner = self.value(branches[0], var, depth)
            return [
                f"if {var} is None:",
                "    out.append(b'\\x00')",
                "else:",
                "    out.append(b'\\x02')",
                *(f"    {s}" for s in inner),
            ]
        kind = schema.get("type")
        if kind == "record":
            return [f"{self.record(schema)}({var}, out)"]
        if kind in ("array", "map"):
            item = f"i{depth}"
            if kind == "array":
                loop = f"for {item} in {var}:"
                inner = self.value(schema["items"], item, depth + 1)
            else:
                loop = f"for k{depth}, {item} in {var}.items():"
                inner = [f"out.append(_string(k{depth}))"]
                inner += self.value(schema["values"], item, depth + 1)
            return [
                f"if {var}:",
                f"    out.append(_long(len({var})))",
                f"    {loop}",
                *(f"        {s}" for s in inner),
                "out.append(b'\\x00')",
            ]
        if kind in _PRIMITIVES:
            return self.value(kind, var, depth)
        raise NotImplementedError(f"Avro type {kind!r}")


def compile_writer(schema: Mapping[str, Any]) -> Writer:
    """A function encoding a dict shaped like the record `schema` (Avro binary, no header).

    Raises NotImplementedError for schemas using types outside the supported set.
    """
    compiler = _Compiler()
    top = compiler.record(schema)
    code = "\n".join(compiler.source)
    code += f"\ndef write(r):\n    out = []\n    {top}(r, out)\n    return b''.join(out)\n"
    exec(compile(code, f"<avro writer {schema.get('name')}>", "exec"), compiler.env)
    write: Writer = compiler.env["write"]  # defined by the source just executed
    return write

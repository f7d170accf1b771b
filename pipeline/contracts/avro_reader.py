"""Avro binary decoding of one known record schema, compiled once to a plain Python function:
the reading counterpart of `avro_writer.py`.

Why: fastavro's `schemaless_reader` spends most of its time per call setting up (a file
object, the schema walk, union resolution by name), not decoding; an agent event is a dozen
short fields. The compiled reader knows every field's type and position up front.

It reads only what the writer schema is exactly (no schema resolution) and only the regular
encoding: anything else (truncation, a bad union index, an overlong varint, invalid UTF-8,
a negative block count, a boolean byte other than 0 or 1) raises `Irregular`, and the
caller decodes the value again with fastavro, whose result or error then stands. So a
value decodes to what fastavro returns, and a bad one is refused exactly as fastavro
refuses it; `tests/unit/contracts/test_avro_reader.py` checks both against fastavro.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

#: `read(value, pos)`: the record starting at `pos` of `value` (bytes) and where it ends
Reader = Callable[[bytes, int], tuple[dict[str, Any], int]]


class Irregular(Exception):
    """Not the regular encoding of the schema: decode with fastavro instead."""


def _varint(buf: bytes, pos: int, b: int) -> tuple[int, int]:
    """The zig-zag long whose first byte `b` (>= 0x80) was just read; the rest from `pos`."""
    u = b & 0x7F
    shift = 7
    while True:
        b = buf[pos]
        pos += 1
        u |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise Irregular("varint longer than 10 bytes")
    if u >> 64:
        raise Irregular("varint beyond 64 bits")
    return (u >> 1) ^ -(u & 1), pos


_FLOAT = struct.Struct("<f").unpack_from
_DOUBLE = struct.Struct("<d").unpack_from


class _Compiler:
    def __init__(self) -> None:
        self.env: dict[str, Any] = {
            "_varint": _varint,
            "Irregular": Irregular,
            "_FLOAT": _FLOAT,
            "_DOUBLE": _DOUBLE,
        }
        self._names = 0

    def name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}{self._names}"

    def long(self, target: str) -> list[str]:
        """Statements reading a zig-zag varint into `target`."""
        return [
            "b = buf[pos]",
            "pos += 1",
            "if b < 0x80:",
            f"    {target} = (b >> 1) ^ -(b & 1)",
            "else:",
            f"    {target}, pos = _varint(buf, pos, b)",
        ]

    def sized(self, target: str, decode: bool) -> list[str]:
        """Statements reading a length-prefixed string or bytes into `target`."""
        n = self.name("n")
        end = self.name("e")
        value = f"buf[pos:{end}]" + (".decode()" if decode else "")
        return [
            *self.long(n),
            f"{end} = pos + {n}",
            f"if {n} < 0 or {end} > size:",
            "    raise Irregular('length out of bounds')",
            f"{target} = {value}",
            f"pos = {end}",
        ]

    def value(self, schema: Any, target: str) -> list[str]:
        """Statements reading a value of type `schema` into `target`, advancing `pos`."""
        if isinstance(schema, str):
            if schema == "null":
                return [f"{target} = None"]
            if schema == "boolean":
                return [
                    "b = buf[pos]",
                    "pos += 1",
                    "if b > 1:",
                    "    raise Irregular('boolean byte')",
                    f"{target} = b == 1",
                ]
            if schema in ("int", "long"):
                return self.long(target)
            if schema in ("float", "double"):
                width = 4 if schema == "float" else 8
                unpack = "_FLOAT" if schema == "float" else "_DOUBLE"
                return [f"{target} = {unpack}(buf, pos)[0]", f"pos += {width}"]
            if schema in ("string", "bytes"):
                return self.sized(target, decode=schema == "string")
            raise NotImplementedError(f"Avro type {schema!r}")
        if isinstance(schema, list):
            index = self.name("u")
            out = self.long(index)
            for i, branch in enumerate(schema):
                out.append(f"{'if' if i == 0 else 'elif'} {index} == {i}:")
                out += [f"    {s}" for s in self.value(branch, target)]
            out += ["else:", "    raise Irregular('union index')"]
            return out
        kind = schema.get("type")
        if kind == "record":
            out = []
            names = []
            for field in schema["fields"]:
                var = self.name("f")
                names.append((field["name"], var))
                out += self.value(field["type"], var)
            built = ", ".join(f"{name!r}: {var}" for name, var in names)
            return [*out, f"{target} = {{{built}}}"]
        if kind in ("map", "array"):
            count = self.name("c")
            item = self.name("i")
            if kind == "map":
                key = self.name("k")
                reads = [*self.sized(key, decode=True), *self.value(schema["values"], item)]
                reads.append(f"{target}[{key}] = {item}")
                start = f"{target} = {{}}"
            else:
                reads = [*self.value(schema["items"], item), f"{target}.append({item})"]
                start = f"{target} = []"
            return [
                start,
                "while True:",
                *(f"    {s}" for s in self.long(count)),
                f"    if {count} == 0:",
                "        break",
                f"    if {count} < 0:",  # blocks with a byte size: rare, fastavro's job
                "        raise Irregular('block with a byte size')",
                f"    for _ in range({count}):",
                *(f"        {s}" for s in reads),
            ]
        if kind in ("null", "boolean", "int", "long", "float", "double", "string", "bytes"):
            return self.value(kind, target)
        raise NotImplementedError(f"Avro type {kind!r}")


def compile_reader(schema: Mapping[str, Any]) -> Reader:
    """A function decoding the Avro binary of the record `schema` into fastavro's dict shape.

    Raises NotImplementedError for schemas using types outside the supported set: enum,
    fixed, named type references and logical types are left to fastavro.
    """
    if "logicalType" in _walk(schema):
        raise NotImplementedError("logical types")
    compiler = _Compiler()
    body = compiler.value(dict(schema), "record")
    code = "def read(buf, pos):\n    size = len(buf)\n"
    code += "".join(f"    {s}\n" for s in body) + "    return record, pos\n"
    exec(compile(code, f"<avro reader {schema.get('name')}>", "exec"), compiler.env)
    read: Reader = compiler.env["read"]  # defined by the source just executed
    return read


def _walk(schema: Any) -> list[Any]:
    """Every dict key and string in `schema`."""
    if isinstance(schema, dict):
        return [k for k in schema] + [x for v in schema.values() for x in _walk(v)]
    if isinstance(schema, list):
        return [x for v in schema for x in _walk(v)]
    return [schema]

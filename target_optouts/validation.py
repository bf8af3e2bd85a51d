"""Record validation with fastjsonschema (singer-sdk `Sink.get_validator` docstring): the same
checks as the SDK's validator at a tenth of the cost. Formats are not checked (as in the SDK
by default) and defaults are not filled in.

A first, cheaper check: for a flat schema that says no more than property types, `required`
and `additionalProperties` (what taps send, these ones included), a msgspec Struct built from
it accepts a record in one C pass. It accepts nothing the schema refuses (its types are as
strict or stricter), so a record it accepts is valid; any other record goes to fastjsonschema,
which decides, and words the reason.
"""

from __future__ import annotations

from typing import Any, Union

import fastjsonschema
import msgspec
from singer_sdk.exceptions import InvalidJSONSchema, InvalidRecord
from singer_sdk.sinks.core import BaseJSONSchemaValidator

# JSON schema types msgspec checks at least as strictly ("number" is left to fastjsonschema:
# its Decimal values are not msgspec's floats).
TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "boolean": bool,
    "null": None,
    "object": dict,
    "array": list,
}
# Keywords that change nothing the check does (annotations, and formats: not checked).
INERT = frozenset({"type", "description", "title", "format", "default", "examples", "$comment"})


class FastJSONSchemaValidator(BaseJSONSchemaValidator):
    def __init__(self, schema: dict[str, Any]) -> None:
        super().__init__(schema)
        try:
            self.validator = fastjsonschema.compile(schema, use_default=False, use_formats=False)
        except fastjsonschema.JsonSchemaDefinitionException as exc:
            raise InvalidJSONSchema(f"Schema Validation Error: {exc}") from exc
        self.struct = struct_for(schema)
        self._many = list[self.struct] if self.struct is not None else None  # type: ignore[name-defined]

    def all_valid(self, records: list[Any]) -> bool:
        """True when every record is valid (checked in one call); False: check one by one."""
        if self._many is None:
            return False
        try:
            msgspec.convert(records, self._many)
        except msgspec.ValidationError:
            return False
        return True

    def validate(self, record: dict[str, Any]) -> None:
        if self.struct is not None:
            try:
                msgspec.convert(record, self.struct)
                return
            except msgspec.ValidationError:
                pass  # fastjsonschema decides
        try:
            self.validator(record)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise InvalidRecord(exc.message, record) from exc


def struct_for(schema: dict[str, Any]) -> type[msgspec.Struct] | None:
    """A Struct accepting only records `schema` accepts; None when the schema says more than
    this check understands."""
    kinds = schema.get("type", "object")
    if kinds not in ("object", ["object"]) or set(schema) - {
        *INERT,
        "properties",
        "required",
        "additionalProperties",
    }:
        return None
    extra = schema.get("additionalProperties", True)
    properties = schema.get("properties") or {}
    required = schema.get("required") or []
    if not isinstance(extra, bool) or not isinstance(properties, dict):
        return None
    fields: list[tuple[str, Any, Any]] = []
    for index, name in enumerate(dict.fromkeys([*properties, *required])):
        kind = _type_of(properties.get(name, {}))
        if kind is _UNKNOWN:
            return None
        default = msgspec.NODEFAULT if name in required else msgspec.UNSET
        fields.append((f"f{index}", kind, msgspec.field(name=name, default=default)))
    # Fields without a default first (msgspec's rule); the order checks nothing.
    fields.sort(key=lambda field: field[2].default is not msgspec.NODEFAULT)
    return msgspec.defstruct("Record", fields, forbid_unknown_fields=not extra)


_UNKNOWN = object()


def _type_of(prop: Any) -> Any:
    if not isinstance(prop, dict) or set(prop) - INERT:
        return _UNKNOWN
    kinds = prop.get("type")
    if kinds is None:
        return Any
    names = [kinds] if isinstance(kinds, str) else kinds
    if not isinstance(names, list) or not names or any(n not in TYPES for n in names):
        return _UNKNOWN
    types = tuple(dict.fromkeys(TYPES[n] for n in names))
    return types[0] if len(types) == 1 else Union[types]  # noqa: UP007 - built at run time

"""Utility nodes: primitives, string operations, regular expressions and ``PreviewAny``.

Class names, inputs, outputs and behaviour follow ComfyUI's ``nodes_primitive``, ``nodes_string`` and
``nodes_preview_any``. Importing this module does not import torch.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from graphengine.errors import NodeInputError
from graphengine.node import Combo, Input, Node, NodeContext, NodeOutputs, Output
from graphengine.registry import NodePack

if TYPE_CHECKING:
    from graphengine.environment import Environment

MAX_PATTERN_LENGTH = 10_000

# --- primitives ---


class _Primitive(Node):
    category: ClassVar[str] = "utils/primitive"
    python_module: ClassVar[str] = "comfy_extras.nodes_primitive"


class PrimitiveString(_Primitive):
    """A constant string."""

    display_name: ClassVar[str] = "String"

    value: str = Input()

    class Outputs(NodeOutputs):
        string: str = Output(name="STRING")

    def run(self, ctx: NodeContext) -> PrimitiveString.Outputs:
        return self.Outputs(string=self.value)


class PrimitiveStringMultiline(_Primitive):
    """A constant multi-line string."""

    display_name: ClassVar[str] = "String (Multiline)"

    value: str = Input(multiline=True)

    class Outputs(NodeOutputs):
        string: str = Output(name="STRING")

    def run(self, ctx: NodeContext) -> PrimitiveStringMultiline.Outputs:
        return self.Outputs(string=self.value)


class PrimitiveInt(_Primitive):
    """A constant integer."""

    display_name: ClassVar[str] = "Int"

    value: int = Input(min=-sys.maxsize, max=sys.maxsize, control_after_generate=True)

    class Outputs(NodeOutputs):
        int_: int = Output(name="INT")

    def run(self, ctx: NodeContext) -> PrimitiveInt.Outputs:
        return self.Outputs(int_=self.value)


class PrimitiveFloat(_Primitive):
    """A constant floating-point number."""

    display_name: ClassVar[str] = "Float"

    value: float = Input(min=-sys.maxsize, max=sys.maxsize)

    class Outputs(NodeOutputs):
        float_: float = Output(name="FLOAT")

    def run(self, ctx: NodeContext) -> PrimitiveFloat.Outputs:
        return self.Outputs(float_=self.value)


class PrimitiveBoolean(_Primitive):
    """A constant boolean."""

    display_name: ClassVar[str] = "Boolean"

    value: bool = Input()

    class Outputs(NodeOutputs):
        boolean: bool = Output(name="BOOLEAN")

    def run(self, ctx: NodeContext) -> PrimitiveBoolean.Outputs:
        return self.Outputs(boolean=self.value)


# --- strings ---


class _StringNode(Node):
    category: ClassVar[str] = "utils/string"
    python_module: ClassVar[str] = "comfy_extras.nodes_string"


class _StringOutput(NodeOutputs):
    string: str = Output(name="STRING")


class StringConcatenate(_StringNode):
    """Joins two strings with a delimiter between them."""

    display_name: ClassVar[str] = "Concatenate"

    string_a: str = Input(multiline=True)
    string_b: str = Input(multiline=True)
    delimiter: str = Input("", multiline=False)

    class Outputs(_StringOutput):
        pass

    def run(self, ctx: NodeContext) -> _StringOutput:
        return self.Outputs(string=self.delimiter.join((self.string_a, self.string_b)))


class StringSubstring(_StringNode):
    """The part of a string from ``start`` up to (not including) ``end``; Python slice semantics, so
    negative positions count from the end."""

    display_name: ClassVar[str] = "Substring"

    string: str = Input(multiline=True)
    start: int = Input()
    end: int = Input()

    class Outputs(_StringOutput):
        pass

    def run(self, ctx: NodeContext) -> _StringOutput:
        return self.Outputs(string=self.string[self.start : self.end])


class StringLength(_StringNode):
    """The number of characters in a string."""

    display_name: ClassVar[str] = "Length"

    string: str = Input(multiline=True)

    class Outputs(NodeOutputs):
        length: int = Output(name="length")

    def run(self, ctx: NodeContext) -> StringLength.Outputs:
        return self.Outputs(length=len(self.string))


CASE_MODES = ("UPPERCASE", "lowercase", "Capitalize", "Title Case")


class CaseConverter(_StringNode):
    """Changes the letter case of a string."""

    display_name: ClassVar[str] = "Case Converter"

    string: str = Input(multiline=True)
    mode: str = Combo(CASE_MODES)

    class Outputs(_StringOutput):
        pass

    def run(self, ctx: NodeContext) -> _StringOutput:
        text = self.string
        converted = {
            "UPPERCASE": text.upper,
            "lowercase": text.lower,
            "Capitalize": text.capitalize,
            "Title Case": text.title,
        }[self.mode]()
        return self.Outputs(string=converted)


TRIM_MODES = ("Both", "Left", "Right")


class StringTrim(_StringNode):
    """Removes whitespace from the start, the end or both ends of a string."""

    display_name: ClassVar[str] = "Trim"

    string: str = Input(multiline=True)
    mode: str = Combo(TRIM_MODES)

    class Outputs(_StringOutput):
        pass

    def run(self, ctx: NodeContext) -> _StringOutput:
        text = self.string
        trimmed = {"Both": text.strip, "Left": text.lstrip, "Right": text.rstrip}[self.mode]()
        return self.Outputs(string=trimmed)


class StringReplace(_StringNode):
    """Replaces every occurrence of ``find`` with ``replace``."""

    display_name: ClassVar[str] = "Replace"

    string: str = Input(multiline=True)
    find: str = Input(multiline=True)
    replace: str = Input(multiline=True)

    class Outputs(_StringOutput):
        pass

    def run(self, ctx: NodeContext) -> _StringOutput:
        return self.Outputs(string=self.string.replace(self.find, self.replace))


class StringContains(_StringNode):
    """Whether ``substring`` occurs in ``string``."""

    display_name: ClassVar[str] = "Contains"

    string: str = Input(multiline=True)
    substring: str = Input(multiline=True)
    case_sensitive: bool = Input(True)

    class Outputs(NodeOutputs):
        contains: bool = Output(name="contains")

    def run(self, ctx: NodeContext) -> StringContains.Outputs:
        text, part = self.string, self.substring
        if not self.case_sensitive:
            text, part = text.lower(), part.lower()
        return self.Outputs(contains=part in text)


COMPARE_MODES = ("Starts With", "Ends With", "Equal")


class StringCompare(_StringNode):
    """Compares two strings: whether ``string_a`` starts with, ends with or equals ``string_b``."""

    display_name: ClassVar[str] = "Compare"

    string_a: str = Input(multiline=True)
    string_b: str = Input(multiline=True)
    mode: str = Combo(COMPARE_MODES)
    case_sensitive: bool = Input(True)

    class Outputs(NodeOutputs):
        boolean: bool = Output(name="BOOLEAN")

    def run(self, ctx: NodeContext) -> StringCompare.Outputs:
        a, b = self.string_a, self.string_b
        if not self.case_sensitive:
            a, b = a.lower(), b.lower()
        result = {"Starts With": a.startswith, "Ends With": a.endswith, "Equal": a.__eq__}[self.mode](b)
        return self.Outputs(boolean=bool(result))


# --- regular expressions ---


def _flags(case_insensitive: bool, multiline: bool, dotall: bool) -> int:
    flags = 0
    if case_insensitive:
        flags |= re.IGNORECASE
    if multiline:
        flags |= re.MULTILINE
    if dotall:
        flags |= re.DOTALL
    return flags


def _compile(pattern: str, flags: int) -> re.Pattern[str]:
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise NodeInputError(f"the regular expression is longer than {MAX_PATTERN_LENGTH} characters")
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise NodeInputError(f"invalid regular expression {pattern!r}: {exc}") from None


class _RegexNode(_StringNode):
    """Shared: the pattern is checked at validation time when it is a literal."""

    @classmethod
    def validates(cls) -> frozenset[str]:
        return frozenset({"regex_pattern"})

    @classmethod
    def validate_inputs(cls, literals: Mapping[str, Any], env: Environment) -> str | None:
        pattern = literals.get("regex_pattern")
        if isinstance(pattern, str):
            try:
                _compile(pattern, 0)
            except NodeInputError as exc:
                return str(exc)
        return None


class RegexMatch(_RegexNode):
    """Whether the regular expression matches anywhere in the string."""

    display_name: ClassVar[str] = "Regex Match"

    string: str = Input(multiline=True)
    regex_pattern: str = Input(multiline=True)
    case_insensitive: bool = Input(True)
    multiline: bool = Input(False)
    dotall: bool = Input(False)

    class Outputs(NodeOutputs):
        matches: bool = Output(name="matches")

    def run(self, ctx: NodeContext) -> RegexMatch.Outputs:
        pattern = _compile(self.regex_pattern, _flags(self.case_insensitive, self.multiline, self.dotall))
        return self.Outputs(matches=pattern.search(self.string) is not None)


EXTRACT_MODES = ("First Match", "All Matches", "First Group", "All Groups")


class RegexExtract(_RegexNode):
    """Extracts text with a regular expression: the first or every match, or group ``group_index``
    of the first or every match (one per line)."""

    display_name: ClassVar[str] = "Regex Extract"

    string: str = Input(multiline=True)
    regex_pattern: str = Input(multiline=True)
    mode: str = Combo(EXTRACT_MODES)
    case_insensitive: bool = Input(True)
    multiline: bool = Input(False)
    dotall: bool = Input(False)
    group_index: int = Input(1, min=0, max=100)

    class Outputs(_StringOutput):
        pass

    def run(self, ctx: NodeContext) -> _StringOutput:
        pattern = _compile(self.regex_pattern, _flags(self.case_insensitive, self.multiline, self.dotall))
        text, mode, group = self.string, self.mode, self.group_index
        if mode == "First Match":
            match = pattern.search(text)
            result = match.group(0) if match else ""
        elif mode == "All Matches":
            result = "\n".join(m.group(0) for m in pattern.finditer(text))
        elif mode == "First Group":
            match = pattern.search(text)
            result = (match.group(group) or "") if match and group <= pattern.groups else ""
        else:
            result = "\n".join(
                m.group(group) or "" for m in pattern.finditer(text) if group <= pattern.groups
            )
        return self.Outputs(string=result)


class RegexReplace(_RegexNode):
    """Replaces matches of a regular expression (``count`` 0 = all; ``\\1`` refers to groups)."""

    display_name: ClassVar[str] = "Regex Replace"

    string: str = Input(multiline=True)
    regex_pattern: str = Input(multiline=True)
    replace: str = Input(multiline=True)
    case_insensitive: bool = Input(True, optional=True)
    multiline: bool = Input(False, optional=True)
    dotall: bool = Input(False, optional=True, tooltip="When enabled, the dot (.) also matches newlines.")
    count: int = Input(0, min=0, max=100, optional=True, tooltip="Maximum number of replacements (0 = all).")

    class Outputs(_StringOutput):
        pass

    def run(self, ctx: NodeContext) -> _StringOutput:
        flags = _flags(bool(self.case_insensitive), bool(self.multiline), bool(self.dotall))
        pattern = _compile(self.regex_pattern, flags)
        try:
            result = pattern.sub(self.replace, self.string, count=self.count or 0)
        except (re.error, IndexError) as exc:
            raise NodeInputError(f"invalid replacement {self.replace!r}: {exc}") from None
        return self.Outputs(string=result)


# --- output ---


class PreviewAny(Node):
    """Shows any value as text (strings as they are, numbers and booleans as text, the rest as JSON)."""

    display_name: ClassVar[str] = "Preview Any"
    category: ClassVar[str] = "utils"
    python_module: ClassVar[str] = "comfy_extras.nodes_preview_any"
    output_node: ClassVar[bool] = True

    source: Any = Input()

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: NodeContext) -> PreviewAny.Outputs:
        return self.Outputs(ui={"text": [preview_text(self.source)]})


def preview_text(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return str(value)
    try:
        return json.dumps(value, indent=4)
    except (TypeError, ValueError, RecursionError):
        try:
            return str(value)
        except Exception:
            return "source exists, but could not be serialized."


NODES = (
    PrimitiveInt,
    PrimitiveFloat,
    PrimitiveString,
    PrimitiveStringMultiline,
    PrimitiveBoolean,
    StringConcatenate,
    StringSubstring,
    StringLength,
    StringReplace,
    StringTrim,
    CaseConverter,
    StringContains,
    StringCompare,
    RegexMatch,
    RegexExtract,
    RegexReplace,
    PreviewAny,
)


def pack() -> NodePack:
    return NodePack(name="utility", nodes=NODES)

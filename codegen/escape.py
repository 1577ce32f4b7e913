"""Text from outside ringgen (file and folder names, module and class names, build commands)
as it may appear in generated Python and C: escaped so that it stays inside the literal or the
comment it is written into, whatever characters it holds. A crafted file name must neither run
code when the package is imported nor break its compilation."""

from __future__ import annotations


def _escaped(ch: str) -> str:
    """Python's spelling of a character by its code point."""
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else \
        f"\\U{code:08x}"


def comment(text: str) -> str:
    """For a `//` (C) or `#` (Python) comment: no line break can end the comment early and no
    backslash can end a line (C splices the next line into the comment; `??/` is a backslash
    where trigraphs are on). Other printable characters are kept, so names read as they are."""
    return "".join(ch if ch.isprintable() and ch not in "\\?" else _escaped(ch) for ch in text)


def py_docstring(text: str) -> str:
    """For the inside of a `\"\"\"` docstring (not raw): reads back as `text` exactly."""
    return "".join(
        "\\" + ch if ch in '\\"' else ch if ch.isprintable() else _escaped(ch) for ch in text)


def c_string(text: str) -> str:
    """For the inside of a C string literal, such as the file name of a `#line` directive:
    the UTF-8 bytes of `text`, printable ASCII as it is, `"` and `\\` escaped, every other byte
    as a three-digit octal escape (a hex escape would swallow the hex digits after it)."""
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        ch = chr(byte)
        if ch in '\\"':
            out.append("\\" + ch)
        elif 0x20 <= byte < 0x7F and ch != "?":  # "??" could begin a trigraph
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return "".join(out)

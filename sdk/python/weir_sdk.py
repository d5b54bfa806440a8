"""Write weir plugins in Python.

A filter is a class with ``keep(event)``; ``export_filter`` turns it into the
``WitWorld`` class componentize-py exports::

    import weir_sdk

    class ErrorsOnly(weir_sdk.Filter):
        def keep(self, event):
            return event.get("level") == "error"

    WitWorld = weir_sdk.export_filter(ErrorsOnly)

Build with ``componentize-py -d wit -w filter componentize app -o app.wasm``
(``-p`` pointing at this file's folder). Events are read lazily from weir's
packed batch (``wit/LAYOUT.md``): ``event.get(key)`` decodes only that field.
"""

import struct

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")

_HEADER = 12
_LOG = 0


class LayoutError(Exception):
    """The bytes are not a valid weir batch."""


def _value(buf, pos):
    """Decodes the value at ``pos``; returns (value, next position)."""
    tag = buf[pos]
    pos += 1
    if tag == 0:
        return None, pos
    if tag in (1, 2):
        return tag == 2, pos
    if tag == 3:
        return _I64.unpack_from(buf, pos)[0], pos + 8
    if tag == 4:
        return _F64.unpack_from(buf, pos)[0], pos + 8
    if tag in (5, 6):
        n = _U32.unpack_from(buf, pos)[0]
        raw = bytes(buf[pos + 4 : pos + 4 + n])
        if len(raw) != n:
            raise LayoutError("truncated string")
        return (raw.decode("utf-8") if tag == 5 else raw), pos + 4 + n
    if tag == 7:
        size, count = _U32.unpack_from(buf, pos)[0], _U32.unpack_from(buf, pos + 4)[0]
        items, p = [], pos + 8
        for _ in range(count):
            v, p = _value(buf, p)
            items.append(v)
        return items, pos + 4 + size
    if tag == 8:
        size, count = _U32.unpack_from(buf, pos)[0], _U32.unpack_from(buf, pos + 4)[0]
        obj, p = {}, pos + 8
        for _ in range(count):
            k, p = _key(buf, p)
            obj[k], p = _value(buf, p)
        return obj, pos + 4 + size
    raise LayoutError(f"unknown tag {tag}")


def _skip(buf, pos):
    tag = buf[pos]
    if tag <= 2:
        return pos + 1
    if tag in (3, 4):
        return pos + 9
    if tag <= 8:
        return pos + 5 + _U32.unpack_from(buf, pos + 1)[0]
    raise LayoutError(f"unknown tag {tag}")


def _key(buf, pos):
    n = _U16.unpack_from(buf, pos)[0]
    return bytes(buf[pos + 2 : pos + 2 + n]).decode("utf-8"), pos + 2 + n


class Event:
    """One event of a batch; fields are decoded when asked for."""

    __slots__ = ("_buf", "_fields", "kind", "timestamp")

    def __init__(self, buf, start):
        self._buf = buf
        self.kind = buf[start]
        self.timestamp = _I64.unpack_from(buf, start + 1)[0]
        self._fields = start + 9

    def get(self, key, default=None):
        """A top-level field's value (str, int, float, bool, None, list, dict)."""
        if self.kind != _LOG:
            return default
        buf, want = self._buf, key.encode("utf-8")
        count = _U32.unpack_from(buf, self._fields)[0]
        pos = self._fields + 4
        for _ in range(count):
            n = _U16.unpack_from(buf, pos)[0]
            if buf[pos + 2 : pos + 2 + n] == want:
                return _value(buf, pos + 2 + n)[0]
            pos = _skip(buf, pos + 2 + n)
        return default

    def fields(self):
        """All top-level fields as a dict."""
        if self.kind != _LOG:
            return {}
        buf = self._buf
        count = _U32.unpack_from(buf, self._fields)[0]
        out, pos = {}, self._fields + 4
        for _ in range(count):
            k, pos = _key(buf, pos)
            out[k], pos = _value(buf, pos)
        return out


def events(batch):
    """The events of a packed batch, in order."""
    buf = memoryview(batch)
    if bytes(buf[:4]) != b"WEIR" or _U16.unpack_from(buf, 4)[0] != 1:
        raise LayoutError("not a weir batch of layout version 1")
    count = _U32.unpack_from(buf, 8)[0]
    pos = _HEADER
    for _ in range(count):
        n = _U32.unpack_from(buf, pos)[0]
        if pos + 4 + n > len(buf):
            raise LayoutError("truncated event")
        yield Event(buf, pos + 4)
        pos += 4 + n


def _encode_value(v, out):
    if v is None:
        out.append(0)
    elif v is True or v is False:
        out.append(2 if v else 1)
    elif isinstance(v, int):
        out.append(3)
        out += _I64.pack(v)
    elif isinstance(v, float):
        out.append(4)
        out += _F64.pack(v)
    elif isinstance(v, (str, bytes)):
        raw = v.encode("utf-8") if isinstance(v, str) else v
        out.append(5 if isinstance(v, str) else 6)
        out += _U32.pack(len(raw)) + raw
    elif isinstance(v, (list, dict)):
        inner = bytearray()
        if isinstance(v, list):
            for item in v:
                _encode_value(item, inner)
        else:
            _encode_fields(v, inner)
        out.append(7 if isinstance(v, list) else 8)
        out += _U32.pack(len(inner) + 4) + _U32.pack(len(v)) + inner
    else:
        raise TypeError(f"cannot encode {type(v).__name__}")


def _encode_fields(fields, out):
    for k, v in fields.items():
        key = k.encode("utf-8")
        out += _U16.pack(len(key)) + key
        _encode_value(v, out)


def encode(logs, timestamp=0):
    """A packed batch of log events from dicts, for tests."""
    out = bytearray(b"WEIR" + _U16.pack(1) + _U16.pack(0) + _U32.pack(len(logs)))
    for fields in logs:
        body = bytearray([_LOG]) + _I64.pack(timestamp) + _U32.pack(len(fields))
        _encode_fields(fields, body)
        out += _U32.pack(len(body)) + body
    return bytes(out)


class Filter:
    """Subclass and implement ``keep``; ``config`` is the pipeline's table."""

    def __init__(self, config):
        self.config = config

    def keep(self, event):
        raise NotImplementedError


def export_filter(cls):
    """The ``WitWorld`` class that exports ``cls`` as a weir filter.

    The generated bindings are imported when weir calls in, so the plugin's
    module also imports in plain Python, for unit tests.
    """
    state = {}

    class WitWorld:
        def init(self, config):
            from componentize_py_types import Err

            try:
                state["filter"] = cls(dict(config))
            except Exception as e:  # a refused config, reported by weir
                raise Err(str(e))

        def filter(self, batch):
            from componentize_py_types import Err
            from wit_world.imports import types

            f = state.get("filter")
            if f is None:
                raise Err("called before init")
            try:
                evs = list(events(batch))
            except (LayoutError, struct.error, IndexError) as e:
                raise Err(f"malformed batch: {e}")
            keep = bytearray((len(evs) + 7) // 8)
            errors = []
            for i, ev in enumerate(evs):
                try:
                    if f.keep(ev):
                        keep[i >> 3] |= 1 << (i & 7)
                except Exception as e:
                    errors.append(types.EventError(index=i, message=str(e)))
            return types.Verdict(keep=bytes(keep), errors=errors)

    return WitWorld

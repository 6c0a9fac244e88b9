"""Test utility: write PyTorch-style checkpoints without PyTorch.

``save(obj, path)`` writes the zip layout of ``torch.save`` (torch >= 1.6):
``<stem>/data.pkl`` (pickle protocol 2 with persistent storage ids),
``<stem>/.format_version``, ``<stem>/.storage_alignment``, ``<stem>/byteorder``,
``<stem>/data/<key>`` (raw storage bytes, 64-byte aligned), ``<stem>/version`` and
``<stem>/.data/serialization_id``.  ``save(obj, path, legacy=True)`` writes the
pre-1.6 stream of pickles instead.

Inside ``obj``, numpy arrays become tensors with their own storage; ``Tensor``
describes an arbitrary view (offset, shape, element strides) of a shared
``Storage``; ``Parameter`` wraps a tensor the way ``nn.Parameter`` pickles;
``Foreign`` stands for an object of a class the reader must not import.

To make pickle emit globals such as ``torch._utils._rebuild_tensor_v2`` a fake
``torch`` package is registered in ``sys.modules`` while writing only.
"""
from __future__ import annotations

import collections
import contextlib
import io
import os
import pickle
import struct
import sys
import types
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch dtype name -> (storage class name, numpy dtype of the stored elements)
STORAGE_KINDS = {
    "float32": ("FloatStorage", "f4"), "float64": ("DoubleStorage", "f8"),
    "float16": ("HalfStorage", "f2"), "bfloat16": ("BFloat16Storage", "u2"),
    "int64": ("LongStorage", "i8"), "int32": ("IntStorage", "i4"),
    "int16": ("ShortStorage", "i2"), "int8": ("CharStorage", "i1"),
    "uint8": ("ByteStorage", "u1"), "bool": ("BoolStorage", "?"),
    "complex64": ("ComplexFloatStorage", "c8"), "complex128": ("ComplexDoubleStorage", "c16"),
}


class Storage:
    """A flat torch storage. ``bfloat16`` values are given as float32 and truncated."""

    def __init__(self, values, dtype=None):
        values = np.asarray(values).reshape(-1)
        self.dtype = dtype or values.dtype.name
        if self.dtype == "bfloat16":
            values = (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        self.values = values.astype(STORAGE_KINDS[self.dtype][1])

    def tobytes(self, byteorder="little"):
        return self.values.astype(self.values.dtype.newbyteorder(
            "<" if byteorder == "little" else ">")).tobytes()


class StorageView:
    """Legacy-format storage view (torch < 1.0): ``size`` elements of ``root`` from ``offset``."""

    def __init__(self, root, offset, size):
        self.root, self.offset, self.size = root, offset, size
        self.dtype = root.dtype


class Tensor:
    """A view of ``storage``: element ``offset``, ``shape`` and element ``stride``."""

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset = storage, offset
        self.shape, self.stride = tuple(shape), tuple(stride)

    @classmethod
    def from_array(cls, array, dtype=None):
        array = np.asarray(array).copy(order="C")  # (ascontiguousarray would make 0-d 1-d)
        stride, step = [], 1
        for n in reversed(array.shape):
            stride.insert(0, step)
            step *= max(n, 1)
        return cls(Storage(array, dtype), 0, array.shape, stride)


class Parameter:
    """``nn.Parameter(tensor)``: pickled through ``torch._utils._rebuild_parameter``."""

    def __init__(self, tensor):
        self.tensor = tensor if isinstance(tensor, Tensor) else Tensor.from_array(tensor)


class Foreign:
    """An object of class ``qualname`` (absent here), pickled as ``qualname(*args)``,
    then ``__setstate__(state)``, list appends of ``items`` and dict sets of ``entries``."""

    def __init__(self, qualname, args=(), state=None, items=None, entries=None):
        self.qualname, self.args, self.state = qualname, tuple(args), state
        self.items, self.entries = items, entries


def _fake_global(qualname, value):
    module_name, _, name = qualname.rpartition(".")
    value.__module__, value.__qualname__ = module_name, name
    return module_name, name, value


def _rebuild_stub(*args):  # never called: only its pickled name matters
    raise AssertionError("fake torch function called")


@contextlib.contextmanager
def fake_modules(qualnames):
    """Register stand-in modules so pickle can name each global in ``qualnames``."""
    added, objects = [], {}
    try:
        for qualname in qualnames:
            module_name, _, name = qualname.rpartition(".")
            parts = module_name.split(".")
            for i in range(1, len(parts) + 1):
                mod = ".".join(parts[:i])
                if mod not in sys.modules:
                    sys.modules[mod] = types.ModuleType(mod)
                    added.append(mod)
                    if i > 1:
                        setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], sys.modules[mod])
                elif mod not in added:
                    raise RuntimeError(f"module {mod!r} is real here; cannot fake {qualname}")
            if name.endswith("Storage") or name[:1].isupper():
                value = type(name, (), {})
            else:
                value = types.FunctionType(_rebuild_stub.__code__, {}, name)
            _fake_global(qualname, value)
            setattr(sys.modules[module_name], name, value)
            objects[qualname] = value
        yield objects
    finally:
        for mod in reversed(added):
            del sys.modules[mod]


_TORCH_GLOBALS = ["torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter"] + [
    f"torch.{kind}" for kind, _ in STORAGE_KINDS.values()]


class _Pickler(pickle.Pickler):
    """Pickler emitting torch's reduce calls and persistent storage ids."""

    def __init__(self, file, fakes, legacy):
        super().__init__(file, protocol=2)
        self.fakes, self.legacy, self.storages = fakes, legacy, {}

    def persistent_id(self, obj):
        view = None
        if isinstance(obj, StorageView):
            view, obj = obj, obj.root
        if not isinstance(obj, Storage):
            return None
        key = self.storages.setdefault(id(obj), (str(len(self.storages)), obj))[0]
        kind = self.fakes["torch." + STORAGE_KINDS[obj.dtype][0]]
        pid = ("storage", kind, key, "cpu", obj.values.size)
        if not self.legacy:
            return pid
        return pid + ((f"{key}.{view.offset}", view.offset, view.size) if view else None,)

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            obj = Tensor.from_array(obj)
        if isinstance(obj, Tensor):
            return (self.fakes["torch._utils._rebuild_tensor_v2"],
                    (obj.storage, obj.offset, obj.shape, obj.stride, False,
                     collections.OrderedDict()))
        if isinstance(obj, Parameter):
            return (self.fakes["torch._utils._rebuild_parameter"],
                    (obj.tensor, True, collections.OrderedDict()))
        if isinstance(obj, Foreign):
            return (self.fakes[obj.qualname], obj.args, obj.state,
                    iter(obj.items) if obj.items is not None else None,
                    iter(obj.entries.items()) if obj.entries is not None else None)
        return NotImplemented


def _foreign_names(obj, found, seen):
    if id(obj) in seen:
        return found
    seen.add(id(obj))
    if isinstance(obj, Foreign):
        found.add(obj.qualname)
        for value in obj.args + (obj.state, obj.items, obj.entries):
            _foreign_names(value, found, seen)
    elif isinstance(obj, dict):
        for value in obj.values():
            _foreign_names(value, found, seen)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _foreign_names(value, found, seen)
    return found


def dumps(obj, legacy=False):
    """Return ``(pickle_bytes, [(key, Storage), ...])`` for ``obj``."""
    names = _TORCH_GLOBALS + sorted(_foreign_names(obj, set(), set()))
    with fake_modules(names) as fakes:
        buffer = io.BytesIO()
        pickler = _Pickler(buffer, fakes, legacy)
        pickler.dump(obj)
    return buffer.getvalue(), list(pickler.storages.values())


def _aligned_info(file, name, alignment=64):
    """ZipInfo whose data starts at a multiple of ``alignment`` (padding in an extra field)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    header = 30 + len(name.encode()) + 4
    pad = -(file.tell() + header) % alignment
    info.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
    return info


def write_zip(path, data_pkl, storages, archive_name=None, byteorder="little"):
    """Write the torch zip layout from a ready ``data.pkl`` and ``{key: bytes}``."""
    root = archive_name or os.path.basename(os.fspath(path)).split(".")[0]
    with open(path, "wb") as file, zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
        records = [("data.pkl", data_pkl), (".format_version", b"1"),
                   (".storage_alignment", b"64"), ("byteorder", byteorder.encode())]
        records += [(f"data/{key}", data) for key, data in storages.items()]
        records += [("version", b"3\n"), (".data/serialization_id", b"0" * 40)]
        for name, data in records:
            archive.writestr(_aligned_info(file, f"{root}/{name}"), data)


def write_legacy(path, main_pickle, storages, header=None):
    """Write the legacy stream: magic, protocol, sys_info, ``main_pickle``, keys, storages.

    ``storages`` maps key -> (element count, raw little-endian bytes); ``header``
    replaces the three leading pickles (bytes) when given.
    """
    sys_info = {"protocol_version": LEGACY_PROTOCOL, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    with open(path, "wb") as file:
        file.write(header if header is not None else b"".join(
            pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC, LEGACY_PROTOCOL, sys_info)))
        file.write(main_pickle)
        keys = sorted(storages)
        file.write(pickle.dumps(keys, protocol=2))
        for key in keys:
            numel, data = storages[key]
            file.write(struct.pack("<q", numel) + data)


def save(obj, path, legacy=False, archive_name=None, byteorder="little"):
    """Write ``obj`` like ``torch.save`` would (zip layout, or legacy when asked)."""
    data_pkl, storages = dumps(obj, legacy=legacy)
    if legacy:
        write_legacy(path, data_pkl, {key: (s.values.size, s.tobytes()) for key, s in storages})
    else:
        write_zip(path, data_pkl, {key: s.tobytes(byteorder) for key, s in storages},
                  archive_name=archive_name, byteorder=byteorder)

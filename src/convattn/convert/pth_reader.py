"""Read PyTorch checkpoints (``.pth``, ``.pth.tar``, ``.pt``) without PyTorch.

Only the standard library and numpy are used, and loading is *safe*: the pickle
stream is decoded by a restricted unpickler that never imports or calls
anything outside a short whitelist.

* ``torch._utils._rebuild_*`` and the storage classes are re-implemented here;
  every tensor becomes a C-contiguous numpy array (bfloat16 becomes float32,
  big-endian data is converted to native order).
* Globals that could run code (``os.system``, ``builtins.eval``,
  ``subprocess.Popen``, ``functools.partial`` ...) raise
  :class:`UnsafeCheckpointError` before anything is called.
* Every other global (``argparse.Namespace``, ``yacs.config.CfgNode``,
  optimizer or model classes ...) becomes an inert placeholder that only
  records its name and the data the pickle gives it.

Two layouts are read: the zip archive written by ``torch.save`` since torch 1.6
and the older stream of pickles (``_use_new_zipfile_serialization=False``).
"""
from __future__ import annotations

import _compat_pickle
import collections
import io
import os
import pickle
import pickletools
import struct
import tarfile
import zipfile
from collections.abc import Mapping

import numpy as np

from ..utils.errors import UserError

__all__ = ["CheckpointFormatError", "UnsafeCheckpointError", "load_pth",
           "extract_state_dict", "read_state_dict"]

_FIX = "re-download the file, or re-save it with torch.save(model.state_dict(), path)"
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class CheckpointFormatError(UserError, ValueError):
    """The file is not a PyTorch checkpoint, or it is truncated or corrupt."""


class UnsafeCheckpointError(CheckpointFormatError):
    """The pickle asks for a global that could execute arbitrary code."""


class _Corrupt(Exception):
    """Internal: inconsistent data met while rebuilding; reported as CheckpointFormatError."""


# torch dtype name -> numpy code of the stored elements (bfloat16: raw 16-bit patterns)
_DTYPES = {"float32": "f4", "float64": "f8", "float16": "f2", "bfloat16": "u2", "int64": "i8",
           "int32": "i4", "int16": "i2", "int8": "i1", "uint8": "u1", "bool": "?",
           "complex64": "c8", "complex128": "c16", "uint16": "u2", "uint32": "u4", "uint64": "u8"}
_DTYPE_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "long": "int64",
                  "int": "int32", "short": "int16", "cfloat": "complex64", "cdouble": "complex128"}
_STORAGES = {"FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
             "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
             "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
             "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
             "ComplexDoubleStorage": "complex128", "UntypedStorage": "uint8"}


def _raw_dtype(name, big_endian=False):
    return np.dtype(_DTYPES[name]).newbyteorder(">" if big_endian else "<")


class _StorageType:
    """What ``torch.<Kind>Storage`` globals resolve to: a marker carrying the dtype."""

    def __init__(self, qualname, dtype):
        self.qualname, self.dtype = qualname, dtype  # dtype None: quantized or unknown kind


class _Storage:
    """Raw bytes of one torch storage and the dtype it was saved with."""

    def __init__(self, key, dtype, numel, data=None, big_endian=False, parent=None, offset=0):
        self.key, self.dtype, self.numel, self.data = key, dtype, numel, data
        self.big_endian, self.parent, self.offset = big_endian, parent, offset  # legacy views
        self._arrays = {}

    def array(self, dtype=None):
        """The storage as a flat native-order array of ``dtype`` (default: its own)."""
        dtype = dtype or self.dtype
        if self.data is None and self.parent is not None and self.parent.data is not None:
            size = _raw_dtype(self.dtype).itemsize
            self.data = self.parent.data[self.offset * size:(self.offset + self.numel) * size]
            if len(self.data) != self.numel * size:
                raise _Corrupt(f"storage view {self.key!r} runs past the end of its storage")
        if self.data is None:
            raise _Corrupt(f"storage {self.key!r} has no data")
        if dtype not in self._arrays:
            raw = _raw_dtype(dtype, self.big_endian)
            if len(self.data) % raw.itemsize:
                raise _Corrupt(f"storage {self.key!r} ({len(self.data)} bytes) cannot hold {dtype}")
            flat = np.frombuffer(self.data, dtype=raw).astype(raw.newbyteorder("="), copy=False)
            if dtype == "bfloat16":  # a bfloat16 is the upper half of a float32
                flat = (flat.astype(np.uint32) << 16).view(np.float32)
            self._arrays[dtype] = flat
        return self._arrays[dtype]


class _PendingTensor:
    """A tensor view of a storage whose bytes may come later (the legacy format stores them last)."""

    def __init__(self, storage, offset, size, stride, dtype=None):
        if not isinstance(storage, _Storage):
            raise _Corrupt(f"tensor rebuilt from a {type(storage).__name__}, not a storage")
        self.storage, self.offset, self.dtype = storage, int(offset), dtype
        self.size, self.stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)

    def materialize(self):
        shape, stride, offset = self.size, self.stride, self.offset
        flat = self.storage.array(self.dtype)
        if len(shape) != len(stride) or min(shape + stride + (offset,)) < 0:
            raise _Corrupt(f"invalid tensor geometry size={shape} stride={stride} offset={offset}")
        if 0 in shape:
            return np.empty(shape, dtype=flat.dtype)
        if np.prod(shape, dtype=float) > max(64 * flat.size, 2 ** 24):  # absurd expand()
            raise _Corrupt(f"tensor of size {shape} made from {flat.size} stored elements")
        if offset + sum((n - 1) * s for n, s in zip(shape, stride)) >= flat.size:
            raise _Corrupt(f"tensor size={shape} stride={stride} offset={offset} runs past the end "
                           f"of storage {self.storage.key!r} ({flat.size} elements)")
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=shape, strides=[s * flat.itemsize for s in stride], writeable=False)
        return view.copy(order="C")


class _Placeholder:
    """Inert stand-in for a global that is never imported; it only records what it is given."""

    _qualname = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items, obj.list = args, kwargs, None, {}, []
        return obj

    def __init__(self, *args, **kwargs):
        if args or kwargs:
            self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.items[key] = value

    def append(self, value):
        self.list.append(value)

    def extend(self, values):
        self.list.extend(values)

    def __repr__(self):
        return f"<unloaded {self._qualname} object>"


def _describe(value):
    """Qualified name of a placeholder (instance or class), else None."""
    if isinstance(value, _Placeholder):
        return value._qualname
    if isinstance(value, type) and issubclass(value, _Placeholder):
        return f"class {value._qualname}"
    return None


class _Call:
    """Whitelisted callable; pickle cannot set attributes on it (BUILD is refused)."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)

    def __setstate__(self, state):
        raise _Corrupt(f"pickle tries to modify {self.fn.__name__}")


# ------------------------------------------------------- re-implemented, whitelisted globals
def _rebuild_tensor(storage, storage_offset, size, stride, *_unused):
    """torch._utils._rebuild_tensor[_v2]: requires_grad, hooks and metadata are dropped."""
    return _PendingTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, hooks, dtype, *_):
    """torch._utils._rebuild_tensor_v3: an untyped storage read as ``dtype`` (uint16 ...)."""
    name = str(dtype).replace("torch.", "")
    name = _DTYPE_ALIASES.get(name, name)
    if name not in _DTYPES:
        raise _Corrupt(f"tensor dtype {_describe(dtype) or dtype} has no numpy equivalent")
    return _PendingTensor(storage, storage_offset, size, stride, dtype=name)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    """torch._utils._rebuild_parameter[_with_state]: a Parameter is just its data."""
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    """torch._tensor._rebuild_from_type_v2: ``func(*args)``; tensor subclass and state dropped."""
    if func not in _REBUILDERS and _describe(func) is None:
        raise _Corrupt(f"unexpected tensor rebuild function {func!r}")
    return func(*args)


def _codecs_encode(text, encoding="utf-8"):
    """_codecs.encode, which protocol-2 pickles use for bytes: str to latin1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def _bytes_maker(kind):
    def make(*args):  # no bytes(<int>): a pickle must not pick an allocation size
        if args and not isinstance(args[0], (str, bytes, bytearray)):
            raise _Corrupt(f"{kind.__name__}() of a {type(args[0]).__name__}")
        return kind(*args)
    make.__name__ = kind.__name__
    return make


def _torch_size(dims=()):
    return tuple(int(d) for d in dims)


def _torch_device(kind, index=None):
    return str(kind) if index is None else f"{kind}:{index}"


class _NumpyDtype:
    """numpy.dtype(spec) + setstate, limited to plain bool, numeric and string dtypes."""

    spec, byteorder = None, "="

    def __init__(self, spec, align=False, copy=False):
        self.spec = spec

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) < 5 or state[2:5] != (None, None, None):
            raise _Corrupt(f"unsupported numpy dtype {self.spec!r} (structured or sub-array)")
        self.byteorder = state[1]

    def resolve(self):
        try:
            dtype = np.dtype(self.spec) if isinstance(self.spec, str) else None
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind not in "biufcSU":
            raise _Corrupt(f"unsupported numpy dtype {self.spec!r} (object arrays are refused)")
        return dtype.newbyteorder(self.byteorder) if self.byteorder in ("<", ">") else dtype


def _numpy_scalar(dtype, data):
    if not isinstance(dtype, _NumpyDtype) or not isinstance(data, bytes):
        raise _Corrupt("unsupported numpy scalar (object scalars are refused)")
    return np.frombuffer(data, dtype=dtype.resolve(), count=1)[0]


def _numpy_from_bytes(raw, dtype, shape, order="C"):
    if not isinstance(dtype, _NumpyDtype) or not isinstance(raw, (bytes, bytearray)):
        raise _Corrupt("unsupported numpy array payload (object arrays are refused)")
    shape = _torch_size(shape)
    flat = np.frombuffer(raw, dtype=dtype.resolve(), count=int(np.prod(shape)))
    return flat.reshape(shape, order=order).copy(order="C")


class _NumpyArray:
    """numpy.core.multiarray._reconstruct(ndarray, ...); pickle BUILD supplies the data."""

    value = None

    def __init__(self, cls, shape=(0,), typecode=b"b"):
        if cls is not _NDARRAY:
            raise _Corrupt("numpy _reconstruct of something other than numpy.ndarray")

    def __setstate__(self, state):
        shape, dtype, fortran, raw = state[-4:]  # (version,) shape, dtype, is_fortran, data
        self.value = _numpy_from_bytes(raw, dtype, shape, "F" if fortran else "C")


_NDARRAY = object()  # what the numpy.ndarray global resolves to: a marker, never callable
_REBUILDERS = tuple(_Call(f) for f in (_rebuild_tensor, _rebuild_tensor_v3, _rebuild_parameter))
_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): _Call(_codecs_encode),
    ("torch._utils", "_rebuild_tensor"): _REBUILDERS[0],
    ("torch._utils", "_rebuild_tensor_v2"): _REBUILDERS[0],
    ("torch._utils", "_rebuild_tensor_v3"): _REBUILDERS[1],
    ("torch._utils", "_rebuild_parameter"): _REBUILDERS[2],
    ("torch._utils", "_rebuild_parameter_with_state"): _REBUILDERS[2],
    ("torch._tensor", "_rebuild_from_type_v2"): _Call(_rebuild_from_type_v2),
    ("torch", "Size"): _Call(_torch_size), ("torch", "device"): _Call(_torch_device),
    ("numpy", "dtype"): _Call(_NumpyDtype), ("numpy", "ndarray"): _NDARRAY,
    **{("builtins", name): kind for name, kind in [
        ("set", set), ("frozenset", frozenset), ("slice", slice), ("complex", complex),
        ("object", object), ("int", int), ("float", float), ("str", str), ("bool", bool),
        ("list", list), ("dict", dict), ("tuple", tuple),
        ("bytes", _Call(_bytes_maker(bytes))), ("bytearray", _Call(_bytes_maker(bytearray)))]},
    **{(f"{np_core}.{module}", name): _Call(fn) for np_core in ("numpy.core", "numpy._core")
       for module, name, fn in [("multiarray", "scalar", _numpy_scalar),
                                ("multiarray", "_reconstruct", _NumpyArray),
                                ("numeric", "_frombuffer", _numpy_from_bytes)]},
}
_DANGEROUS = {"os", "posix", "nt", "posixpath", "ntpath", "subprocess", "sys", "shutil", "socket",
              "importlib", "runpy", "pickle", "_pickle", "marshal", "ctypes", "pty", "code", "codeop",
              "webbrowser", "multiprocessing", "threading", "_thread", "types", "functools",
              "operator", "_operator", "builtins", "io", "_io", "tempfile", "pathlib", "signal",
              "asyncio", "platform", "glob", "inspect", "gc", "pdb", "bdb", "timeit", "trace",
              "ssl", "http", "urllib", "ftplib", "smtplib", "telnetlib", "copyreg", "zipimport",
              "pkgutil", "imp", "site", "sysconfig", "distutils", "setuptools", "pip", "cProfile",
              "profile", "dill", "cloudpickle", "_posixsubprocess", "_winapi", "msvcrt", "commands",
              "popen2"}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves globals through the whitelist, refuses dangerous ones, stubs the rest."""

    def __init__(self, file, path, placeholders, storage_for):
        super().__init__(file)
        self._path, self._placeholders, self._storage_for = path, placeholders, storage_for

    def find_class(self, module, name):
        if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2 names, as pickle maps them
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        qualname = f"{module}.{name}"
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if (module, name) == ("copyreg", "_reconstructor"):
            return _Call(self._reconstructor)
        if module in ("torch", "torch.storage") and name.endswith("Storage"):
            return _StorageType(qualname, _STORAGES.get(name))
        if module == "torch" and (name in _DTYPES or name in _DTYPE_ALIASES):
            return qualname  # torch.float32 & co. become plain strings
        if module.split(".")[0] in _DANGEROUS or name.startswith("__"):
            raise UnsafeCheckpointError(
                f"{self._path} asks to load the global '{qualname}', which could execute arbitrary "
                "code; refusing to unpickle it. Only load checkpoints from sources you trust; to use "
                "a trusted file, load it once with torch and re-save just the weights with "
                "torch.save(model.state_dict(), path)")
        if qualname not in self._placeholders:
            self._placeholders[qualname] = type(name.rsplit(".", 1)[-1], (_Placeholder,),
                                                {"_qualname": qualname})
        return self._placeholders[qualname]

    @staticmethod
    def _reconstructor(cls, base, state=None):
        """copyreg._reconstructor (objects in protocol 0/1 pickles), placeholder classes only."""
        if _describe(cls) is None or not isinstance(cls, type):
            raise _Corrupt(f"copyreg._reconstructor called for {cls!r}")
        return cls() if state is None else cls(state)

    def persistent_load(self, pid):
        """('storage', type, key, location, numel[, view]) -> _Storage; legacy ('module', cls, ...)."""
        tag = pid[0] if isinstance(pid, tuple) and pid else None
        tag = tag.decode("ascii", "replace") if isinstance(tag, bytes) else tag
        if tag == "module" and len(pid) >= 2:  # legacy torch.save(model): the class, never used
            return pid[1]
        if tag != "storage" or len(pid) not in (5, 6) or not isinstance(pid[1], _StorageType):
            raise _Corrupt(f"unexpected persistent id {str(pid)[:80]}")
        if pid[1].dtype is None:
            raise _Corrupt(f"storage type {pid[1].qualname} (quantized or exotic) is not supported")
        storage = self._storage_for(str(pid[2]), pid[1].dtype, int(pid[4]))
        if len(pid) == 6 and pid[5] is not None:  # torch < 1.0 storage view: (key, offset, size)
            _, offset, size = pid[5]
            storage = _Storage(f"{pid[2]}[{offset}:+{size}]", storage.dtype, int(size),
                               parent=storage, offset=int(offset))
        return storage


# ------------------------------------------------------------------------------- loading
def _unpickle(file, path, placeholders, storage_for=None, what="data.pkl"):
    """Check one pickle's structure, then unpickle it with the restricted unpickler."""
    def no_storage(key, dtype, numel):
        raise _Corrupt(f"{what} references tensor storage {key!r}")
    start = file.tell()
    try:  # opcodes only, nothing built: bad lengths fail here before they can allocate
        for count, (op, arg, _) in enumerate(pickletools.genops(file)):
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and arg > count:
                raise ValueError(f"memo index {arg} at opcode {count}")  # would grow the memo
    except ValueError as exc:
        problem = "is truncated" if "exhausted" in str(exc) or "remain" in str(exc) else "is corrupt"
        raise CheckpointFormatError(f"{path} {problem}: {what}: {exc}; {_FIX}") from None
    file.seek(start)
    try:
        return _RestrictedUnpickler(file, path, placeholders, storage_for or no_storage).load()
    except CheckpointFormatError:
        raise
    except _Corrupt as exc:
        raise CheckpointFormatError(f"{path} is corrupt: {exc}; {_FIX}") from None
    except Exception as exc:  # bad arguments to whitelisted callables, unbalanced stack ...
        raise CheckpointFormatError(f"{path} is corrupt: cannot unpickle {what} "
                                    f"({type(exc).__name__}: {exc}); {_FIX}") from None


def _load_zip(path, placeholders):
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise CheckpointFormatError(
            f"{path} is truncated or corrupt: it starts like a torch.save zip archive but the "
            f"directory at the end of the file is missing or damaged ({exc}); {_FIX}") from None
    with archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pickles:
            raise CheckpointFormatError(f"{path} is not a PyTorch checkpoint: a zip archive without "
                                        f"a '<folder>/data.pkl' entry (has {names[:5]}); {_FIX}")
        prefix = pickles[0][:-len("data.pkl")]
        big_endian = (prefix + "byteorder" in names
                      and archive.read(prefix + "byteorder").strip() == b"big")
        storages = {}

        def storage_for(key, dtype, numel):
            if key not in storages:
                entry = f"{prefix}data/{key}"
                if entry not in names:
                    raise _Corrupt(f"tensor storage '{entry}' is missing from the archive")
                data, nbytes = archive.read(entry), numel * _raw_dtype(dtype).itemsize
                if len(data) < nbytes:
                    raise _Corrupt(f"'{entry}' holds {len(data)} bytes, {nbytes} expected")
                storages[key] = _Storage(key, dtype, numel, memoryview(data)[:nbytes], big_endian)
            return storages[key]

        try:
            return _unpickle(io.BytesIO(archive.read(pickles[0])), path, placeholders, storage_for)
        except (zipfile.BadZipFile, OSError) as exc:  # CRC mismatch, damaged local header ...
            raise CheckpointFormatError(f"{path} is corrupt: {exc}; {_FIX}") from None


def _load_legacy(path, placeholders):
    """magic, protocol, sys_info, main pickle, storage keys, then per key: int64 count + bytes."""
    with open(path, "rb") as raw:
        content = raw.read()  # storages become zero-copy slices of it
    file = io.BytesIO(content)
    try:
        magic = _unpickle(file, path, placeholders, what="the header")
    except UnsafeCheckpointError:
        raise
    except CheckpointFormatError:
        raise CheckpointFormatError(
            f"{path} is not a PyTorch checkpoint: neither a zip archive (torch.save format) nor "
            f"a legacy torch pickle stream; {_FIX}") from None
    if magic != _LEGACY_MAGIC:
        raise CheckpointFormatError(f"{path} is not a PyTorch checkpoint: wrong magic number "
                                    f"{str(magic)[:40]!r}; {_FIX}")
    version = _unpickle(file, path, placeholders, what="the header")
    if version != _LEGACY_PROTOCOL:
        raise CheckpointFormatError(f"{path} uses legacy protocol {version!r}, which is not "
                                    "supported; load it with torch and re-save it with torch.save")
    _unpickle(file, path, placeholders, what="the header")  # sys_info: storages are always LE
    storages = {}

    def storage_for(key, dtype, numel):
        return storages.setdefault(key, _Storage(key, dtype, numel))

    obj = _unpickle(file, path, placeholders, storage_for, what="the main pickle")
    keys = _unpickle(file, path, placeholders, what="the storage key list")
    if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
        raise CheckpointFormatError(f"{path} is corrupt: the storage key list does not match the "
                                    f"storages the pickle uses; {_FIX}")
    for key in map(str, keys):
        storage, head = storages[key], file.read(8)
        count = struct.unpack("<q", head)[0] if len(head) == 8 else -1
        start, nbytes = file.tell(), storage.numel * _raw_dtype(storage.dtype).itemsize
        storage.data = memoryview(content)[start:start + nbytes]
        file.seek(start + len(storage.data))
        if len(storage.data) < nbytes:
            raise CheckpointFormatError(f"{path} is truncated: storage {key!r} has "
                                        f"{len(storage.data)} of {nbytes} bytes; {_FIX}")
        if count != storage.numel:
            raise CheckpointFormatError(f"{path} is corrupt: storage {key!r} holds {count} "
                                        f"elements, {storage.numel} expected; {_FIX}")
    return obj


def _finalize(obj, memo):
    """Replace pending tensors and numpy stubs by arrays (containers updated in place)."""
    if id(obj) in memo:
        return memo[id(obj)]
    memo[id(obj)] = result = obj
    if isinstance(obj, _PendingTensor):
        result = obj.materialize()
    elif isinstance(obj, _Storage):  # a storage saved on its own
        result = obj.array().copy()
    elif isinstance(obj, _NumpyArray):
        result = obj.value
    elif isinstance(obj, _NumpyDtype):
        result = obj.resolve()
    elif isinstance(obj, dict):
        for key, value in list(obj.items()):
            obj[key] = _finalize(value, memo)
    elif isinstance(obj, list):
        obj[:] = [_finalize(value, memo) for value in obj]
    elif type(obj) is tuple:
        result = tuple(_finalize(value, memo) for value in obj)
    elif isinstance(obj, _Placeholder):
        obj.args, obj.state = _finalize(obj.args, memo), _finalize(obj.state, memo)
        _finalize(obj.items, memo), _finalize(obj.list, memo)
    memo[id(obj)] = result
    return result


def _load(path):
    """(object with arrays, 'zip' | 'legacy')."""
    path = os.fspath(path)
    with open(path, "rb") as file:
        head = file.read(4)
    if not head:
        raise CheckpointFormatError(f"{path} is not a PyTorch checkpoint: the file is empty; {_FIX}")
    placeholders = {}  # qualified name -> placeholder class, for this load
    if head.startswith(b"PK"):
        obj, fmt = _load_zip(path, placeholders), "zip"
    elif tarfile.is_tarfile(path):
        raise CheckpointFormatError(
            f"{path} uses the tar-based format of torch < 0.4, which is not supported; load it with "
            "that torch and re-save it with torch.save(model.state_dict(), path)")
    else:
        obj, fmt = _load_legacy(path, placeholders), "legacy"
    try:
        return _finalize(obj, {}), fmt
    except (_Corrupt, ValueError, TypeError, MemoryError, RecursionError) as exc:
        raise CheckpointFormatError(f"{path} is corrupt: {exc}; {_FIX}") from None


def load_pth(path):
    """Return the unpickled structure with every torch tensor replaced by a numpy array.

    Arrays are C-contiguous copies with the tensor's dtype (bfloat16 -> float32),
    shape, strides and storage offset honoured.  Unknown globals come back as inert
    placeholder objects; dangerous ones raise :class:`UnsafeCheckpointError`.
    """
    return _load(path)[0]


def _extract(obj, path_hint=""):
    """(state dict, container key, stripped prefix, the mapping it came from)."""
    where = f"{path_hint}: " if path_hint else ""

    def holds_tensors(value):
        return (isinstance(value, Mapping) and all(isinstance(k, str) for k in value)
                and any(isinstance(v, np.ndarray) for v in value.values()))

    container, state = None, None
    if isinstance(obj, Mapping) and obj and all(isinstance(v, np.ndarray) for v in obj.values()):
        state = obj
    elif isinstance(obj, Mapping):
        for key in ("state_dict", "model", "module"):
            if key in obj and holds_tensors(obj[key]):
                container, state = key, obj[key]
                break
            if key in obj and _describe(obj[key]):
                raise CheckpointFormatError(
                    f"{where}'{key}' holds a pickled {_describe(obj[key])} object, not a state "
                    "dict; re-save the checkpoint with torch.save(model.state_dict(), path)")
        if state is None and holds_tensors(obj):
            state = obj
    if state is None:
        found = (f"top-level keys {list(obj)[:20]}" if isinstance(obj, Mapping)
                 else f"a {_describe(obj) or type(obj).__name__}")
        raise CheckpointFormatError(
            f"{where}no state dict of tensors found (looked at the object itself and its "
            f"'state_dict', 'model', 'module' entries; found {found}); re-save the checkpoint "
            "with torch.save(model.state_dict(), path)")
    for key, value in state.items():
        if not isinstance(value, np.ndarray):
            raise CheckpointFormatError(
                f"{where}state dict entry '{key}' holds a {_describe(value) or type(value).__name__}"
                ", not a tensor; re-save the checkpoint with torch.save(model.state_dict(), path)")
    prefix = "module." if all(k.startswith("module.") for k in state) else None
    cut = len(prefix) if prefix else 0
    return collections.OrderedDict((k[cut:], v) for k, v in state.items()), container, prefix, state


def extract_state_dict(obj, path_hint=""):
    """Find the ``str -> np.ndarray`` state dict inside a loaded checkpoint.

    Takes ``obj`` itself when all its values are arrays, else the first of
    ``obj['state_dict']``, ``obj['model']``, ``obj['module']`` holding arrays, else
    ``obj`` when it holds some arrays.  A ``module.`` prefix carried by every key
    is stripped.  Raises :class:`CheckpointFormatError` when no state dict is found
    or an entry is not an array; all arrays are kept (``num_batches_tracked`` too).
    """
    return _extract(obj, path_hint)[0]


def _foreign_objects(obj, skip, path, found, seen):
    """Append '<key path>: <type>' for placeholders reachable from ``obj``, except in ``skip``."""
    if obj is skip or id(obj) in seen:
        return
    seen.add(id(obj))
    if _describe(obj):
        found.append(f"{path or '<root>'}: {_describe(obj)}")
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            _foreign_objects(value, skip, f"{path}.{key}" if path else str(key), found, seen)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _foreign_objects(value, skip, f"{path}[{i}]", found, seen)


def read_state_dict(path):
    """``load_pth`` + ``extract_state_dict``: returns ``(state_dict, info)``.

    ``info``: ``format`` ('zip' or 'legacy'), ``container_key`` ('state_dict',
    'model', 'module' or None), ``stripped_prefix`` ('module.' or None),
    ``ignored_objects`` (placeholders outside the state dict, as
    ``'<key path>: <qualified type>'``) and ``other_keys`` (the other top-level keys).
    """
    obj, fmt = _load(path)
    state, container, prefix, raw = _extract(obj, os.fspath(path))
    ignored = []
    try:
        _foreign_objects(obj, raw, "", ignored, set())
    except RecursionError:
        ignored.append("<objects nested too deeply to list>")
    other = [k for k in obj if k != container] if container is not None else []
    return state, {"format": fmt, "container_key": container, "stripped_prefix": prefix,
                   "ignored_objects": ignored, "other_keys": other}

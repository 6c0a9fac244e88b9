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
  optimizer or model classes ...) is replaced by an inert placeholder that
  only records its name and constructor data.

Two on-disk layouts are supported: the zip archive written by ``torch.save``
since torch 1.6 and the older "legacy" stream of pickles
(``_use_new_zipfile_serialization=False``).
"""
from __future__ import annotations

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

__all__ = ["CheckpointFormatError", "UnsafeCheckpointError", "load_pth",
           "extract_state_dict", "read_state_dict"]

_FIX = "re-download the file, or re-save it with torch.save(model.state_dict(), path)"
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class CheckpointFormatError(ValueError):
    """The file is not a PyTorch checkpoint, or it is truncated or corrupt."""


class UnsafeCheckpointError(CheckpointFormatError):
    """The pickle asks for a global that could execute arbitrary code."""


class _Corrupt(Exception):
    """Internal: inconsistent data found while rebuilding; becomes CheckpointFormatError."""


# ----------------------------------------------------------------------------- dtypes
# torch dtype name -> numpy type code of the stored bytes (little-endian base).
_DTYPES = {"float32": "f4", "float64": "f8", "float16": "f2", "bfloat16": "u2",
           "int64": "i8", "int32": "i4", "int16": "i2", "int8": "i1", "uint8": "u1",
           "bool": "?", "complex64": "c8", "complex128": "c16",
           "uint16": "u2", "uint32": "u4", "uint64": "u8"}
_DTYPE_ALIASES = {"float": "float32", "double": "float64", "half": "float16",
                  "long": "int64", "int": "int32", "short": "int16",
                  "cfloat": "complex64", "cdouble": "complex128"}
_STORAGE_CLASSES = {"FloatStorage": "float32", "DoubleStorage": "float64",
                    "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
                    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
                    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
                    "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
                    "UntypedStorage": "uint8"}
_TORCH_DTYPE_NAMES = set(_DTYPES) | set(_DTYPE_ALIASES) | {
    "cfloat", "complex32", "qint8", "quint8", "qint32", "float8_e4m3fn", "float8_e5m2"}


def _raw_dtype(name, big_endian=False):
    return np.dtype(_DTYPES[name]).newbyteorder(">" if big_endian else "<")


class _StorageType:
    """Marker returned for ``torch.<Kind>Storage`` globals (never instantiated as torch)."""

    def __init__(self, qualname, dtype):
        self.qualname, self.dtype = qualname, dtype  # dtype None: unsupported kind

    def __repr__(self):
        return f"<storage type {self.qualname}>"


class _Storage:
    """Raw bytes of one torch storage plus the dtype they were saved with."""

    def __init__(self, key, dtype, numel, data=None, big_endian=False, parent=None, offset=0):
        self.key, self.dtype, self.numel = key, dtype, numel
        self.data, self.big_endian = data, big_endian
        self.parent, self.offset = parent, offset  # legacy storage views (element offset)
        self._cache = {}

    def array(self, dtype=None):
        """The storage as a flat native-order array of ``dtype`` (default: its own)."""
        dtype = dtype or self.dtype
        if self.data is None and self.parent is not None and self.parent.data is not None:
            itemsize = _raw_dtype(self.dtype).itemsize
            start, stop = self.offset * itemsize, (self.offset + self.numel) * itemsize
            if stop > len(self.parent.data):
                raise _Corrupt(f"storage view {self.key!r} runs past its parent's end")
            self.data = self.parent.data[start:stop]
        if self.data is None:
            raise _Corrupt(f"storage {self.key!r} has no data")
        if dtype not in self._cache:
            raw = _raw_dtype(dtype, self.big_endian)
            if len(self.data) % raw.itemsize:
                raise _Corrupt(f"storage {self.key!r} ({len(self.data)} bytes) cannot hold {dtype}")
            flat = np.frombuffer(self.data, dtype=raw).astype(raw.newbyteorder("="))
            if dtype == "bfloat16":  # bf16 is the top half of a float32
                flat = (flat.astype(np.uint32) << 16).view(np.float32)
            self._cache[dtype] = flat
        return self._cache[dtype]


class _PendingTensor:
    """A tensor whose storage bytes may not be read yet (legacy format stores them last)."""

    def __init__(self, storage, offset, size, stride, dtype=None):
        self.storage, self.offset, self.dtype = storage, int(offset), dtype
        self.size, self.stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)

    def materialize(self):
        shape, stride, offset = self.size, self.stride, self.offset
        if len(shape) != len(stride) or any(n < 0 for n in shape) or offset < 0:
            raise _Corrupt(f"tensor geometry size={shape} stride={stride} offset={offset} is invalid")
        flat = self.storage.array(self.dtype)
        if 0 in shape:
            return np.empty(shape, dtype=flat.dtype)
        if np.prod(shape, dtype=float) > max(64 * flat.size, 2 ** 24):  # absurd expand()
            raise _Corrupt(f"tensor of size {shape} from {flat.size} stored elements")
        last = offset + sum((n - 1) * s for n, s in zip(shape, stride))
        if min(stride, default=0) < 0 or last >= flat.size:
            raise _Corrupt(f"tensor size={shape} stride={stride} offset={offset} runs past the end "
                           f"of storage {self.storage.key!r} ({flat.size} elements)")
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=shape, strides=[s * flat.itemsize for s in stride], writeable=False)
        return view.copy(order="C")


# ------------------------------------------------------------------ placeholders
class _Placeholder:
    """Inert stand-in for a global that is never imported: it only records its data."""

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
    if isinstance(value, _Placeholder):
        return value._qualname
    if isinstance(value, type) and issubclass(value, _Placeholder):
        return f"class {value._qualname}"
    return None


# ---------------------------------------------------------- whitelisted callables
def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """torch._utils._rebuild_tensor[_v2]; requires_grad, hooks and metadata are dropped."""
    if not isinstance(storage, _Storage):
        raise _Corrupt(f"tensor rebuilt from {type(storage).__name__}, not a storage")
    return _PendingTensor(storage, int(storage_offset), size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, hooks, dtype,
                       metadata=None):
    """torch._utils._rebuild_tensor_v3: an untyped storage viewed as ``dtype``."""
    tensor = _rebuild_tensor(storage, storage_offset, size, stride)
    name = str(dtype).replace("torch.", "")
    tensor.dtype = _DTYPE_ALIASES.get(name, name)
    if tensor.dtype not in _DTYPES:
        raise _Corrupt(f"tensor dtype {dtype} has no numpy equivalent")
    return tensor


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    """torch._utils._rebuild_parameter[_with_state]: a Parameter is just its data."""
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    """torch._tensor._rebuild_from_type_v2: rebuild with ``func``; subclass and state dropped."""
    if not any(func is f for f in _REBUILDERS) and not (isinstance(func, type) and issubclass(func, _Placeholder)):
        raise _Corrupt(f"unexpected tensor rebuild function {func!r}")
    return func(*args)


_REBUILDERS = (_rebuild_tensor, _rebuild_tensor_v3, _rebuild_parameter)


def _codecs_encode(text, encoding="utf-8"):
    """_codecs.encode as used by protocol-2 pickles of bytes: latin1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def _safe_bytes(kind):
    def build(*args):
        if args and not isinstance(args[0], (str, bytes, bytearray)):
            raise _Corrupt(f"{kind.__name__}() called with {type(args[0]).__name__}")
        return kind(*args)
    return build


def _torch_size(dims=()):
    return tuple(int(d) for d in dims)


def _torch_device(kind, index=None):
    return str(kind) if index is None else f"{kind}:{index}"


class _NumpyDtype:
    """numpy.dtype reconstruction restricted to plain numeric, bool and string dtypes."""

    def __init__(self, spec, align=False, copy=False):
        self.spec, self.byteorder = spec, "="

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) < 5 or any(s is not None for s in state[2:5]):
            raise _Corrupt(f"unsupported numpy dtype {self.spec!r} (structured or sub-array)")
        self.byteorder = state[1]

    def resolve(self):
        try:
            dtype = np.dtype(self.spec if isinstance(self.spec, str) else None)
        except TypeError:
            dtype = np.dtype("O")
        if not isinstance(self.spec, str) or dtype.kind not in "biufcSU":
            raise _Corrupt(f"unsupported numpy dtype {self.spec!r}")
        return dtype.newbyteorder(self.byteorder) if self.byteorder in "<>" else dtype


def _numpy_scalar(dtype, data):
    if not isinstance(dtype, _NumpyDtype) or not isinstance(data, bytes):
        raise _Corrupt("unsupported numpy scalar")
    return np.frombuffer(data, dtype=dtype.resolve(), count=1)[0]


class _NumpyArray:
    """numpy.core.multiarray._reconstruct result; filled by __setstate__ (pickle BUILD)."""

    def __init__(self, cls=None, shape=(0,), typecode=b"b"):
        if cls is not _NDARRAY:
            raise _Corrupt("numpy _reconstruct of something other than numpy.ndarray")
        self.value = None

    def __setstate__(self, state):
        if len(state) == 5:
            state = state[1:]
        shape, dtype, fortran, raw = state
        self.value = _numpy_from_bytes(raw, dtype, shape, "F" if fortran else "C")


def _numpy_from_bytes(raw, dtype, shape, order="C"):
    if not isinstance(dtype, _NumpyDtype) or not isinstance(raw, (bytes, bytearray)):
        raise _Corrupt("unsupported numpy array payload (object arrays are refused)")
    shape = _torch_size(shape)
    flat = np.frombuffer(raw, dtype=dtype.resolve(), count=int(np.prod(shape)))
    return flat.reshape(shape, order=order).copy(order="C")


_NDARRAY = object()  # marker for the numpy.ndarray global, never callable
_SAFE_BUILTINS = {"set": set, "frozenset": frozenset, "slice": slice, "complex": complex,
                  "range": range, "object": object, "int": int, "float": float, "str": str,
                  "bool": bool, "list": list, "dict": dict, "tuple": tuple,
                  "bytes": _safe_bytes(bytes), "bytearray": _safe_bytes(bytearray)}
_ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
            ("_codecs", "encode"): _codecs_encode,
            ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
            ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
            ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
            ("torch", "Size"): _torch_size, ("torch", "device"): _torch_device,
            ("numpy", "dtype"): _NumpyDtype, ("numpy", "ndarray"): _NDARRAY}
for _mod in ("numpy.core", "numpy._core"):
    _ALLOWED[(_mod + ".multiarray", "scalar")] = _numpy_scalar
    _ALLOWED[(_mod + ".multiarray", "_reconstruct")] = _NumpyArray
    _ALLOWED[(_mod + ".numeric", "_frombuffer")] = _numpy_from_bytes
_ALLOWED.update({("builtins", k): v for k, v in _SAFE_BUILTINS.items()})
_DANGEROUS = {"os", "posix", "nt", "posixpath", "ntpath", "subprocess", "sys", "shutil", "socket",
              "importlib", "runpy", "pickle", "_pickle", "marshal", "ctypes", "pty", "code", "codeop",
              "webbrowser", "multiprocessing", "threading", "_thread", "types", "functools",
              "operator", "_operator", "builtins", "io", "_io", "tempfile", "pathlib", "signal",
              "asyncio", "platform", "glob", "inspect", "gc", "pdb", "bdb", "timeit", "trace", "ssl",
              "http", "urllib", "ftplib", "smtplib", "telnetlib", "copyreg", "zipimport", "pkgutil",
              "imp", "site", "sysconfig", "distutils", "setuptools", "pip", "cProfile", "profile",
              "dill", "cloudpickle", "commands", "popen2", "_posixsubprocess", "_winapi", "msvcrt"}
_MODULE_ALIASES = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # protocol-2 spellings


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves globals only through the whitelist above."""

    def __init__(self, file, path, placeholders, storage_for):
        super().__init__(file)
        self._path, self._placeholders, self._storage_for = path, placeholders, storage_for

    def find_class(self, module, name):
        module = _MODULE_ALIASES.get(module, module)
        qualname = f"{module}.{name}"
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if (module, name) == ("copyreg", "_reconstructor"):
            return self._reconstructor
        if module in ("torch", "torch.storage") and name in _STORAGE_CLASSES:
            return _StorageType(qualname, _STORAGE_CLASSES[name])
        if module in ("torch", "torch.storage") and name.endswith("Storage"):
            return _StorageType(qualname, None)
        if module == "torch" and name in _TORCH_DTYPE_NAMES:
            return qualname  # torch.float32 & co. become plain strings
        if module.split(".")[0] in _DANGEROUS or name.startswith("__"):
            raise UnsafeCheckpointError(
                f"{self._path} asks to load the global '{qualname}', which could execute arbitrary "
                "code; refusing to unpickle it. Only load checkpoints from sources you trust; to keep "
                "using a trusted file, load it once with torch and re-save just the weights with "
                "torch.save(model.state_dict(), path)")
        if qualname not in self._placeholders:
            self._placeholders[qualname] = type(name.rsplit(".", 1)[-1], (_Placeholder,),
                                                {"_qualname": qualname})
        return self._placeholders[qualname]

    def _reconstructor(self, cls, base, state=None):
        """copyreg._reconstructor (protocol 0/1 objects), for placeholder classes only."""
        if not (isinstance(cls, type) and issubclass(cls, _Placeholder)):
            raise _Corrupt(f"copyreg._reconstructor called for {cls!r}")
        return cls(state) if state is not None else cls()

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid:
            raise _Corrupt(f"unexpected persistent id {pid!r}")
        tag = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if tag == "module" and len(pid) >= 2:  # legacy: whole nn.Module class with its source
            return pid[1]
        if tag != "storage" or len(pid) not in (5, 6) or not isinstance(pid[1], _StorageType):
            raise _Corrupt(f"unexpected persistent id {pid[:3]!r}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if storage_type.dtype is None:
            raise _Corrupt(f"storage type {storage_type.qualname} (quantized or exotic dtype) "
                           "is not supported")
        storage = self._storage_for(key, storage_type.dtype, numel)
        view = pid[5] if len(pid) == 6 else None
        if view is not None:  # legacy storage view: (view_key, element offset, element count)
            _, offset, size = view
            storage = _Storage(f"{key}[{offset}:{offset + size}]", storage.dtype, int(size),
                               parent=storage, offset=int(offset))
        return storage


# ------------------------------------------------------------------------ loading
def _unpickle(file, path, placeholders, storage_for=None, what="data.pkl"):
    def no_storage(key, dtype, numel):
        raise _Corrupt(f"{what} references tensor storage {key!r} where none is allowed")
    start = file.tell()
    try:  # structural pass first: bad opcodes or lengths fail here, before any allocation
        for count, (op, arg, _) in enumerate(pickletools.genops(file)):
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and arg > count:
                raise ValueError(f"memo index {arg} at opcode {count}")  # would allocate the memo
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
    except EOFError:
        raise CheckpointFormatError(f"{path} is truncated: {what} ends early; {_FIX}") from None
    except Exception as exc:  # malformed opcodes, bad arguments to whitelisted callables ...
        raise CheckpointFormatError(
            f"{path} is corrupt: cannot unpickle {what} ({type(exc).__name__}: {exc}); {_FIX}") from None


def _load_zip(path, placeholders):
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise CheckpointFormatError(
            f"{path} is truncated or corrupt: it starts like a torch.save zip archive but its "
            f"directory at the end of the file is missing or damaged ({exc}); {_FIX}") from None
    with archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pickles:
            raise CheckpointFormatError(
                f"{path} is not a PyTorch checkpoint: it is a zip archive without a "
                f"'<folder>/data.pkl' entry (found {names[:5]}); {_FIX}")
        prefix = pickles[0][: -len("data.pkl")]
        big_endian = (prefix + "byteorder" in names
                      and archive.read(prefix + "byteorder").strip() == b"big")
        storages = {}

        def storage_for(key, dtype, numel):
            if key not in storages:
                entry = f"{prefix}data/{key}"
                if entry not in names:
                    raise _Corrupt(f"tensor storage '{entry}' is missing from the archive")
                data = archive.read(entry)
                nbytes = numel * _raw_dtype(dtype).itemsize
                if len(data) < nbytes:
                    raise _Corrupt(f"'{entry}' holds {len(data)} bytes, {nbytes} expected")
                storages[key] = _Storage(key, dtype, numel, data[:nbytes], big_endian)
            return storages[key]

        try:  # read data.pkl whole: a corrupt length then cannot trigger a huge read
            return _unpickle(io.BytesIO(archive.read(pickles[0])), path, placeholders, storage_for)
        except (zipfile.BadZipFile, OSError) as exc:  # CRC mismatch, bad local header ...
            raise CheckpointFormatError(f"{path} is corrupt: {exc}; {_FIX}") from None


def _load_legacy(path, placeholders):
    with open(path, "rb") as raw:
        content = raw.read()  # in memory: storages become zero-copy slices of it
    view = memoryview(content)
    with io.BytesIO(content) as file:
        try:
            magic = _unpickle(file, path, placeholders, what="the header")
        except CheckpointFormatError as exc:
            if isinstance(exc, UnsafeCheckpointError):
                raise
            raise CheckpointFormatError(
                f"{path} is not a PyTorch checkpoint: it is neither a zip archive (torch.save "
                f"format) nor a legacy torch pickle stream; {_FIX}") from None
        if magic != _LEGACY_MAGIC:
            raise CheckpointFormatError(f"{path} is not a PyTorch checkpoint: wrong magic number "
                                        f"{magic!r:.40}; {_FIX}")
        version = _unpickle(file, path, placeholders, what="the header")
        if version != _LEGACY_PROTOCOL:
            raise CheckpointFormatError(f"{path} uses unsupported legacy protocol {version!r}; "
                                        f"load it with torch and re-save it with torch.save")
        _unpickle(file, path, placeholders, what="the header")  # sys_info: data is always LE
        storages = {}

        def storage_for(key, dtype, numel):
            return storages.setdefault(key, _Storage(key, dtype, numel))

        obj = _unpickle(file, path, placeholders, storage_for, what="the main pickle")
        keys = _unpickle(file, path, placeholders, what="the storage key list")
        if not isinstance(keys, list):
            raise CheckpointFormatError(f"{path} is corrupt: the storage key list is a "
                                        f"{type(keys).__name__}; {_FIX}")
        for key in keys:
            head = file.read(8)
            if len(head) < 8:
                raise CheckpointFormatError(f"{path} is truncated: storage {key!r} is missing; {_FIX}")
            storage = storages.get(str(key))
            if storage is None:
                raise CheckpointFormatError(f"{path} is corrupt: storage {key!r} is listed but "
                                            f"never used; {_FIX}")
            count = struct.unpack("<q", head)[0]
            if count != storage.numel:
                raise CheckpointFormatError(f"{path} is corrupt: storage {key!r} holds {count} "
                                            f"elements, {storage.numel} expected; {_FIX}")
            nbytes, start = count * _raw_dtype(storage.dtype).itemsize, file.tell()
            storage.data = view[start:start + nbytes]
            file.seek(start + len(storage.data))
            if len(storage.data) < nbytes:
                raise CheckpointFormatError(f"{path} is truncated: storage {key!r} has "
                                            f"{len(storage.data)} of {nbytes} bytes; {_FIX}")
        for storage in storages.values():
            if storage.data is None:
                raise CheckpointFormatError(f"{path} is corrupt: storage {storage.key!r} has no "
                                            f"data; {_FIX}")
        return obj


def _finalize(obj, memo, path):
    """Replace pending tensors and numpy stubs by arrays, in place where possible."""
    if id(obj) in memo:
        return memo[id(obj)]
    memo[id(obj)] = obj
    result = obj
    try:
        if isinstance(obj, _PendingTensor):
            result = obj.materialize()
        elif isinstance(obj, _Storage):  # a bare storage saved on its own
            result = obj.array().copy()
        elif isinstance(obj, _NumpyArray):
            result = obj.value
        elif isinstance(obj, _NumpyDtype):
            result = obj.resolve()
        elif isinstance(obj, dict):
            for key, value in list(obj.items()):
                obj[key] = _finalize(value, memo, path)
        elif isinstance(obj, list):
            obj[:] = [_finalize(v, memo, path) for v in obj]
        elif type(obj) is tuple:
            result = tuple(_finalize(v, memo, path) for v in obj)
        elif isinstance(obj, _Placeholder):
            obj.args = _finalize(obj.args, memo, path)
            obj.state = _finalize(obj.state, memo, path)
            _finalize(obj.items, memo, path)
            _finalize(obj.list, memo, path)
    except (_Corrupt, ValueError, TypeError, MemoryError) as exc:
        raise CheckpointFormatError(f"{path} is corrupt: {exc}; {_FIX}") from None
    memo[id(obj)] = result
    return result


def _load(path):
    path = os.fspath(path)
    with open(path, "rb") as file:
        head = file.read(4)
    if not head:
        raise CheckpointFormatError(f"{path} is not a PyTorch checkpoint: the file is empty; {_FIX}")
    placeholders = {}
    if head.startswith(b"PK"):
        obj, fmt = _load_zip(path, placeholders), "zip"
    elif tarfile.is_tarfile(path):
        raise CheckpointFormatError(
            f"{path} uses the tar-based format of torch < 0.4, which is not supported; load it with "
            "an old torch and re-save it with torch.save(model.state_dict(), path)")
    else:
        obj, fmt = _load_legacy(path, placeholders), "legacy"
    return _finalize(obj, {}, path), fmt


def load_pth(path):
    """Return the unpickled structure with every torch tensor replaced by a numpy array.

    Arrays are C-contiguous copies with the tensor's dtype (bfloat16 -> float32),
    shape, strides and storage offset honoured.  Unknown globals come back as inert
    placeholder objects; dangerous ones raise :class:`UnsafeCheckpointError`.
    """
    return _load(path)[0]


def _extract(obj, path_hint=""):
    where = f"{path_hint}: " if path_hint else ""

    def is_candidate(value):
        return (isinstance(value, Mapping) and value
                and all(isinstance(k, str) for k in value)
                and any(isinstance(v, np.ndarray) for v in value.values()))

    container, state = None, None
    if isinstance(obj, Mapping) and obj and all(isinstance(v, np.ndarray) for v in obj.values()):
        state = obj
    elif isinstance(obj, Mapping):
        for key in ("state_dict", "model", "module"):
            if key in obj and is_candidate(obj[key]):
                container, state = key, obj[key]
                break
            if key in obj and _describe(obj[key]):
                raise CheckpointFormatError(
                    f"{where}'{key}' holds a pickled {_describe(obj[key])} object, not a state "
                    "dict; re-save the checkpoint with torch.save(model.state_dict(), path)")
        if state is None and is_candidate(obj):
            state = obj
    if state is None:
        found = (f"top-level keys {list(obj)[:20]}" if isinstance(obj, Mapping)
                 else f"a {_describe(obj) or type(obj).__name__}")
        raise CheckpointFormatError(
            f"{where}no state dict of tensors found (looked for the object itself and its "
            f"'state_dict', 'model', 'module' entries; found {found}); re-save the checkpoint "
            "with torch.save(model.state_dict(), path)")
    for key, value in state.items():
        if not isinstance(value, np.ndarray):
            kind = _describe(value) or type(value).__name__
            raise CheckpointFormatError(
                f"{where}state dict entry '{key}' holds a {kind}, not a tensor; re-save the "
                "checkpoint with torch.save(model.state_dict(), path)")
    prefix = "module." if all(k.startswith("module.") for k in state) else None
    result = collections.OrderedDict(
        (k[len(prefix):] if prefix else k, v) for k, v in state.items())
    return result, container, prefix, state


def extract_state_dict(obj, path_hint=""):
    """Find the ``str -> np.ndarray`` state dict inside a loaded checkpoint.

    Takes ``obj`` itself when all its values are arrays, else ``obj['state_dict']``,
    ``obj['model']`` or ``obj['module']`` (first tensor mapping wins), else ``obj``
    when it holds some arrays.  A ``module.`` prefix carried by every key is
    stripped.  Raises :class:`CheckpointFormatError` when no state dict is found
    or an entry is not an array (integer buffers such as ``num_batches_tracked``
    are kept).
    """
    return _extract(obj, path_hint)[0]


def _foreign_objects(obj, skip, path, found, seen):
    """Describe placeholder objects reachable from ``obj``, not descending into ``skip``."""
    if obj is skip or id(obj) in seen:
        return
    seen.add(id(obj))
    description = _describe(obj)
    if description:
        found.append(f"{path or '<root>'}: {description}")
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            _foreign_objects(value, skip, f"{path}.{key}" if path else str(key), found, seen)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _foreign_objects(value, skip, f"{path}[{i}]", found, seen)


def read_state_dict(path):
    """``load_pth`` + ``extract_state_dict``; returns ``(state_dict, info)``.

    ``info`` holds ``format`` ('zip' or 'legacy'), ``container_key``
    ('state_dict', 'model', 'module' or None), ``stripped_prefix`` ('module.' or
    None), ``ignored_objects`` (placeholders found outside the state dict, as
    ``'<key path>: <qualified type>'``) and ``other_keys`` (the other top-level keys).
    """
    obj, fmt = _load(path)
    state, container, prefix, raw = _extract(obj, os.fspath(path))
    ignored = []
    _foreign_objects(obj, raw, "", ignored, set())
    other = [k for k in obj if k != container] if container is not None else []
    return state, {"format": fmt, "container_key": container, "stripped_prefix": prefix,
                   "ignored_objects": ignored, "other_keys": other}

"""Official pretrained weights: download, verify, convert, cache (``create_model(name, pretrained=True)``).

* :mod:`.cache` -- the official files on disk: ``$CONVATTN_HOME``, ``CONVATTN_WEIGHTS_MIRROR``, ``CONVATTN_OFFLINE``,
  hash checks, one download across processes, and the errors that say what to do.
* :mod:`.pretrained` -- what ``create_model`` calls: the converted, cached ``.ckpt`` for ``pretrained=True``, and an
  official ``.pth`` converted on the fly for ``pretrained='file.pth'``.

The hub sits above ``models`` (it builds networks through the converter); ``models.builder`` imports it lazily,
inside ``create_model`` (see tests/test_layering.py).
"""
from .cache import (ENV_HOME, ENV_MIRROR, ENV_OFFLINE, WeightsError, WeightsHashError, WeightsManualError,
                    WeightsNotReleasedError, WeightsUnavailableError, cache_home, download_urls, fetch_official,
                    is_offline, official_path, released_entry)
from .pretrained import converted_path, load_official_file, official_checkpoint

__all__ = ["ENV_HOME", "ENV_MIRROR", "ENV_OFFLINE", "WeightsError", "WeightsHashError", "WeightsManualError",
           "WeightsNotReleasedError", "WeightsUnavailableError", "cache_home", "download_urls", "fetch_official",
           "is_offline", "official_path", "released_entry", "converted_path", "load_official_file",
           "official_checkpoint"]

"""The singer-sdk names this target uses that the SDK does not export publicly: the one place
they are imported (tests/test_sdk_private_names.py keeps it so), each with why.

- `BaseBatchFileEncoding`, `StorageTarget`: a BATCH message's encoding and the storage of its
  manifest's files, which the target reads a block of lines at a time (`batchfiles.py`) as the
  SDK's own `process_batch_files` does; singer-sdk 0.54 has them in `singer_sdk.helpers._batch`
  only.
"""

from __future__ import annotations

from singer_sdk.helpers._batch import BaseBatchFileEncoding, StorageTarget

__all__ = ["BaseBatchFileEncoding", "StorageTarget"]

"""The singer-sdk names this tap uses that the SDK does not export publicly: the one place they
are imported (tests/test_sdk_private_names.py keeps it so), each with why.

- `BatchFileFormat`, `BaseBatchFileEncoding`, `BatchConfig`: the BATCH message's encoding and
  configuration, which the fast BATCH writer (`fastpath.py`) reads as the SDK's own batcher
  does; singer-sdk 0.54 has them in `singer_sdk.helpers._batch` only.
"""

from __future__ import annotations

from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig, BatchFileFormat

__all__ = ["BaseBatchFileEncoding", "BatchConfig", "BatchFileFormat"]

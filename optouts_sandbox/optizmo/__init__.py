"""Optizmo emulators: the SUPPRESS API with its pre-signed storage, and the collect app.

See docs/providers/optizmo.md. Modules by concern: `lists` (the opt-out lists), `suppress`
(the SUPPRESS routes), `storage` (pre-signed download, activity export and upload URLs),
`download_file` (the CSV/ZIP a download serves), `upload_file` (reading an upload),
`activity` (download activity and its export), `collect` (the collect app), `auth` (what
both apps share).
"""

from optouts_sandbox.optizmo.collect import OptizmoCollectEmulator
from optouts_sandbox.optizmo.suppress import OptizmoEmulator

__all__ = ["OptizmoCollectEmulator", "OptizmoEmulator"]

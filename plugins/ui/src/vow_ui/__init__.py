"""vow-ui: ``vow ui``, a local web console for a vow store.

The runs list, each run's promise tree as a timeline, the images of an image run, and the
actions (resolve or reject an outside promise, cancel or resume a run), updated live.
:func:`create_app` builds the ASGI app; :mod:`vow_ui.plugin` adds the ``vow ui`` command.
"""

from vow_ui.app import create_app

__all__ = ["create_app"]

"""vow-push: the ``push`` notification channel for vow (FCM, APNs, simulated)."""

from vow_push.options import ApnsOptions, FcmOptions, PushOptions
from vow_push.plugin import build_push

__all__ = ["ApnsOptions", "FcmOptions", "PushOptions", "build_push"]

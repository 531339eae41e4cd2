"""vow-email: the ``email`` notification channel for vow (SMTP, Resend, simulated)."""

from vow_email.channel import EmailChannel, build_email_channel, choose_transport
from vow_email.mime import message_id_for
from vow_email.options import EmailOptions, ResendOptions, SmtpOptions

__all__ = ["EmailChannel", "EmailOptions", "ResendOptions", "SmtpOptions", "build_email_channel",
           "choose_transport", "message_id_for"]

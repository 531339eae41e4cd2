"""vow-sms: the ``sms`` channel for vow (Twilio Programmable Messaging, or simulated)."""

from vow_sms.channel import SmsChannel, build_sms_channel, validate_message
from vow_sms.options import SmsOptions
from vow_sms.segments import count_segments
from vow_sms.simulated import SimulatedTransport
from vow_sms.twilio import TwilioTransport, twilio_error

__all__ = [
    "SimulatedTransport",
    "SmsChannel",
    "SmsOptions",
    "TwilioTransport",
    "build_sms_channel",
    "count_segments",
    "twilio_error",
    "validate_message",
]

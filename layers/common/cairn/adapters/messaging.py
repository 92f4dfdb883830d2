"""Delivery: raw MIME email through SES v2 and SMS through SNS."""

from __future__ import annotations

from botocore.exceptions import ClientError

from cairn.adapters.aws import client


class ProviderThrottled(Exception):
    """The provider's per-second rate was hit: a transient error the state machine retries."""


class ProviderRejected(Exception):
    """The provider refused this message for good (e.g. a rejected address)."""


THROTTLE_CODES = {"TooManyRequestsException", "Throttling", "ThrottlingException", "ThrottledException"}


def send_email(raw: bytes, *, sender: str, recipient: str, configuration_set: str, message_id: str) -> str:
    args: dict[str, object] = {
        "FromEmailAddress": sender,
        "Destination": {"ToAddresses": [recipient]},
        "Content": {"Raw": {"Data": raw}},
        "EmailTags": [{"Name": "cairn-message-id", "Value": message_id}],
    }
    if configuration_set:
        args["ConfigurationSetName"] = configuration_set
    try:
        response = client("sesv2").send_email(**args)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in THROTTLE_CODES:
            raise ProviderThrottled(code) from exc
        if code in ("MessageRejected", "AccountSuspendedException", "MailFromDomainNotVerifiedException"):
            raise ProviderRejected(code) from exc
        raise
    return str(response["MessageId"])


def send_sms(body: str, *, phone: str, transactional: bool, sender_id: str | None = None) -> str:
    attributes = {
        "AWS.SNS.SMS.SMSType": {
            "DataType": "String",
            "StringValue": "Transactional" if transactional else "Promotional",
        }
    }
    if sender_id:
        attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": sender_id}
    try:
        response = client("sns").publish(PhoneNumber=phone, Message=body, MessageAttributes=attributes)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in THROTTLE_CODES:
            raise ProviderThrottled(code) from exc
        if code in ("InvalidParameter", "OptedOut"):
            raise ProviderRejected(code) from exc
        raise
    return str(response["MessageId"])

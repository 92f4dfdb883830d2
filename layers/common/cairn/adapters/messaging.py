"""Delivery: raw MIME email through SES v2 and SMS through SNS, and the providers' own lists.

Errors are typed by what the caller must do:

- :class:`ProviderThrottled`: the per-second rate (SES ``Maximum sending rate exceeded``, SNS
  ``Throttled``) — retry in a moment, with jitter (the state machine's ``TransientError`` Retry);
- :class:`ProviderQuotaExhausted`: SES's rolling 24-hour sending quota is used up, or SES paused
  sending for the account — hold the message for a long while (never drop it);
- :class:`ProviderRejected`: this message will never be accepted (an unverified sender, a bad number).

SES reports both quotas as one throttling error; :func:`daily_quota_exhausted` tells them apart from
the account's own figures (``GetAccount``), not from the error's wording.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from cairn.adapters.aws import client
from cairn.adapters.tables import ContactItem

logger = Logger(child=True)

MESSAGE_ID_TAG = "cairn-message-id"
WORKFLOW_TAG = "cairn-workflow"


class ProviderThrottled(Exception):
    """The provider's per-second rate was hit: a transient error the state machine retries."""


class ProviderQuotaExhausted(Exception):
    """SES's daily quota is used up (or sending is paused): hold the message, try again later."""


class ProviderRejected(Exception):
    """The provider refused this message for good (e.g. a rejected address)."""


THROTTLE_CODES = {"TooManyRequestsException", "Throttling", "ThrottlingException", "ThrottledException"}
SES_PAUSED_CODES = {"SendingPausedException", "LimitExceededException"}
SES_REJECTED_CODES = {
    "MessageRejected",
    "AccountSuspendedException",
    "MailFromDomainNotVerifiedException",
    "BadRequestException",
    "NotFoundException",
}
SNS_REJECTED_CODES = {"InvalidParameter", "InvalidParameterValue", "OptedOut"}


def send_email(
    raw: bytes,
    *,
    sender: str,
    recipient: str,
    configuration_set: str,
    message_id: str,
    tags: Mapping[str, str] = {},  # read only
) -> str:
    """Send a raw MIME message; returns SES's message id. Cairn's message id goes in the email tags, so
    the configuration set's events (through EventBridge) name it."""
    email_tags = [{"Name": MESSAGE_ID_TAG, "Value": message_id}]
    email_tags += [{"Name": name, "Value": value} for name, value in tags.items() if value]
    args: dict[str, object] = {
        "FromEmailAddress": sender,
        "Destination": {"ToAddresses": [recipient]},
        "Content": {"Raw": {"Data": raw}},
        "EmailTags": email_tags,
    }
    if configuration_set:
        args["ConfigurationSetName"] = configuration_set
    try:
        response = client("sesv2").send_email(**args)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in THROTTLE_CODES:
            if daily_quota_exhausted():
                raise ProviderQuotaExhausted("SES daily sending quota") from exc
            raise ProviderThrottled(code) from exc
        if code in SES_PAUSED_CODES:
            raise ProviderQuotaExhausted(code) from exc
        if code in SES_REJECTED_CODES:
            raise ProviderRejected(code) from exc
        raise
    return str(response["MessageId"])


def daily_quota_exhausted() -> bool:
    """Whether SES's rolling 24-hour quota is used up (asked only after a throttling error)."""
    try:
        quota: dict[str, Any] = client("sesv2").get_account().get("SendQuota", {})
    except ClientError:  # unknown: treat the throttle as the per-second rate
        return False
    limit = float(quota.get("Max24HourSend", -1))
    return limit >= 0 and float(quota.get("SentLast24Hours", 0)) >= limit


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
        if code in SNS_REJECTED_CODES:
            raise ProviderRejected(code) from exc
        raise
    return str(response["MessageId"])


def sms_opted_out(phone: str) -> bool:
    """Whether the number is on the account's SMS opt-out list (it replied STOP)."""
    response = client("sns").check_if_phone_number_is_opted_out(phoneNumber=phone)
    return bool(response.get("isOptedOut"))


def remove_from_account_suppression(email: str) -> bool:
    """Take an address off SES's account-level suppression list (a contact who re-confirmed).
    Returns False if it was not on the list."""
    try:
        client("sesv2").delete_suppressed_destination(EmailAddress=email)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NotFoundException":
            return False
        raise
    return True


class SmsReceipts:
    """Which message an SNS message id belongs to. SNS's delivery status logs name only its own id
    (and the number), so each SMS sent leaves a small pointer in the contacts table
    (``cid = "sms#<SNS id>"``, ``sk = "receipt"``) that expires after 30 days (the table's TTL).
    The contacts stream passes profiles only, so these items never reach the reactor."""

    TTL = timedelta(days=30)

    @staticmethod
    def _key(provider_id: str) -> dict[str, Any]:
        return {"cid": {"S": f"sms#{provider_id}"}, "sk": {"S": "receipt"}}

    def remember(self, provider_id: str, cid: str, message_id: str, *, now: datetime) -> None:
        client("dynamodb").put_item(
            TableName=str(ContactItem.Meta.table_name),
            Item={
                **self._key(provider_id),
                "contact": {"S": cid},
                "messageId": {"S": message_id},
                "expiresAt": {"N": str(int((now + self.TTL).timestamp()))},
            },
        )

    def find(self, provider_id: str) -> tuple[str, str] | None:
        """(cid, Cairn message id) of an SNS message id, or None."""
        item = (
            client("dynamodb")
            .get_item(
                TableName=str(ContactItem.Meta.table_name), Key=self._key(provider_id), ConsistentRead=True
            )
            .get("Item")
        )
        if not item:
            return None
        return item["contact"]["S"], item["messageId"]["S"]

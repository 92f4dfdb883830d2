"""The canonical journeys of workflows/ end to end in local mode: the real handlers, the real generated ASL
and the virtual clock. Each test tells one contact's story the way a marketer would check it.

One local stack serves the whole module (starting one takes seconds): each story uses its own contacts and
reads times relative to when it began, and no story may leave a function error behind."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from tests.e2e.conftest import ROOT, START
from tests.e2e.workflow_helpers import (
    DAY,
    HOUR,
    at,
    contact,
    enrollments,
    morning,
    ok,
    phone_of,
    profile,
    runs,
    sent,
    steps_sent,
    track,
    user_in_variant,
)

from cairn.domain import timing
from cairn.local.runtime import LocalCairn

pytestmark = pytest.mark.e2e
CART = {"A": 45, "B": 45, "holdout": 10}


@pytest.fixture(scope="module")
def shared() -> Iterator[LocalCairn]:
    with LocalCairn(ROOT, start_time=START) as runtime:
        yield runtime
        assert runtime.streams.failed == []


@pytest.fixture
def local(shared: LocalCairn) -> Iterator[LocalCairn]:
    errors = len(shared.host.errors)
    yield shared
    shared.settle()
    assert shared.host.errors[errors:] == []


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def ended(local: LocalCairn, workflow_id: str, user_id: str) -> str:
    [run] = runs(local, workflow_id, user_id)
    assert run["status"] == "SUCCEEDED", run
    return str(run["path"][-1])


# ---------------------------------------------------------------- abandoned cart


def test_no_click_on_the_cart_reminder_brings_the_sms_discount(local: LocalCairn) -> None:
    t0 = morning(local)
    ann = user_in_variant("abandoned-cart", CART, "A", "ann")
    contact(local, ann, sms=True)
    track(local, ann, "cart_abandoned", cart_value=80, item_count=2)
    local.advance(seconds=HOUR - 1)
    assert sent(local, ann) == [], "nothing before the hour is up"

    local.advance(seconds=1)
    [reminder] = sent(local, ann, "abandoned-cart")
    assert reminder["stepId"] == "reminder-a"
    assert "€80.00" in reminder["text"]
    assert at(reminder) == t0 + timedelta(hours=1)

    local.advance(seconds=DAY)
    assert steps_sent(local, ann, "abandoned-cart") == ["reminder-a", "discount-sms"]
    sms = sent(local, ann, "abandoned-cart")[-1]
    assert sms["to"] == phone_of(ann) and "CART10" in sms["body"]
    assert ended(local, "abandoned-cart", ann) == "Completed"
    [entry] = enrollments(local, ann, "abandoned-cart")
    assert (entry["status"], entry["variant"]) == ("completed", "A")


def test_a_click_on_the_reminder_means_no_discount(local: LocalCairn) -> None:
    bob = user_in_variant("abandoned-cart", CART, "B", "bob")
    contact(local, bob, sms=True)
    track(local, bob, "cart_abandoned", cart_value=35)
    local.advance(seconds=HOUR)
    [reminder] = sent(local, bob)
    assert reminder["stepId"] == "reminder-b"
    local.advance(seconds=3 * HOUR)
    local.feedback(reminder["id"], "click")  # what SES reports for the contact's click
    local.advance(seconds=2 * DAY)
    assert steps_sent(local, bob, "abandoned-cart") == ["reminder-b"]
    path = runs(local, "abandoned-cart", bob)[0]["path"]
    assert "discount-sms" not in path and path[-1] == "Completed"


def test_an_order_while_waiting_converts_at_once_and_nothing_more_is_sent(local: LocalCairn) -> None:
    t0 = local.clock.now()
    cara = user_in_variant("abandoned-cart", CART, "A", "cara")
    contact(local, cara, sms=True)
    track(local, cara, "cart_abandoned", cart_value=120)
    local.advance(seconds=20 * 60)
    track(local, cara, "order_completed", total=120)
    local.settle()
    # The run ended as soon as the order arrived: Converted, not an aborted execution
    assert ended(local, "abandoned-cart", cara) == "Converted"
    [entry] = enrollments(local, cara, "abandoned-cart")
    assert (entry["status"], entry["exitReason"]) == ("converted", "goal")
    assert when(entry["exitedAt"]) == t0 + timedelta(minutes=20)
    assert sent(local, cara, "abandoned-cart") == []


def test_an_order_after_the_reminder_ends_the_wait_for_a_click(local: LocalCairn) -> None:
    dan = user_in_variant("abandoned-cart", CART, "B", "dan")
    contact(local, dan, sms=True)
    track(local, dan, "cart_abandoned", cart_value=60)
    local.advance(seconds=2 * HOUR)
    track(local, dan, "order_completed", total=60)
    local.settle()
    assert ended(local, "abandoned-cart", dan) == "Converted"
    assert steps_sent(local, dan, "abandoned-cart") == ["reminder-b"]


def test_the_holdout_gets_nothing_but_its_orders_still_count(local: LocalCairn) -> None:
    held, buyer = (user_in_variant("abandoned-cart", CART, "holdout", p) for p in ("hal", "hank"))
    for user in (held, buyer):
        contact(local, user, sms=True)
        track(local, user, "cart_abandoned", cart_value=50)
    local.advance(seconds=3 * DAY)
    track(local, buyer, "order_completed", total=50)
    local.settle()
    assert sent(local, held, "abandoned-cart") == [] and sent(local, buyer, "abandoned-cart") == []
    assert ended(local, "abandoned-cart", buyer) == "Converted"
    [waiting] = runs(local, "abandoned-cart", held)  # stays, silent, until the goal's window closes
    assert waiting["status"] == "RUNNING" and waiting["path"][-1] == "reminder-test: holdout"
    assert enrollments(local, held, "abandoned-cart")[0]["variant"] == "holdout"


def test_small_carts_and_stale_events_start_nothing(local: LocalCairn) -> None:
    t0 = local.clock.now()
    contact(local, "eli")
    track(local, "eli", "cart_abandoned", cart_value=10)  # where: cart_value >= 20
    track(local, "eli", "cart_abandoned", cart_value=90, timestamp=(t0 - timedelta(days=2)).isoformat())
    local.advance(seconds=2 * DAY)
    assert runs(local, "abandoned-cart", "eli") == []


def test_without_sms_consent_the_discount_comes_by_email(local: LocalCairn) -> None:
    fay = user_in_variant("abandoned-cart", CART, "A", "fay")
    contact(local, fay)
    track(local, fay, "cart_abandoned", cart_value=40)
    local.advance(seconds=2 * DAY)
    assert steps_sent(local, fay, "abandoned-cart") == ["reminder-a", "discount-email"]


# ---------------------------------------------------------------- post-purchase


def test_a_thank_you_with_the_order_then_a_feedback_sms_at_ten_local(local: LocalCairn) -> None:
    t0 = morning(local)
    contact(local, "gus", sms=True, timezone="America/New_York")
    track(
        local,
        "gus",
        "order_completed",
        order_id="T-1001",
        total=189.5,
        products=[{"name": "Summit 2 tent"}],
        related=[{"name": "Footprint groundsheet"}],
    )
    local.settle()
    [thanks] = sent(local, "gus", "post-purchase")
    assert thanks["subject"] == "Thank you for your order T-1001"
    assert "Summit 2 tent" in thanks["text"] and "Footprint groundsheet" in thanks["text"]
    local.advance(seconds=4 * DAY)
    feedback = sent(local, "gus", "post-purchase")[-1]
    assert feedback["channel"] == "sms" and feedback["stepId"] == "feedback-sms"
    # three days on, then 10:00 in New York
    assert at(feedback) == timing.next_time_of_day(
        t0 + timedelta(days=3), time(10), ZoneInfo("America/New_York")
    )


def test_a_review_before_the_feedback_request_converts(local: LocalCairn) -> None:
    contact(local, "hil", sms=True)
    track(local, "hil", "order_completed", total=20)
    local.advance(seconds=DAY)
    track(local, "hil", "review_submitted", stars=5)
    local.settle()
    assert ended(local, "post-purchase", "hil") == "Converted"  # no feedback request will follow
    assert steps_sent(local, "hil", "post-purchase") == ["thank-you"]


# ---------------------------------------------------------------- browse abandonment


def test_a_viewed_product_comes_back_by_email_two_hours_later(local: LocalCairn) -> None:
    contact(local, "ida")
    track(
        local,
        "ida",
        "product_viewed",
        name="Ridge 40 backpack",
        price=149,
        url="https://trailhead.example/ridge-40",
    )
    local.advance(seconds=2 * HOUR)
    [email] = sent(local, "ida", "browse-abandonment")
    assert email["subject"] == "Still thinking about the Ridge 40 backpack?"
    assert "€149.00" in email["html"] and "https://trailhead.example/ridge-40" in email["text"]


def test_back_in_the_shop_within_two_hours_no_reminder(local: LocalCairn) -> None:
    contact(local, "jon")
    track(local, "jon", "product_viewed", name="Boots")
    local.advance(seconds=HOUR)
    track(local, "jon", "cart_updated", items=1)
    local.advance(seconds=DAY)
    assert sent(local, "jon", "browse-abandonment") == []
    assert ended(local, "browse-abandonment", "jon") == "Converted"


# ---------------------------------------------------------------- email engagement (API trigger)


def test_opening_the_launch_email_brings_the_webinar_invitation_at_once(local: LocalCairn) -> None:
    t0 = local.clock.now()
    contact(local, "kim")
    result = ok(
        local.request(
            "POST", "/v1/workflows/email-engagement/enroll", {"userId": "kim"}, key=local.secret_key
        )
    )
    assert result["enrolled"] is True and result["run"] == 1
    local.settle()
    [launch] = sent(local, "kim", "email-engagement")
    assert launch["subject"] == "New: the Summit 2 ultralight tent"
    local.advance(seconds=5 * HOUR)
    local.feedback(launch["id"], "open")
    [_, invite] = sent(local, "kim", "email-engagement")
    assert invite["stepId"] == "webinar-invite"
    assert at(invite) == t0 + timedelta(hours=5)


def test_no_open_in_three_days_tags_the_contact_and_ends(local: LocalCairn) -> None:
    contact(local, "lou")
    ok(
        local.request(
            "POST", "/v1/workflows/email-engagement/enroll", {"userId": "lou"}, key=local.secret_key
        )
    )
    local.advance(seconds=3 * DAY)
    assert steps_sent(local, "lou", "email-engagement") == ["new-product"]
    assert "launch-unopened" in profile(local, "lou")["tags"]
    assert ended(local, "email-engagement", "lou") == "Completed"


def test_api_enrollment_honours_audience_and_reentry(local: LocalCairn) -> None:
    contact(local, "max", email=False)
    contact(local, "ned")
    enroll = {"userId": "max"}
    assert ok(
        local.request("POST", "/v1/workflows/email-engagement/enroll", enroll, key=local.secret_key)
    ) == {
        "enrolled": False,
        "reason": "audience",
    }
    ok(
        local.request(
            "POST", "/v1/workflows/email-engagement/enroll", {"userId": "ned"}, key=local.secret_key
        )
    )
    again = ok(
        local.request(
            "POST", "/v1/workflows/email-engagement/enroll", {"userId": "ned"}, key=local.secret_key
        )
    )
    assert again == {"enrolled": False, "reason": "already in the workflow"}
    status, _, body = local.request(
        "POST", "/v1/workflows/nope/enroll", {"userId": "ned"}, key=local.secret_key
    )
    assert status == 404 and body["error"]["code"] == "not_found"
    status, _, body = local.request(
        "POST", "/v1/workflows/email-engagement/enroll", {"userId": "ned"}, key=local.write_key
    )
    assert status == 403


# ---------------------------------------------------------------- first purchase


def test_the_first_order_brings_tips_then_an_offer_for_returning_customers(local: LocalCairn) -> None:
    t0 = local.clock.now()
    contact(local, "oli")
    track(local, "oli", "order_completed", total=80)
    local.advance(seconds=11 * DAY)
    assert steps_sent(local, "oli", "first-purchase") == ["welcome-customer", "gear-tips", "returning-offer"]
    offer = sent(local, "oli", "first-purchase")[-1]
    assert at(offer) == t0 + timedelta(days=10)
    assert profile(local, "oli")["attributes"]["stage"] == "customer"
    assert "customer" in profile(local, "oli")["tags"]


def test_a_second_order_ends_the_series_and_a_repeat_customer_never_enters(local: LocalCairn) -> None:
    contact(local, "pia")
    track(local, "pia", "order_completed", total=80)
    local.advance(seconds=5 * DAY)
    track(local, "pia", "order_completed", total=40)  # came back: the goal
    local.settle()
    # The run is over (nothing more can come from it): the offer of day 10 is never sent.
    assert ended(local, "first-purchase", "pia") == "Converted"
    assert steps_sent(local, "pia", "first-purchase") == ["welcome-customer", "gear-tips"]
    assert len(runs(local, "first-purchase", "pia")) == 1  # the second order is not a first purchase


# ---------------------------------------------------------------- social follow


def test_a_new_follower_gets_a_welcome_and_the_contest_invitation(local: LocalCairn) -> None:
    morning(local)
    contact(local, "quinn", sms=True)
    contact(local, "rae")
    for user in ("quinn", "rae"):
        track(local, user, "social_followed", network="Instagram")
    local.advance(seconds=DAY)
    assert [m["channel"] for m in sent(local, "quinn", "social-follow")] == ["sms", "email"]
    assert steps_sent(local, "rae", "social-follow") == ["welcome-email", "contest"]
    assert "on Instagram" in sent(local, "rae", "social-follow")[0]["html"]
    from tests.e2e.workflow_helpers import cid_of

    from cairn.adapters.journeys import lists_of

    assert lists_of(cid_of("rae")) == {"summit-contest"}
    assert "social-follower" in profile(local, "rae")["tags"]


# ---------------------------------------------------------------- lead nurture


def test_a_high_value_lead_goes_to_sales_as_a_task_instead_of_more_email(local: LocalCairn) -> None:
    t0 = local.clock.now()
    contact(local, "sam", lead_score=85, company="Alpine Rescue")
    track(local, "sam", "lead_created", source="webinar")
    local.settle()
    [guide] = sent(local, "sam", "lead-nurture")
    assert profile(local, "sam")["attributes"]["stage"] == "awareness"
    local.advance(seconds=DAY)
    local.feedback(guide["id"], "click")
    assert "engaged" in profile(local, "sam")["tags"]
    assert profile(local, "sam")["attributes"]["stage"] == "consideration"
    local.advance(seconds=5 * DAY)
    assert steps_sent(local, "sam", "lead-nurture") == ["guide", "case-study"]
    assert profile(local, "sam")["attributes"]["stage"] == "decision"
    assert ended(local, "lead-nurture", "sam") == "Exited"
    body = ok(local.request("GET", "/v1/tasks", key=local.secret_key, query="assignee=sales&status=open"))
    [task] = body["tasks"]
    assert (task["userId"], task["title"], task["workflowId"], task["stepId"]) == (
        "sam",
        "Call this high-value lead",
        "lead-nurture",
        "call-lead",
    )
    assert when(task["due"]) == t0 + timedelta(days=6)
    done = ok(local.request("PATCH", f"/v1/tasks/{task['id']}", {"status": "done"}, key=local.secret_key))
    assert done["status"] == "done"
    still_open = ok(local.request("GET", "/v1/tasks", key=local.secret_key, query="status=open"))["tasks"]
    assert [t for t in still_open if t["userId"] == "sam"] == []


def test_other_leads_get_the_decision_email(local: LocalCairn) -> None:
    contact(local, "tia", lead_score=20)
    track(local, "tia", "lead_created")
    local.advance(seconds=10 * DAY)
    assert steps_sent(local, "tia", "lead-nurture") == ["guide", "case-study", "demo-offer"]
    tasks = ok(local.request("GET", "/v1/tasks", key=local.secret_key))["tasks"]
    assert [t for t in tasks if t["userId"] == "tia"] == []


def test_a_lead_that_becomes_a_customer_leaves_the_nurture(local: LocalCairn) -> None:
    contact(local, "uma", lead_score=10)
    track(local, "uma", "lead_created")
    local.advance(seconds=2 * DAY)
    ok(
        local.request(
            "POST", "/v1/identify", {"userId": "uma", "traits": {"stage": "customer"}}, key=local.secret_key
        )
    )
    local.settle()
    assert ended(local, "lead-nurture", "uma") == "Exited"  # over: no case study, no offer
    assert steps_sent(local, "uma", "lead-nurture") == ["guide"]


# ---------------------------------------------------------------- birthdays (date attribute)


def test_birthdays_arrive_at_nine_in_each_contacts_own_zone(local: LocalCairn) -> None:
    t0 = local.clock.now()
    tomorrow = (t0 + timedelta(days=1)).date()
    contact(local, "vera", birthday=f"1990-{tomorrow:%m-%d}", timezone="America/New_York")
    contact(local, "walt", birthday=f"1984-{tomorrow:%m-%d}", timezone="Asia/Tokyo")
    contact(local, "xena", birthday=f"1984-{tomorrow + timedelta(days=3):%m-%d}")
    local.advance(seconds=2 * DAY)
    [vera] = sent(local, "vera", "birthday")
    [walt] = sent(local, "walt", "birthday")
    assert at(walt) == timing.local_instant(tomorrow, time(9), ZoneInfo("Asia/Tokyo"))
    assert at(vera) == timing.local_instant(tomorrow, time(9), ZoneInfo("America/New_York"))
    assert sent(local, "xena", "birthday") == []
    assert "Happy birthday, Vera" in vera["subject"]

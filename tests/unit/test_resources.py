"""Resources: settings, channels, subscription fields, categories, unsubscribe policy."""

from __future__ import annotations

from typing import Any

import pytest

from herald.domain.errors import AlreadyExists, DomainError, NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.fields import FieldDefinition, FieldType
from herald.domain.resources import (
    AddCategory,
    Category,
    ChangeCategoryOptions,
    ConfigureUnsubscribePolicy,
    CreateResource,
    CustomChannelSettings,
    DefineSubscriptionField,
    DeleteResource,
    DisableChannel,
    EmailSettings,
    EnableChannel,
    PushPlatform,
    PushProvider,
    PushSettings,
    RemoveCategory,
    RemoveSubscriptionField,
    RenameCategory,
    ResourceCategoryAdded,
    ResourceCategoryOptionsChanged,
    ResourceCategoryRemoved,
    ResourceCategoryRenamed,
    ResourceChannelDisabled,
    ResourceChannelEnabled,
    ResourceChannelUpdated,
    ResourceCreated,
    ResourceDeleted,
    ResourceSettings,
    ResourceState,
    ResourceUpdated,
    SmsSettings,
    SubscriptionFieldDefined,
    SubscriptionFieldRemoved,
    UnsubscribeMode,
    UnsubscribePolicy,
    UnsubscribePolicyConfigured,
    UpdateChannel,
    UpdateResource,
    resource_decider,
    resource_stream,
)
from herald.domain.secrets import SealedSecret
from tests.unit.decider_table import then, then_error

SEALED_KEY = SealedSecret(key_id="test-key", ciphertext="c2VhbGVk")  # what the domain stores

RID = "r1"
SETTINGS = ResourceSettings(
    name="Promo",
    database_ids=("db1",),
    source_urls=("https://shop.example.com",),
    default_tracking_domain="trk.example.com",
)
EMAIL = EmailSettings(from_name="Shop", from_email="news@example.com", list_id="promo.example.com")
SMS = SmsSettings(caller_id="Shop")
PUSH = PushSettings(
    platforms=(PushPlatform.ANDROID, PushPlatform.CHROME),
    providers=(PushProvider.FCM,),
    firebase_api_key=SEALED_KEY,
)
TELEGRAM = CustomChannelSettings(
    name="telegram_bot", options={"parse_mode": "HTML"}, secrets={"bot_token": SEALED_KEY}
)
SIZE = FieldDefinition(name="size", title="Size", type=FieldType.STRING, default="M")
PROMO = Category(api_name="promo", title="Promo offers", in_subscription_manager=True)
TRANSACTIONS = Category(api_name="transactions", title="Transactions", mandatory=True)

CREATED = ResourceCreated(resource_id=RID, token="rtoken-1", settings=SETTINGS)
EMAIL_ON = ResourceChannelEnabled(resource_id=RID, channel="email", settings=EMAIL)
SIZE_DEFINED = SubscriptionFieldDefined(resource_id=RID, channel="email", field=SIZE)
PROMO_ADDED = ResourceCategoryAdded(resource_id=RID, category=PROMO)
DELETED = ResourceDeleted(resource_id=RID)


def settings(**changes: Any) -> ResourceSettings:
    return SETTINGS.model_copy(update=changes)


def email(**changes: Any) -> EmailSettings:
    return EMAIL.model_copy(update=changes)


def push(**changes: Any) -> PushSettings:
    return PUSH.model_copy(update=changes)


def size(**changes: Any) -> FieldDefinition:
    return SIZE.model_copy(update=changes)


def policy(**changes: Any) -> UnsubscribePolicy:
    return UnsubscribePolicy(**changes)


def configured(**changes: Any) -> UnsubscribePolicyConfigured:
    return UnsubscribePolicyConfigured(resource_id=RID, policy=policy(**changes))


PAGE = "https://shop.example.com/unsub?smid={send_message_id}"

DECISIONS: list[tuple[str, list[Event], Any, list[Event]]] = [
    (
        "create",
        [],
        CreateResource(resource_id=RID, token="rtoken-1", settings=SETTINGS),
        [CREATED],
    ),
    (
        "create normalises and de-duplicates settings",
        [],
        CreateResource(
            resource_id=RID,
            token=" rtoken-1 ",
            settings=settings(
                name="  Promo ",
                description="  news ",
                database_ids=("db1", "db1", "db2"),
                source_urls=(" https://shop.example.com ", "android-app://com.shop"),
                default_tracking_domain="TRK.Example.com",
                sending_policy_id=" policy-1 ",
            ),
        ),
        [
            ResourceCreated(
                resource_id=RID,
                token="rtoken-1",
                settings=settings(
                    description="news",
                    database_ids=("db1", "db2"),
                    source_urls=("https://shop.example.com", "android-app://com.shop"),
                    sending_policy_id="policy-1",
                ),
            )
        ],
    ),
    (
        "create with its primary channel",
        [],
        CreateResource(resource_id=RID, token="rtoken-1", settings=SETTINGS, channels=(EMAIL, SMS)),
        [CREATED, EMAIL_ON, ResourceChannelEnabled(resource_id=RID, channel="sms", settings=SMS)],
    ),
    (
        "update",
        [CREATED],
        UpdateResource(resource_id=RID, settings=settings(raise_priority_for_new_subscriptions=True)),
        [ResourceUpdated(resource_id=RID, settings=settings(raise_priority_for_new_subscriptions=True))],
    ),
    ("update that changes nothing", [CREATED], UpdateResource(resource_id=RID, settings=SETTINGS), []),
    ("enable email", [CREATED], EnableChannel(resource_id=RID, settings=EMAIL), [EMAIL_ON]),
    (
        "enable email normalises addresses",
        [CREATED],
        EnableChannel(
            resource_id=RID,
            settings=email(
                from_email=" news@EXAMPLE.com",
                reply_to_email="Help@Example.com",
                list_id=" promo.example.com ",
            ),
        ),
        [
            ResourceChannelEnabled(
                resource_id=RID, channel="email", settings=email(reply_to_email="Help@example.com")
            )
        ],
    ),
    (
        "List-ID may use a parent domain of the From email's",
        [CREATED],
        EnableChannel(resource_id=RID, settings=email(from_email="news@mail.example.com")),
        [
            ResourceChannelEnabled(
                resource_id=RID, channel="email", settings=email(from_email="news@mail.example.com")
            )
        ],
    ),
    (
        "List-ID label may hold dots",
        [CREATED],
        EnableChannel(resource_id=RID, settings=email(list_id="commonspace-users.list-id.example.com")),
        [
            ResourceChannelEnabled(
                resource_id=RID,
                channel="email",
                settings=email(list_id="commonspace-users.list-id.example.com"),
            )
        ],
    ),
    (
        "enable sms with a numeric caller id",
        [CREATED],
        EnableChannel(resource_id=RID, settings=SmsSettings(caller_id="+79123456789")),
        [
            ResourceChannelEnabled(
                resource_id=RID, channel="sms", settings=SmsSettings(caller_id="+79123456789")
            )
        ],
    ),
    (
        "enable push",
        [CREATED],
        EnableChannel(resource_id=RID, settings=PUSH),
        [ResourceChannelEnabled(resource_id=RID, channel="push", settings=PUSH)],
    ),
    (
        "push through APNs alone needs no Firebase key",
        [CREATED],
        EnableChannel(
            resource_id=RID,
            settings=PushSettings(
                platforms=(PushPlatform.SAFARI, PushPlatform.IOS), providers=(PushProvider.APNS,)
            ),
        ),
        [
            ResourceChannelEnabled(
                resource_id=RID,
                channel="push",
                settings=PushSettings(
                    platforms=(PushPlatform.SAFARI, PushPlatform.IOS), providers=(PushProvider.APNS,)
                ),
            )
        ],
    ),
    (
        "push through RuStore and HMS",
        [CREATED],
        EnableChannel(
            resource_id=RID,
            settings=PushSettings(
                platforms=(PushPlatform.ANDROID,), providers=(PushProvider.RUSTORE, PushProvider.HMS)
            ),
        ),
        [
            ResourceChannelEnabled(
                resource_id=RID,
                channel="push",
                settings=PushSettings(
                    platforms=(PushPlatform.ANDROID,), providers=(PushProvider.RUSTORE, PushProvider.HMS)
                ),
            )
        ],
    ),
    (
        "enable a custom channel",
        [CREATED],
        EnableChannel(resource_id=RID, settings=TELEGRAM),
        [ResourceChannelEnabled(resource_id=RID, channel="telegram_bot", settings=TELEGRAM)],
    ),
    (
        "update a channel",
        [CREATED, EMAIL_ON],
        UpdateChannel(resource_id=RID, settings=email(from_name="Shop news")),
        [ResourceChannelUpdated(resource_id=RID, channel="email", settings=email(from_name="Shop news"))],
    ),
    (
        "update a channel with the same settings",
        [CREATED, EMAIL_ON],
        UpdateChannel(resource_id=RID, settings=EMAIL),
        [],
    ),
    (
        "disable a channel",
        [CREATED, EMAIL_ON],
        DisableChannel(resource_id=RID, channel="email"),
        [ResourceChannelDisabled(resource_id=RID, channel="email")],
    ),
    (
        "define a subscription field",
        [CREATED, EMAIL_ON],
        DefineSubscriptionField(resource_id=RID, channel="email", field=size(title=" Size ")),
        [SIZE_DEFINED],
    ),
    (
        "a field's default is stored in its type",
        [CREATED, EMAIL_ON],
        DefineSubscriptionField(
            resource_id=RID,
            channel="email",
            field=FieldDefinition(name="visits", type=FieldType.INT, default="3"),
        ),
        [
            SubscriptionFieldDefined(
                resource_id=RID,
                channel="email",
                field=FieldDefinition(name="visits", type=FieldType.INT, default=3),
            )
        ],
    ),
    (
        "redefine a field's title and options",
        [CREATED, EMAIL_ON, SIZE_DEFINED],
        DefineSubscriptionField(
            resource_id=RID, channel="email", field=size(title="T-shirt size", required=True)
        ),
        [
            SubscriptionFieldDefined(
                resource_id=RID, channel="email", field=size(title="T-shirt size", required=True)
            )
        ],
    ),
    (
        "redefine a field unchanged",
        [CREATED, EMAIL_ON, SIZE_DEFINED],
        DefineSubscriptionField(resource_id=RID, channel="email", field=SIZE),
        [],
    ),
    (
        "remove a subscription field",
        [CREATED, EMAIL_ON, SIZE_DEFINED],
        RemoveSubscriptionField(resource_id=RID, channel="email", name="size"),
        [SubscriptionFieldRemoved(resource_id=RID, channel="email", name="size")],
    ),
    ("add a category", [CREATED], AddCategory(resource_id=RID, category=PROMO), [PROMO_ADDED]),
    (
        "rename a category",
        [CREATED, PROMO_ADDED],
        RenameCategory(resource_id=RID, api_name="promo", title=" Deals "),
        [ResourceCategoryRenamed(resource_id=RID, api_name="promo", title="Deals")],
    ),
    (
        "rename a category to its title",
        [CREATED, PROMO_ADDED],
        RenameCategory(resource_id=RID, api_name="promo", title="Promo offers"),
        [],
    ),
    (
        "make a category mandatory",
        [CREATED, PROMO_ADDED],
        ChangeCategoryOptions(
            resource_id=RID, api_name="promo", in_subscription_manager=True, mandatory=True
        ),
        [
            ResourceCategoryOptionsChanged(
                resource_id=RID, api_name="promo", in_subscription_manager=True, mandatory=True
            )
        ],
    ),
    (
        "category options unchanged",
        [CREATED, PROMO_ADDED],
        ChangeCategoryOptions(
            resource_id=RID, api_name="promo", in_subscription_manager=True, mandatory=False
        ),
        [],
    ),
    (
        "remove a category",
        [CREATED, PROMO_ADDED],
        RemoveCategory(resource_id=RID, api_name="promo"),
        [ResourceCategoryRemoved(resource_id=RID, api_name="promo")],
    ),
    (
        "instant unsubscribe to a custom page",
        [CREATED],
        ConfigureUnsubscribePolicy(resource_id=RID, policy=policy(page_url="https://shop.example.com/bye")),
        [configured(page_url="https://shop.example.com/bye")],
    ),
    (
        "confirm on a page",
        [CREATED],
        ConfigureUnsubscribePolicy(
            resource_id=RID, policy=policy(mode=UnsubscribeMode.CONFIRM, page_url=PAGE)
        ),
        [configured(mode=UnsubscribeMode.CONFIRM, page_url=PAGE)],
    ),
    (
        "delayed with a 30 minute timer",
        [CREATED],
        ConfigureUnsubscribePolicy(
            resource_id=RID, policy=policy(mode=UnsubscribeMode.DELAYED, page_url=PAGE, timer_minutes=30)
        ),
        [configured(mode=UnsubscribeMode.DELAYED, page_url=PAGE, timer_minutes=30)],
    ),
    (
        "forbidden with its explanation",
        [CREATED],
        ConfigureUnsubscribePolicy(
            resource_id=RID,
            policy=policy(mode=UnsubscribeMode.FORBIDDEN, forbidden_explanation=" Service messages "),
        ),
        [configured(mode=UnsubscribeMode.FORBIDDEN, forbidden_explanation="Service messages")],
    ),
    (
        "List-Unsubscribe with a callback URL",
        [CREATED],
        ConfigureUnsubscribePolicy(
            resource_id=RID, policy=policy(list_unsubscribe_callback_url="https://shop.example.com/lu")
        ),
        [configured(list_unsubscribe_callback_url="https://shop.example.com/lu")],
    ),
    (
        "List-Unsubscribe disabled",
        [CREATED],
        ConfigureUnsubscribePolicy(resource_id=RID, policy=policy(list_unsubscribe_disabled=True)),
        [configured(list_unsubscribe_disabled=True)],
    ),
    ("the default policy again", [CREATED], ConfigureUnsubscribePolicy(resource_id=RID, policy=policy()), []),
    ("delete", [CREATED], DeleteResource(resource_id=RID), [DELETED]),
]


@pytest.mark.parametrize(
    ("given", "when", "expected"), [c[1:] for c in DECISIONS], ids=[c[0] for c in DECISIONS]
)
def test_decisions(given: list[Event], when: Any, expected: list[Event]) -> None:
    assert then(resource_decider, given, when) == expected


def create(**changes: Any) -> CreateResource:
    return CreateResource(resource_id=RID, token="rtoken-1", settings=settings(**changes))


def enable(channel: Any) -> EnableChannel:
    return EnableChannel(resource_id=RID, settings=channel)


def define(definition: FieldDefinition, channel: str = "email") -> DefineSubscriptionField:
    return DefineSubscriptionField(resource_id=RID, channel=channel, field=definition)


def configure(**changes: Any) -> ConfigureUnsubscribePolicy:
    return ConfigureUnsubscribePolicy(resource_id=RID, policy=policy(**changes))


LONG_LIST_ID = "a" * 244 + ".example.com"

ERRORS: list[tuple[str, list[Event], Any, type[DomainError], str]] = [
    ("create twice", [CREATED], create(), AlreadyExists, "resource_id"),
    ("a deleted id is not reused", [CREATED, DELETED], create(), AlreadyExists, "resource_id"),
    ("blank name", [], create(name="  "), ValidationFailed, "name"),
    ("no database", [], create(database_ids=()), ValidationFailed, "database_ids"),
    ("blank database id", [], create(database_ids=("db1", " ")), ValidationFailed, "database_ids.1"),
    ("no source URL", [], create(source_urls=()), ValidationFailed, "source_urls"),
    (
        "source URL without scheme",
        [],
        create(source_urls=("shop.example.com",)),
        ValidationFailed,
        "source_urls.0",
    ),
    (
        "source URL with spaces",
        [],
        create(source_urls=("https://shop example.com",)),
        ValidationFailed,
        "source_urls.0",
    ),
    (
        "bad tracking domain",
        [],
        create(default_tracking_domain="trk"),
        ValidationFailed,
        "default_tracking_domain",
    ),
    ("blank sending policy", [], create(sending_policy_id=" "), ValidationFailed, "sending_policy_id"),
    (
        "blank token",
        [],
        CreateResource(resource_id=RID, token=" ", settings=SETTINGS),
        ValidationFailed,
        "token",
    ),
    (
        "a bad channel at creation",
        [],
        CreateResource(resource_id=RID, token="t", settings=SETTINGS, channels=(email(from_email="nope"),)),
        ValidationFailed,
        "channels.0.from_email",
    ),
    (
        "the same channel twice at creation",
        [],
        CreateResource(resource_id=RID, token="t", settings=SETTINGS, channels=(SMS, SMS)),
        AlreadyExists,
        "channels.1.channel",
    ),
    (
        "update a missing resource",
        [],
        UpdateResource(resource_id=RID, settings=SETTINGS),
        NotFound,
        "resource_id",
    ),
    (
        "update a deleted resource",
        [CREATED, DELETED],
        UpdateResource(resource_id=RID, settings=SETTINGS),
        NotFound,
        "resource_id",
    ),
    (
        "delete a deleted resource",
        [CREATED, DELETED],
        DeleteResource(resource_id=RID),
        NotFound,
        "resource_id",
    ),
    (
        "update with a blank name",
        [CREATED],
        UpdateResource(resource_id=RID, settings=settings(name="")),
        ValidationFailed,
        "name",
    ),
    ("enable twice", [CREATED, EMAIL_ON], enable(EMAIL), AlreadyExists, "channel"),
    ("blank From name", [CREATED], enable(email(from_name=" ")), ValidationFailed, "from_name"),
    ("bad From email", [CREATED], enable(email(from_email="news@")), ValidationFailed, "from_email"),
    (
        "bad Reply-to email",
        [CREATED],
        enable(email(reply_to_email="help")),
        ValidationFailed,
        "reply_to_email",
    ),
    (
        "List-ID in angle brackets",
        [CREATED],
        enable(email(list_id="<promo.example.com>")),
        ValidationFailed,
        "list_id",
    ),
    (
        "List-ID over 255 characters",
        [CREATED],
        enable(email(list_id=LONG_LIST_ID)),
        ValidationFailed,
        "list_id",
    ),
    (
        "List-ID with a space",
        [CREATED],
        enable(email(list_id="promo list.example.com")),
        ValidationFailed,
        "list_id",
    ),
    (
        "List-ID of another domain",
        [CREATED],
        enable(email(list_id="promo.other.com")),
        RuleViolated,
        "list_id",
    ),
    ("List-ID without a label", [CREATED], enable(email(list_id="example.com")), RuleViolated, "list_id"),
    (
        "List-ID on the public suffix only",
        [CREATED],
        enable(email(from_email="a@example.com", list_id="promo.com")),
        RuleViolated,
        "list_id",
    ),
    (
        "Caller ID over 11 letters",
        [CREATED],
        enable(SmsSettings(caller_id="ShopNewsLetter")),
        ValidationFailed,
        "caller_id",
    ),
    ("blank Caller ID", [CREATED], enable(SmsSettings(caller_id=" ")), ValidationFailed, "caller_id"),
    ("push without platforms", [CREATED], enable(push(platforms=())), ValidationFailed, "platforms"),
    ("push without providers", [CREATED], enable(push(providers=())), ValidationFailed, "providers"),
    (
        "a provider serving none of the platforms",
        [CREATED],
        enable(push(providers=(PushProvider.FCM, PushProvider.MOZILLA))),
        RuleViolated,
        "providers.1",
    ),
    (
        "APNs does not serve Android",
        [CREATED],
        enable(push(platforms=(PushPlatform.ANDROID,), providers=(PushProvider.APNS,))),
        RuleViolated,
        "providers.0",
    ),
    (
        "FCM does not serve Safari",
        [CREATED],
        enable(push(platforms=(PushPlatform.CHROME, PushPlatform.SAFARI))),
        RuleViolated,
        "platforms.1",
    ),
    (
        "RuStore does not serve iOS",
        [CREATED],
        enable(push(platforms=(PushPlatform.ANDROID, PushPlatform.IOS), providers=(PushProvider.RUSTORE,))),
        RuleViolated,
        "platforms.1",
    ),
    (
        "FCM without the Firebase key",
        [CREATED],
        enable(push(firebase_api_key=None)),
        ValidationFailed,
        "firebase_api_key",
    ),
    (
        "AppMetrica without the Firebase key",
        [CREATED],
        enable(
            push(
                platforms=(PushPlatform.ANDROID,), providers=(PushProvider.APPMETRICA,), firebase_api_key=None
            )
        ),
        ValidationFailed,
        "firebase_api_key",
    ),
    (
        "a custom channel named email",
        [CREATED],
        enable(CustomChannelSettings(name="email")),
        ValidationFailed,
        "name",
    ),
    (
        "a custom channel in capitals",
        [CREATED],
        enable(CustomChannelSettings(name="Telegram")),
        ValidationFailed,
        "name",
    ),
    (
        "a custom channel with a token among its options",
        [CREATED],
        enable(CustomChannelSettings(name="viber", options={"auth_token": "x"})),
        ValidationFailed,
        "options.auth_token",
    ),
    (
        "a custom channel with a blank option",
        [CREATED],
        enable(CustomChannelSettings(name="viber", options={" ": "x"})),
        ValidationFailed,
        "options",
    ),
    (
        "update a channel not enabled",
        [CREATED],
        UpdateChannel(resource_id=RID, settings=SMS),
        NotFound,
        "channel",
    ),
    (
        "update a channel with bad settings",
        [CREATED, EMAIL_ON],
        UpdateChannel(resource_id=RID, settings=email(list_id="x.other.com")),
        RuleViolated,
        "list_id",
    ),
    (
        "disable a channel not enabled",
        [CREATED],
        DisableChannel(resource_id=RID, channel="sms"),
        NotFound,
        "channel",
    ),
    ("a field on a channel not enabled", [CREATED], define(SIZE), NotFound, "channel"),
    (
        "a field name starting with a digit",
        [CREATED, EMAIL_ON],
        define(size(name="1size")),
        ValidationFailed,
        "field.name",
    ),
    (
        "a field name starting with _",
        [CREATED, EMAIL_ON],
        define(size(name="_size")),
        ValidationFailed,
        "field.name",
    ),
    (
        "a field name in cyrillic",
        [CREATED, EMAIL_ON],
        define(size(name="размер")),
        ValidationFailed,
        "field.name",
    ),
    (
        "a date field",
        [CREATED, EMAIL_ON],
        define(FieldDefinition(name="born", type=FieldType.DATE)),
        ValidationFailed,
        "field.type",
    ),
    ("a unique field", [CREATED, EMAIL_ON], define(size(unique=True)), ValidationFailed, "field.unique"),
    (
        "a default of the wrong type",
        [CREATED, EMAIL_ON],
        define(FieldDefinition(name="visits", type=FieldType.INT, default="many")),
        ValidationFailed,
        "field.default",
    ),
    (
        "a field's type cannot change",
        [CREATED, EMAIL_ON, SIZE_DEFINED],
        define(size(type=FieldType.INT, default=None)),
        RuleViolated,
        "field.type",
    ),
    (
        "remove a field that is not there",
        [CREATED, EMAIL_ON],
        RemoveSubscriptionField(resource_id=RID, channel="email", name="size"),
        NotFound,
        "name",
    ),
    (
        "remove a field of a channel not enabled",
        [CREATED],
        RemoveSubscriptionField(resource_id=RID, channel="email", name="size"),
        NotFound,
        "channel",
    ),
    (
        "a category API name with a space",
        [CREATED],
        AddCategory(resource_id=RID, category=Category(api_name="promo offers", title="Promo")),
        ValidationFailed,
        "api_name",
    ),
    (
        "a category without a title",
        [CREATED],
        AddCategory(resource_id=RID, category=Category(api_name="promo", title=" ")),
        ValidationFailed,
        "title",
    ),
    (
        "a category twice",
        [CREATED, PROMO_ADDED],
        AddCategory(resource_id=RID, category=PROMO),
        AlreadyExists,
        "api_name",
    ),
    (
        "rename a missing category",
        [CREATED],
        RenameCategory(resource_id=RID, api_name="promo", title="x"),
        NotFound,
        "api_name",
    ),
    (
        "rename a category to nothing",
        [CREATED, PROMO_ADDED],
        RenameCategory(resource_id=RID, api_name="promo", title=""),
        ValidationFailed,
        "title",
    ),
    (
        "options of a missing category",
        [CREATED],
        ChangeCategoryOptions(
            resource_id=RID, api_name="promo", in_subscription_manager=False, mandatory=True
        ),
        NotFound,
        "api_name",
    ),
    (
        "remove a missing category",
        [CREATED],
        RemoveCategory(resource_id=RID, api_name="promo"),
        NotFound,
        "api_name",
    ),
    (
        "confirm without a page",
        [CREATED],
        configure(mode=UnsubscribeMode.CONFIRM),
        ValidationFailed,
        "page_url",
    ),
    (
        "confirm page without {send_message_id}",
        [CREATED],
        configure(mode=UnsubscribeMode.CONFIRM, page_url="https://shop.example.com/unsub"),
        ValidationFailed,
        "page_url",
    ),
    (
        "delayed without a timer",
        [CREATED],
        configure(mode=UnsubscribeMode.DELAYED, page_url=PAGE),
        ValidationFailed,
        "timer_minutes",
    ),
    (
        "delayed over 30 minutes",
        [CREATED],
        configure(mode=UnsubscribeMode.DELAYED, page_url=PAGE, timer_minutes=31),
        ValidationFailed,
        "timer_minutes",
    ),
    (
        "delayed with a zero timer",
        [CREATED],
        configure(mode=UnsubscribeMode.DELAYED, page_url=PAGE, timer_minutes=0),
        ValidationFailed,
        "timer_minutes",
    ),
    (
        "a timer on instant unsubscribe",
        [CREATED],
        configure(timer_minutes=5),
        ValidationFailed,
        "timer_minutes",
    ),
    (
        "forbidden without an explanation",
        [CREATED],
        configure(mode=UnsubscribeMode.FORBIDDEN, forbidden_explanation="  "),
        ValidationFailed,
        "forbidden_explanation",
    ),
    (
        "a page that is not a web URL",
        [CREATED],
        configure(page_url="ftp://shop.example.com/x"),
        ValidationFailed,
        "page_url",
    ),
    (
        "a bad callback URL",
        [CREATED],
        configure(list_unsubscribe_callback_url="not a url"),
        ValidationFailed,
        "list_unsubscribe_callback_url",
    ),
    (
        "a callback with List-Unsubscribe disabled",
        [CREATED],
        configure(
            list_unsubscribe_disabled=True, list_unsubscribe_callback_url="https://shop.example.com/lu"
        ),
        RuleViolated,
        "list_unsubscribe_callback_url",
    ),
]


@pytest.mark.parametrize(
    ("given", "when", "error", "path"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
def test_errors(given: list[Event], when: Any, error: type[DomainError], path: str) -> None:
    then_error(resource_decider, given, when, error, path)


@pytest.mark.parametrize(
    "command",
    [
        EnableChannel(resource_id=RID, settings=SMS),
        DisableChannel(resource_id=RID, channel="email"),
        define(SIZE),
        RemoveSubscriptionField(resource_id=RID, channel="email", name="size"),
        AddCategory(resource_id=RID, category=PROMO),
        configure(),
    ],
    ids=lambda c: type(c).__name__,
)
def test_every_command_needs_the_resource(command: Any) -> None:
    then_error(resource_decider, [], command, NotFound, "resource_id")


# --- what subscriptions read from the state ---------------------------------------------------

STATE = resource_decider.fold(
    [
        CREATED,
        EMAIL_ON,
        SubscriptionFieldDefined(
            resource_id=RID,
            channel="email",
            field=FieldDefinition(name="visits", type=FieldType.INT, required=True),
        ),
        SIZE_DEFINED,
        SubscriptionFieldDefined(
            resource_id=RID, channel="email", field=FieldDefinition(name="vip", type=FieldType.BOOL)
        ),
        PROMO_ADDED,
        ResourceCategoryAdded(resource_id=RID, category=TRANSACTIONS),
    ]
)


def test_state_answers_what_subscriptions_need() -> None:
    assert STATE.exists
    assert STATE.accepts_database("db1") and not STATE.accepts_database("db2")
    assert STATE.channel_enabled("email") and not STATE.channel_enabled("sms")
    assert list(STATE.subscription_fields("email")) == ["visits", "size", "vip"]
    assert STATE.subscription_fields("sms") == {}
    assert STATE.category("transactions") == TRANSACTIONS
    assert STATE.category("news") is None
    assert not STATE.raise_priority_for_new_subscriptions
    assert STATE.sends_list_unsubscribe


def test_an_empty_stream_is_no_resource() -> None:
    empty = ResourceState()
    assert not empty.exists
    assert not empty.accepts_database("db1")
    assert not empty.raise_priority_for_new_subscriptions


def test_deleted_resource_no_longer_exists() -> None:
    assert not resource_decider.fold([DELETED], STATE).exists


def test_raise_priority_flag() -> None:
    updated = ResourceUpdated(resource_id=RID, settings=settings(raise_priority_for_new_subscriptions=True))
    assert resource_decider.fold([updated], STATE).raise_priority_for_new_subscriptions


@pytest.mark.parametrize(
    ("changes", "sends"),
    [
        ({"list_unsubscribe_disabled": True}, False),
        ({"mode": UnsubscribeMode.FORBIDDEN, "forbidden_explanation": "Service"}, False),
        ({"mode": UnsubscribeMode.CONFIRM, "page_url": PAGE}, True),
    ],
    ids=["disabled", "forbidden", "confirm"],
)
def test_list_unsubscribe_header(changes: dict[str, Any], sends: bool) -> None:
    assert resource_decider.fold([configured(**changes)], STATE).sends_list_unsubscribe is sends


def test_new_subscription_fields_get_defaults_and_coerced_values() -> None:
    assert STATE.coerce_subscription_fields("email", {"visits": "3", "vip": "yes"}) == {
        "size": "M",
        "visits": 3,
        "vip": True,
    }


def test_an_explicit_value_beats_the_default() -> None:
    assert STATE.coerce_subscription_fields("email", {"visits": 1, "size": "XL"}) == {
        "size": "XL",
        "visits": 1,
    }


def test_updating_fields_merges_and_clears() -> None:
    current: dict[str, Any] = {"size": "M", "visits": 3, "vip": True, "gone": "x"}
    assert STATE.coerce_subscription_fields("email", {"vip": None, "size": "S"}, current) == {
        "size": "S",
        "visits": 3,
    }


@pytest.mark.parametrize(
    ("given", "current", "path"),
    [
        ({}, None, "fields.visits"),
        ({"visits": "many"}, None, "fields.visits"),
        ({"visits": 2.5}, None, "fields.visits"),
        ({"visits": 1, "vip": "perhaps"}, None, "fields.vip"),
        ({"visits": 1, "colour": "red"}, None, "fields.colour"),
        ({"visits": ""}, {"visits": 3}, "fields.visits"),
    ],
    ids=["required missing", "not a number", "not whole", "not a bool", "unknown field", "required cleared"],
)
def test_subscription_field_errors(given: dict[str, Any], current: dict[str, Any] | None, path: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        STATE.coerce_subscription_fields("email", given, current)
    assert caught.value.path == path


def test_disabling_a_channel_drops_its_fields() -> None:
    state = resource_decider.fold(
        [ResourceChannelDisabled(resource_id=RID, channel="email"), EMAIL_ON], STATE
    )
    assert state.subscription_fields("email") == {}


def test_removing_a_field_and_category() -> None:
    state = resource_decider.fold(
        [
            SubscriptionFieldRemoved(resource_id=RID, channel="email", name="size"),
            ResourceCategoryRemoved(resource_id=RID, api_name="promo"),
        ],
        STATE,
    )
    assert "size" not in state.subscription_fields("email")
    assert state.category("promo") is None


def test_category_changes_are_kept() -> None:
    state = resource_decider.fold(
        [
            ResourceCategoryRenamed(resource_id=RID, api_name="promo", title="Deals"),
            ResourceCategoryOptionsChanged(
                resource_id=RID, api_name="promo", in_subscription_manager=False, mandatory=True
            ),
        ],
        STATE,
    )
    assert state.category("promo") == Category(api_name="promo", title="Deals", mandatory=True)


def test_other_events_leave_the_state_alone() -> None:
    class Unrelated(Event):
        pass

    assert resource_decider.evolve(STATE, Unrelated()) is STATE


def test_stream_name() -> None:
    assert resource_stream("r1") == "resource-r1"


ALL_EVENTS: list[Event] = [
    CREATED,
    ResourceUpdated(resource_id=RID, settings=settings(sending_policy_id="p1")),
    EMAIL_ON,
    ResourceChannelEnabled(resource_id=RID, channel="push", settings=PUSH),
    ResourceChannelEnabled(resource_id=RID, channel="telegram_bot", settings=TELEGRAM),
    ResourceChannelUpdated(resource_id=RID, channel="sms", settings=SMS),
    ResourceChannelDisabled(resource_id=RID, channel="sms"),
    SIZE_DEFINED,
    SubscriptionFieldRemoved(resource_id=RID, channel="email", name="size"),
    PROMO_ADDED,
    ResourceCategoryRenamed(resource_id=RID, api_name="promo", title="Deals"),
    ResourceCategoryOptionsChanged(
        resource_id=RID, api_name="promo", in_subscription_manager=True, mandatory=True
    ),
    ResourceCategoryRemoved(resource_id=RID, api_name="promo"),
    configured(mode=UnsubscribeMode.DELAYED, page_url=PAGE, timer_minutes=10),
    DELETED,
]


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: e.type_name)
def test_events_survive_the_store(event: Event) -> None:
    assert registry.decode(event.type_name, event.schema_version, event.to_data()) == event


def test_old_channel_events_withhold_their_credentials() -> None:
    """Schema version 1 held the Firebase key and a custom channel's tokens in clear."""
    push = {"kind": "push", "platforms": ["android"], "providers": ["fcm"], "firebase_api_key": "AIza-1"}
    custom = {"kind": "custom", "name": "telegram_bot", "options": {"bot_token": "123:abc", "mode": "HTML"}}
    for settings in (push, custom):
        data = {"resource_id": RID, "channel": "x", "settings": settings}
        for event_type in ("ResourceChannelEnabled", "ResourceChannelUpdated"):
            upcast = registry.upcast(event_type, 1, data)
            assert "AIza-1" not in str(upcast) and "123:abc" not in str(upcast)
            registry.decode(event_type, 1, data)  # still a valid event
    decoded = registry.decode(
        "ResourceChannelEnabled", 1, {"resource_id": RID, "channel": "x", "settings": custom}
    )
    assert isinstance(decoded, ResourceChannelEnabled)
    assert isinstance(decoded.settings, CustomChannelSettings)
    assert decoded.settings.options == {"mode": "HTML"}
    assert decoded.settings.secrets["bot_token"].withheld

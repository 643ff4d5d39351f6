"""The template and fragment aggregates: versions, validation, drafts."""

from __future__ import annotations

from typing import Any

import pytest

from herald.domain import fragments as fr
from herald.domain import templates as tp
from herald.domain.errors import AlreadyExists, NotFound, RuleViolated, ValidationFailed
from tests.unit.decider_table import then, then_error

CARD = tp.TemplateCard(name="Welcome")
EMAIL = tp.EmailContent(subject="Hi {lead._fname}", html="<p>Hello {lead._fname}</p>")
CONTENT = tp.TemplateContent(email=EMAIL)
CREATED = tp.TemplateCreated(template_id="1", card=CARD, content=CONTENT, draft=False)


def content(**overrides: Any) -> tp.TemplateContent:
    return tp.TemplateContent(**{"email": EMAIL, **overrides})


def test_create_records_the_first_version() -> None:
    events = then(tp.template_decider, [], tp.CreateTemplate("1", CARD, CONTENT))
    assert events == [CREATED]
    state = tp.template_decider.fold(events)
    assert (state.version, state.content, state.draft) == (1, CONTENT, False)


def test_every_content_edit_is_the_next_version_and_an_unchanged_one_is_none() -> None:
    second = content(sms=tp.SmsContent(body="Hi {lead._fname}"))
    events = then(tp.template_decider, [CREATED], tp.UpdateTemplate("1", content=second))
    assert events == [tp.TemplateContentChanged(template_id="1", version=2, content=second)]
    assert then(tp.template_decider, [CREATED, *events], tp.UpdateTemplate("1", content=second)) == []
    assert tp.template_decider.fold([CREATED, *events]).version == 2


def test_renaming_is_not_a_new_version() -> None:
    renamed = tp.TemplateCard(name="Welcome 2", tags=("onboarding",))
    events = then(tp.template_decider, [CREATED], tp.UpdateTemplate("1", card=renamed))
    assert events == [tp.TemplateCardChanged(template_id="1", card=renamed)]
    assert tp.template_decider.fold([CREATED, *events]).version == 1


def tg(**given: Any) -> tp.TelegramContent:
    return tp.TelegramContent(**{"text": "Hi", **given})


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        (tp.TemplateContent(), ""),
        (content(email=tp.EmailContent(subject=" ", html="<p>x</p>")), "email.subject"),
        (content(email=tp.EmailContent(subject="s")), "email.html"),
        (content(sms=tp.SmsContent(body="")), "sms.body"),
        (content(push=tp.PushContent(title="t", body=" ")), "push.body"),
        (content(push=tp.PushContent(title="", body="b")), "push.title"),
        (content(telegram_bot=tp.TelegramContent(text=" ")), "telegram_bot.text"),
        (
            content(telegram_bot=tg(buttons=(tp.TelegramButton(text=" ", url="https://x.io"),))),
            "telegram_bot.buttons.0.text",
        ),
        (
            content(telegram_bot=tg(buttons=(tp.TelegramButton(text="Go", url="x.io"),))),
            "telegram_bot.buttons.0.url",
        ),
        (
            content(telegram_bot=tg(buttons=(tp.TelegramButton(text="Go", url="https://x.io"),) * 9)),
            "telegram_bot.buttons",
        ),
        (content(telegram_bot=tp.TelegramContent(text="Hi {lead._fname")), "telegram_bot.text"),
        (
            content(telegram_bot=tg(parse_mode="MarkdownV2", text="*Sale* https://x\\.io")),
            "telegram_bot.text",
        ),
        (content(parts=(tp.TemplatePart(name="9x", content="a"),)), "parts.0.name"),
        (
            content(parts=(tp.TemplatePart(name="a", content="1"), tp.TemplatePart(name="a", content="2"))),
            "parts.1.name",
        ),
        (content(email=tp.EmailContent(subject="s", html="{part.footer}")), "parts"),
        (
            content(email=tp.EmailContent(subject="s", html="x", attachments=(tp.Attachment(name="a.pdf"),))),
            "email.attachments.0",
        ),
    ],
)
def test_content_that_cannot_be_sent_is_refused_at_save(bad: tp.TemplateContent, path: str) -> None:
    then_error(tp.template_decider, [], tp.CreateTemplate("1", CARD, bad), ValidationFailed, path)
    then_error(tp.template_decider, [CREATED], tp.UpdateTemplate("1", content=bad), ValidationFailed, path)


def test_every_syntax_error_is_reported_with_its_path_line_and_column() -> None:
    bad = content(
        email=tp.EmailContent(subject="Hi {lead._fname", html="<p>\n  {if lead.a}x</p>"),
        sms=tp.SmsContent(body="{summ(1)}"),
    )
    error = then_error(tp.template_decider, [], tp.CreateTemplate("1", CARD, bad), tp.TemplateInvalid)
    assert isinstance(error, tp.TemplateInvalid)
    found = [(e.path, e.line, e.column) for e in error.errors]
    assert found == [("email.subject", 1, 4), ("email.html", 2, 3), ("sms.body", 1, 2)]
    assert "expected" in error.errors[0].message or "not closed" in error.errors[0].message


def test_a_template_needs_a_name_and_unique_id() -> None:
    then_error(
        tp.template_decider, [], tp.CreateTemplate("1", tp.TemplateCard(name=" "), CONTENT), ValidationFailed
    )
    then_error(
        tp.template_decider, [CREATED], tp.CreateTemplate("1", CARD, CONTENT), AlreadyExists, "template_id"
    )


def test_a_draft_cannot_be_sent_until_published() -> None:
    draft = tp.TemplateCreated(template_id="1", card=CARD, content=CONTENT, draft=True)
    state = tp.template_decider.fold([draft])
    with pytest.raises(RuleViolated, match="draft"):
        state.ensure_sendable(tp.Channel.EMAIL)
    published = then(tp.template_decider, [draft], tp.PublishTemplate("1"))
    assert published == [tp.TemplatePublished(template_id="1")]
    assert then(tp.template_decider, [draft, *published], tp.PublishTemplate("1")) == []
    assert tp.template_decider.fold([draft, *published]).ensure_sendable(tp.Channel.EMAIL) == CONTENT
    again = then(tp.template_decider, [draft, *published], tp.MarkTemplateDraft("1"))
    assert again == [tp.TemplateMarkedDraft(template_id="1")]


def test_sending_needs_the_channel_and_a_live_template() -> None:
    state = tp.template_decider.fold([CREATED])
    with pytest.raises(RuleViolated, match="no sms content"):
        state.ensure_sendable(tp.Channel.SMS)
    deleted = tp.template_decider.fold([CREATED, tp.TemplateDeleted(template_id="1")])
    with pytest.raises(NotFound):
        deleted.ensure_sendable(tp.Channel.EMAIL)
    then_error(
        tp.template_decider, [CREATED, tp.TemplateDeleted(template_id="1")], tp.PublishTemplate("1"), NotFound
    )


def test_content_references_list_parts_fragments_system_tags_and_remote_blocks() -> None:
    used = tp.content_references(
        content(
            email=tp.EmailContent(
                subject="s", html='{part.top}{fragment.social}<a href="{unsubscribe}">x</a>'
            ),
            parts=(tp.TemplatePart(name="top", content="{[https://e.com/{lead.id}]}"),),
        )
    )
    assert (used.parts, used.fragments, used.system_tags, used.remote) == (
        {"top"},
        {"social"},
        {"unsubscribe"},
        True,
    )


FRAGMENT = fr.FragmentContent(name="Social", content="<a href='https://x.com'>X</a>")


def test_a_fragment_is_named_by_its_short_name_and_versioned() -> None:
    created = then(fr.fragment_decider, [], fr.CreateFragment("social", FRAGMENT))
    assert created == [fr.FragmentCreated(short_name="social", fragment=FRAGMENT)]
    changed_content = FRAGMENT.model_copy(update={"content": "{lead._fname}"})
    changed = then(fr.fragment_decider, created, fr.UpdateFragment("social", changed_content))
    assert changed == [fr.FragmentChanged(short_name="social", version=2, fragment=changed_content)]
    assert then(fr.fragment_decider, [*created, *changed], fr.UpdateFragment("social", changed_content)) == []
    then_error(
        fr.fragment_decider, created, fr.CreateFragment("social", FRAGMENT), AlreadyExists, "short_name"
    )


@pytest.mark.parametrize(
    ("command", "error", "path"),
    [
        (fr.CreateFragment("1abc", FRAGMENT), ValidationFailed, "short_name"),
        (fr.CreateFragment("a b", FRAGMENT), ValidationFailed, "short_name"),
        (fr.CreateFragment("ok", FRAGMENT.model_copy(update={"name": ""})), ValidationFailed, "name"),
        (
            fr.CreateFragment("ok", FRAGMENT.model_copy(update={"content": "{if x}"})),
            tp.TemplateInvalid,
            "content",
        ),
        (fr.UpdateFragment("none", FRAGMENT), NotFound, "short_name"),
    ],
)
def test_bad_fragments_are_refused(command: fr.FragmentCommand, error: type[Exception], path: str) -> None:
    then_error(fr.fragment_decider, [], command, error, path)  # type: ignore[arg-type]


def test_markdown_v2_links_are_tracked_in_their_inline_form_or_not_at_all() -> None:
    inline = tg(parse_mode="MarkdownV2", text="*Sale* [here](https://x.io/s)")
    assert tp.checked_content(content(telegram_bot=inline)).telegram_bot == inline
    bare = tg(parse_mode="MarkdownV2", text="*Sale* https://x\\.io")
    assert tp.checked_content(content(telegram_bot=bare, track_links=False)).telegram_bot == bare

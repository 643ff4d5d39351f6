"""Loyalty programs, their pools and holdings as tables: given events, when a command, then events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from random import Random

import pytest

from herald.domain.errors import AlreadyExists, NotFound, RuleViolated, ValidationFailed
from herald.domain.loyalty import (
    ActivateProgram,
    ChangeProgram,
    CreateProgram,
    DeleteProgram,
    ExternalGenerator,
    ExtraField,
    LoyaltyProgramActivated,
    LoyaltyProgramChanged,
    LoyaltyProgramCreated,
    LoyaltyProgramDeleted,
    LoyaltyProgramStopped,
    PatternGenerator,
    Period,
    ProgramSettings,
    ProgramState,
    StopProgram,
    field_values,
    program_decider,
)
from herald.domain.promo_patterns import parse_pattern
from herald.domain.promo_pool import (
    ActivateCode,
    BindCodes,
    BindingCause,
    IssueCodes,
    PromoCodeActivated,
    PromoCodesBound,
    PromoCodesIssued,
    PromoCodesReleased,
    PromoCodesRunningLow,
    PromoCodeWithdrawn,
    Release,
    ReleaseCodes,
    WithdrawCode,
    pool_decider,
)
from tests.unit.decider_table import then, then_error

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
SETTINGS = ProgramSettings(
    name=" Spring ", shortcode="spring", generator=PatternGenerator(pattern="{L4}-{D6}")
)
CAMPAIGN = BindingCause(kind="campaign", id="3", name="Sale")


def program(**changes: object) -> ProgramState:
    settings = SETTINGS.model_copy(update={"name": "Spring", **changes})
    return program_decider.fold(
        [LoyaltyProgramCreated(program_id="1", settings=settings, active=True, at=T0)]
    )


def issued(first: int, *codes: str, expires_at: datetime | None = None) -> PromoCodesIssued:
    return PromoCodesIssued(
        program_id="1", first_seq=first, codes=list(codes), expires_at=expires_at, source="generated", at=T0
    )


def bound(*pairs: tuple[int, str], universal: bool = False) -> PromoCodesBound:
    seqs, profiles = [s for s, _ in pairs], [p for _, p in pairs]
    return PromoCodesBound(
        program_id="1", seqs=seqs, profile_ids=profiles, universal=universal, cause=CAMPAIGN, at=T1
    )


# --- patterns ----------------------------------------------------------------------------------


def test_the_guides_sample_pattern_makes_codes_of_its_shape() -> None:
    pattern = parse_pattern("{L4}-{D4}-{L5}{D9}")
    codes = pattern.generate(Random(1), 50)
    assert all(len(c) == 24 and c[4] == "-" and c[:4].isupper() and c[5:9].isdigit() for c in codes)
    assert len(set(codes)) == 50


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{Q4}", "unknown symbol class"),
        ("AB{L", "unexpected '{'"),
        ("A B{D9}", "unexpected ' '"),
        ("{D3}", "only 1,000 different codes"),
        ("{L0}", "repeats nothing"),
    ],
)
def test_a_bad_pattern_is_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_pattern(text)
    assert reason in caught.value.reason and caught.value.path == "pattern"


def test_a_generation_may_take_a_tenth_of_the_patterns_space() -> None:
    pattern = parse_pattern("{D6}")
    pattern.check_count(100_000)
    with pytest.raises(ValidationFailed, match="at most 100,000"):
        pattern.check_count(100_001)


# --- programs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "when", "expected"),
    [
        pytest.param(
            [],
            CreateProgram("1", SETTINGS, T0),
            [
                LoyaltyProgramCreated(
                    program_id="1",
                    settings=SETTINGS.model_copy(update={"name": "Spring"}),
                    active=True,
                    at=T0,
                )
            ],
            id="create (the name trimmed)",
        ),
        pytest.param(
            [LoyaltyProgramCreated(program_id="1", settings=SETTINGS, active=True, at=T0)],
            StopProgram("1", T1),
            [LoyaltyProgramStopped(program_id="1", at=T1)],
            id="stop",
        ),
        pytest.param(
            [LoyaltyProgramCreated(program_id="1", settings=SETTINGS, active=False, at=T0)],
            StopProgram("1", T1),
            [],
            id="stop a stopped program: nothing",
        ),
        pytest.param(
            [LoyaltyProgramCreated(program_id="1", settings=SETTINGS, active=False, at=T0)],
            ActivateProgram("1", T1),
            [LoyaltyProgramActivated(program_id="1", at=T1)],
            id="activate",
        ),
        pytest.param(
            [LoyaltyProgramCreated(program_id="1", settings=SETTINGS, active=True, at=T0)],
            ChangeProgram("1", SETTINGS.model_copy(update={"universal": True}), T1),
            [
                LoyaltyProgramChanged(
                    program_id="1",
                    settings=SETTINGS.model_copy(update={"universal": True, "name": "Spring"}),
                    at=T1,
                )
            ],
            id="change",
        ),
        pytest.param(
            [
                LoyaltyProgramCreated(program_id="1", settings=SETTINGS, active=True, at=T0),
                LoyaltyProgramDeleted(program_id="1", at=T1),
            ],
            DeleteProgram("1", T1),
            [],
            id="delete twice: nothing",
        ),
    ],
)
def test_program_commands(given: list, when: object, expected: list) -> None:  # type: ignore[type-arg]
    assert then(program_decider, given, when) == expected


@pytest.mark.parametrize(
    ("settings", "path"),
    [
        (SETTINGS.model_copy(update={"shortcode": "black friday"}), "shortcode"),
        (SETTINGS.model_copy(update={"generator": PatternGenerator(pattern="{D2}")}), "generator.pattern"),
        (
            SETTINGS.model_copy(update={"generator": ExternalGenerator(url="ftp://x.example")}),
            "generator.url",
        ),
        (SETTINGS.model_copy(update={"period": Period(valid_from=T1, valid_to=T0)}), "period.valid_to"),
        (
            SETTINGS.model_copy(update={"fields": (ExtraField(name="n", type="int", default="x"),)}),
            "fields.0.default",
        ),
        (
            SETTINGS.model_copy(update={"fields": (ExtraField(name="a"), ExtraField(name="A"))}),
            "fields.1.name",
        ),
    ],
)
def test_bad_settings_are_refused_at_their_path(settings: ProgramSettings, path: str) -> None:
    then_error(program_decider, [], CreateProgram("1", settings, T0), ValidationFailed, path)


def test_commands_on_a_missing_program_are_refused() -> None:
    then_error(program_decider, [], StopProgram("9", T0), NotFound, "program_id")


def test_field_values_fill_defaults_and_coerce() -> None:
    settings = SETTINGS.model_copy(
        update={
            "fields": (ExtraField(name="Promo", default="Black Friday"), ExtraField(name="level", type="int"))
        }
    )
    assert field_values(settings, {"level": "3"}) == {"Promo": "Black Friday", "level": 3}
    with pytest.raises(ValidationFailed) as caught:
        field_values(settings, {"colour": "red"})
    assert caught.value.path == "fields.colour"


def test_the_period_limits_giving_codes_out() -> None:
    state = program(period=Period(valid_from=T1))
    assert state.refusal(T0) is not None and "outside its period" in (state.refusal(T0) or "")
    assert state.refusal(T1) is None


# --- the pool ----------------------------------------------------------------------------------


def test_issue_numbers_codes_in_order_with_their_expiry() -> None:
    events = then(
        pool_decider, [issued(0, "A", "B")], IssueCodes(program(code_ttl_minutes=60), ("C",), "imported", T1)
    )
    assert events == [
        PromoCodesIssued(
            program_id="1",
            first_seq=2,
            codes=["C"],
            expires_at=T1 + timedelta(hours=1),
            source="imported",
            at=T1,
        )
    ]


def test_issue_keeps_to_the_maximum_unless_told_to_ignore_it() -> None:
    given = [issued(0, "A", "B")]
    then_error(
        pool_decider, given, IssueCodes(program(max_codes=2), ("C",), "generated", T1), RuleViolated, "count"
    )
    assert then(
        pool_decider, given, IssueCodes(program(max_codes=2), ("C",), "generated", T1, ignore_limit=True)
    )


def test_binding_hands_out_each_personal_code_once_in_order() -> None:
    given = [issued(0, "A", "B", "C"), bound((0, "p1"))]
    events = then(
        pool_decider, given, BindCodes(program(low_stock_threshold=0), ("p2", "p3", "p4"), CAMPAIGN, T1)
    )
    assert events == [bound((1, "p2"), (2, "p3"))]  # p4 gets none: the pool ran dry


def test_binding_skips_withdrawn_and_expired_codes() -> None:
    given = [
        issued(0, "A", "B", expires_at=T1),
        issued(2, "C", "D"),
        PromoCodeWithdrawn(program_id="1", seq=2, code="C", at=T0),
    ]
    events = then(pool_decider, given, BindCodes(program(low_stock_threshold=0), ("p1",), CAMPAIGN, T1))
    assert events == [bound((3, "p1"))]


def test_a_universal_program_gives_everyone_its_first_active_code() -> None:
    given = [issued(0, "OLD", expires_at=T1), issued(1, "ALL"), bound((1, "p0"), universal=True)]
    events = then(pool_decider, given, BindCodes(program(universal=True), ("p1", "p2"), CAMPAIGN, T1))
    assert events == [bound((1, "p1"), (1, "p2"), universal=True)]


def test_a_stopped_or_out_of_period_program_gives_nothing_out() -> None:
    stopped = program_decider.fold(
        [LoyaltyProgramCreated(program_id="1", settings=SETTINGS, active=False, at=T0)]
    )
    then_error(
        pool_decider, [issued(0, "A")], BindCodes(stopped, ("p",), CAMPAIGN, T1), RuleViolated, "program_id"
    )
    later = program(period=Period(valid_to=T1))
    then_error(pool_decider, [issued(0, "A")], BindCodes(later, ("p",), CAMPAIGN, T1), RuleViolated)


def test_running_low_is_reported_once_until_the_next_issue() -> None:
    given = [issued(0, "A", "B", "C")]
    low = program(low_stock_threshold=2)
    events = then(pool_decider, given, BindCodes(low, ("p1", "p2"), CAMPAIGN, T1))
    assert events[1] == PromoCodesRunningLow(program_id="1", free=1, threshold=2, at=T1)
    assert then(pool_decider, [*given, *events], BindCodes(low, ("p3",), CAMPAIGN, T1)) == [bound((2, "p3"))]
    refilled = [*given, *events, issued(3, "D")]
    assert len(then(pool_decider, refilled, BindCodes(low, ("p3",), CAMPAIGN, T1))) == 2


def test_withdrawing_a_code_never_withdrawn() -> None:
    given = [issued(0, "A")]
    assert then(pool_decider, given, WithdrawCode(program(), 0, "A", T1)) == [
        PromoCodeWithdrawn(program_id="1", seq=0, code="A", at=T1)
    ]
    then_error(
        pool_decider,
        [*given, PromoCodeWithdrawn(program_id="1", seq=0, code="A", at=T1)],
        WithdrawCode(program(), 0, "A", T1),
        NotFound,
        "code",
    )


def test_the_pool_state_counts_codes_free_and_held() -> None:
    state = pool_decider.fold(
        [
            issued(0, "A", "B", "C"),
            bound((0, "p")),
            PromoCodeWithdrawn(program_id="1", seq=2, code="C", at=T0),
        ]
    )
    assert (state.count, state.free(T1), state.cursor, state.version) == (2, 1, 1, 3)
    assert state.batch_of(1) is not None and state.batch_of(3) is None


# --- holdings ----------------------------------------------------------------------------------


def test_a_profile_holding_a_usable_code_is_not_bound_again() -> None:
    given = [issued(0, "A", "B", "C"), bound((0, "p1"))]
    events = then(pool_decider, given, BindCodes(program(low_stock_threshold=0), ("p1", "p2"), CAMPAIGN, T1))
    assert events == [bound((1, "p2"))]
    assert then(pool_decider, [*given, *events], BindCodes(program(), ("p1", "p2"), CAMPAIGN, T1)) == []


def test_a_profile_whose_code_expired_or_was_withdrawn_gets_a_new_one() -> None:
    given = [issued(0, "A", expires_at=T1), issued(1, "B", "C"), bound((0, "p"))]
    assert then(pool_decider, given, BindCodes(program(low_stock_threshold=0), ("p",), CAMPAIGN, T1)) == [
        bound((1, "p"))
    ]
    withdrawn = [issued(0, "A", "B"), bound((0, "p"))]
    events = then(pool_decider, withdrawn, WithdrawCode(program(), 0, "A", T1))
    assert events == [
        PromoCodeWithdrawn(program_id="1", seq=0, code="A", released=[Release(seq=0, profile_id="p")], at=T1)
    ]
    after = [*withdrawn, *events]
    assert then(pool_decider, after, BindCodes(program(low_stock_threshold=0), ("p",), CAMPAIGN, T1)) == [
        bound((1, "p"))
    ]


def test_activation_records_who_and_when_once() -> None:
    given = [issued(0, "A", "B", expires_at=T1 + timedelta(hours=1)), bound((0, "p"))]
    activate = ActivateCode(program(), "p", 0, "A", T1, by="shop 3")
    event = PromoCodeActivated(program_id="1", profile_id="p", seq=0, code="A", by="shop 3", at=T1)
    assert then(pool_decider, given, activate) == [event]
    then_error(pool_decider, [*given, event], activate, AlreadyExists, "code")
    then_error(pool_decider, given, ActivateCode(program(), "p", 1, "B", T1), RuleViolated, "code")
    then_error(pool_decider, given, ActivateCode(program(), "q", 0, "A", T1), RuleViolated, "profile_id")
    late = ActivateCode(program(), "p", 0, "A", T1 + timedelta(hours=2))
    then_error(pool_decider, given, late, RuleViolated, "code")


def test_release_takes_codes_from_profiles() -> None:
    given = [issued(0, "A", "B"), bound((0, "p"))]
    assert then(pool_decider, given, ReleaseCodes(program(), ("p", "q"), T1)) == [
        PromoCodesReleased(program_id="1", released=[Release(seq=0, profile_id="p")], reason="unbound", at=T1)
    ]
    assert then(pool_decider, given, ReleaseCodes(program(), ("q",), T1)) == []

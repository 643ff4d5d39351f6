"""The external promo-code service client against a real local HTTP server: the guide's request and
answers, retries with backoff, timeouts, garbage, and the SSRF guard."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from herald.infra.promo_generator import CodeRequest, ExternalCodeGenerator, GeneratorFailed, parse_codes
from herald.infra.remote_content import RemoteContentPolicy
from tests.code_service import LOOPBACK, CodeService, code_service

REQUEST = CodeRequest(
    account_id="1",
    loyalty_id="4",
    loyalty_name="Spring",
    loyalty_shortcode="spring",
    count=3,
    fields={"Акция": "Чёрная пятница"},
    campaign_id="12",
    campaign_name="Sale",
)


@pytest.fixture
def service() -> Iterator[CodeService]:
    with code_service() as running:
        yield running


@pytest.fixture
def pauses() -> list[float]:
    return []


@pytest.fixture
def generator(pauses: list[float]) -> Iterator[ExternalCodeGenerator]:
    client = ExternalCodeGenerator(LOOPBACK, sleep=pauses.append)
    yield client
    client.close()


def test_the_request_carries_the_guides_fields_verbatim(
    generator: ExternalCodeGenerator, service: CodeService
) -> None:
    codes = generator.request(service.url(), REQUEST)
    assert [c.code for c in codes] == ["EXT-1", "EXT-2", "EXT-3"]
    assert service.bodies() == [
        {
            "account_id": "1",
            "loyalty_id": "4",
            "loyalty_name": "Spring",
            "loyalty_shortcode": "spring",
            "campaign_id": "12",
            "campaign_name": "Sale",
            "workflow_id": "",
            "workflow_name": "",
            "count": 3,
            "is_test": False,
            "fields": {"Акция": "Чёрная пятница"},
        }
    ]


def test_codes_may_come_as_objects_with_fields(
    generator: ExternalCodeGenerator, service: CodeService
) -> None:
    codes = generator.request(service.url("/objects"), REQUEST)
    assert [(c.code, dict(c.fields)) for c in codes] == [(f"EXT-{i}", {"batch": "b1"}) for i in (1, 2, 3)]


def test_a_service_that_fails_is_asked_again_with_a_doubling_pause(
    generator: ExternalCodeGenerator, service: CodeService, pauses: list[float]
) -> None:
    codes = generator.request(service.url("/flaky"), REQUEST)
    assert len(codes) == 3 and len(service.bodies("/flaky")) == 3
    assert pauses == [0.5, 1.0]


def test_a_service_failing_every_time_fails_with_the_last_reason(
    generator: ExternalCodeGenerator, service: CodeService, pauses: list[float]
) -> None:
    with pytest.raises(GeneratorFailed) as failed:
        generator.request(service.url("/broken"), REQUEST)
    assert "failed 3 times" in failed.value.reason and "HTTP 500" in failed.value.reason
    assert failed.value.path == "generator.url" and len(service.bodies("/broken")) == 3


def test_a_service_that_does_not_answer_times_out(
    generator: ExternalCodeGenerator, service: CodeService
) -> None:
    with pytest.raises(GeneratorFailed, match=r"no answer within 0\.5 s"):
        generator.request(service.url("/slow"), REQUEST)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/garbage", "not JSON"),
        ("/wrong", 'no "codes" list'),
        ("/too-many", "4 codes for 3 asked"),
        ("/twice", "in the answer twice"),
        ("/refuse", "HTTP 400"),
    ],
)
def test_garbage_fails_at_once(
    generator: ExternalCodeGenerator, service: CodeService, path: str, reason: str
) -> None:
    with pytest.raises(GeneratorFailed) as failed:
        generator.request(service.url(path), REQUEST)
    assert reason in failed.value.reason
    assert len(service.bodies(path)) == 1  # asking again would get the same


def test_the_ssrf_guard_refuses_a_loopback_service(service: CodeService) -> None:
    guarded = ExternalCodeGenerator(RemoteContentPolicy(timeout_seconds=0.5), sleep=lambda _: None)
    try:
        with pytest.raises(GeneratorFailed, match="loopback"):
            guarded.request(service.url(), REQUEST)
    finally:
        guarded.close()
    assert service.requests == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"codes": [""]}', "codes.0 is not a code"),
        (b'{"codes": [7]}', "codes.0 is not a code"),
        (b'{"codes": [{"code": "A", "fields": {"x": [1]}}]}', "codes.0.fields"),
        (b'{"codes": ["A\\u0000"]}', "control characters"),
    ],
)
def test_bad_codes_in_an_answer_are_named(body: bytes, reason: str) -> None:
    with pytest.raises(GeneratorFailed) as failed:
        parse_codes(body, 5)
    assert reason in failed.value.reason

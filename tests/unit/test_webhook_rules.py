"""Which destinations a webhook may have (SSRF), which secrets and retry schedules it takes."""

from __future__ import annotations

import ipaddress

import pytest
from standardwebhooks import Webhook as Verifier

from customer_segments.config import SettingsError, load
from customer_segments.domain.errors import InvalidArgument
from customer_segments.domain.webhooks import (
    destination_url,
    forbidden_address,
    generated_secret,
    retry_schedule,
    secret_key,
)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example/in",
        "https://10.1.2.3:8443/in",  # private ranges: internal receivers are a normal case
        "http://localhost:8080/hook",
        "http://127.0.0.2/hook",
        "http://[::1]:9000/hook",
    ],
)
def test_allowed_destinations(url: str) -> None:
    assert destination_url(url, "f") == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://hooks.example/in", "https://"),
        ("http://10.0.0.1/in", "https://"),
        ("https://169.254.169.254/", "link-local"),
        ("https://[fe80::1%25eth0]/", "link-local"),
        ("https://[::ffff:a9fe:a9fe]/", "link-local"),  # 169.254.169.254, IPv4-mapped
        ("https://100.100.100.200/", "metadata"),
        ("https://[fd00:ec2::254]/", "metadata"),
        ("https://metadata.google.internal/", "metadata"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://[::]/", "unspecified"),
        ("https://239.1.2.3/", "multicast"),
        ("https://[ff02::1]/", "multicast"),
        ("https://255.255.255.255/", "reserved"),
        ("https://a:b@hooks.example/", "user name"),
        ("https://hooks.example:99999/", "not a URL"),
        ("file:///etc/passwd", "https://"),
        ("https://hooks.example/\n", "printable"),
    ],
)
def test_refused_destinations_name_the_field_and_the_reason(url: str, problem: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        destination_url(url, "webhook.destination_url")
    assert refused.value.field == "webhook.destination_url"
    assert problem in refused.value.problem


def test_loopback_is_allowed_at_delivery_and_metadata_is_not() -> None:
    assert forbidden_address(ipaddress.ip_address("127.0.0.1")) is None
    assert forbidden_address(ipaddress.ip_address("::1")) is None
    assert forbidden_address(ipaddress.ip_address("93.184.216.34")) is None
    assert forbidden_address(ipaddress.ip_address("169.254.169.254")) is not None


def test_secrets_are_whsec_base64_of_24_to_64_bytes() -> None:
    made = generated_secret()
    assert secret_key(made, "s") == made
    Verifier(made)  # the library takes it
    for bad in ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_c2hvcnQ="):
        with pytest.raises(InvalidArgument, match="whsec_"):
            secret_key(bad, "s")


def test_retry_schedules_parse_and_a_bad_one_is_one_line_naming_the_flag() -> None:
    assert retry_schedule("0s, 500ms,5m,2h,1d") == (0.0, 0.5, 300.0, 7200.0, 86400.0)
    with pytest.raises(SettingsError, match=r"--webhook-retry-schedule: '5 minutes'"):
        load({"webhook_retry_schedule": "0s,5 minutes"})
    with pytest.raises(SettingsError, match="--webhook-lease-seconds"):
        load({"webhook_lease_seconds": 0.5, "webhook_poll_interval_seconds": 0.5})

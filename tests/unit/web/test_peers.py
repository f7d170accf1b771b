"""Which owner URLs a worker forwards to: the deployment's peers only, decided before any
request is made."""

from __future__ import annotations

import pytest

from pipeline.web.peers import Origin, PeerPatternError, PeerPolicy, Refusal, origin_of

OWN = "http://127.0.0.1:6066"
K8S = "http://*.journey-tower-headless.prod.svc:6066"


@pytest.mark.parametrize(
    ("peers", "own", "tls", "owner", "verdict"),
    [
        # the default: this worker's own scheme and host, any port
        ("", OWN, False, "http://127.0.0.1:6067", "ok"),
        ("", OWN, False, "http://127.0.0.1", "ok"),
        ("", OWN, False, "http://127.0.0.2:6066", "not_a_peer"),
        ("", OWN, False, "https://127.0.0.1:6066", "not_a_peer"),
        ("", OWN, False, "http://localhost:6066", "not_a_peer"),
        ("", OWN, False, "http://evil.example:6066", "not_a_peer"),
        ("", "http://[::1]:6066", False, "http://[::1]:7000", "ok"),
        # not an origin: anything after the port would be glued to the forwarded path
        ("", OWN, False, "http://127.0.0.1:6066/c?", "bad_url"),
        ("", OWN, False, "http://127.0.0.1:6066/x", "bad_url"),
        ("", OWN, False, "http://127.0.0.1:6066?q=1", "bad_url"),
        ("", OWN, False, "http://127.0.0.1:6066#f", "bad_url"),
        ("", OWN, False, "http://user:pw@127.0.0.1:6066", "bad_url"),
        ("", OWN, False, "http://evil@127.0.0.1:6066", "bad_url"),
        ("", OWN, False, "ftp://127.0.0.1:6066", "bad_url"),
        ("", OWN, False, "http://127.0.0.1:99999", "bad_url"),
        ("", OWN, False, "http://", "bad_url"),
        # configured patterns
        (K8S, OWN, False, "http://tower-0.journey-tower-headless.prod.svc:6066", "ok"),
        (K8S, OWN, False, "http://TOWER-1.journey-tower-headless.prod.svc:6066", "ok"),
        (K8S, OWN, False, "http://a.b.journey-tower-headless.prod.svc:6066", "not_a_peer"),
        (K8S, OWN, False, "http://evil.com.journey-tower-headless.prod.svc:6066", "not_a_peer"),
        (K8S, OWN, False, "http://tower-0.journey-tower-headless.prod.svc:6067", "not_a_peer"),
        (K8S, OWN, False, "http://journey-tower-headless.prod.svc:6066", "not_a_peer"),
        (K8S, OWN, False, "http://tower-0.journey-tower-headless.prod.svc.evil:6066", "not_a_peer"),
        (K8S, OWN, False, "http://127.0.0.1:6066", "not_a_peer"),  # patterns replace the default
        (f"{K8S}, http://10.0.*.*:6066", OWN, False, "http://10.0.3.4:6066", "ok"),
        ("http://10.0.*.*:6066", OWN, False, "http://10.0.3.4.5:6066", "not_a_peer"),
        ("http://tower-*:6066", OWN, False, "http://tower-7:6066", "ok"),
        ("http://tower-*:6066", OWN, False, "http://tower-:6066", "not_a_peer"),
        # web TLS on: https only
        ("https://*.svc", "https://a.svc:6066", True, "https://b.svc:6066", "ok"),
        ("http://*.svc", "https://a.svc:6066", True, "http://b.svc:6066", "not_https"),
        ("", "https://a.svc:6066", True, "http://a.svc:6066", "not_https"),
    ],
)
def test_which_owners_are_peers(peers: str, own: str, tls: bool, owner: str, verdict: str) -> None:
    got = PeerPolicy.of(peers, own, tls).check(owner)
    if verdict == "ok":
        assert isinstance(got, Origin), got
    else:
        assert isinstance(got, Refusal) and got.reason == verdict, got


@pytest.mark.parametrize(
    "pattern",
    [
        "127.0.0.1:6066",
        "ftp://x",
        "http://",
        "http://x/path",
        "http://x?q",
        "http://u@x",
        "http://x:port",
        "http://x:*",
        "http://x:0",
        "http://x y",
    ],
)
def test_a_bad_pattern_is_refused_naming_it(pattern: str) -> None:
    with pytest.raises(PeerPatternError, match="TOWER_WEB_PEERS entry"):
        PeerPolicy.of(pattern, OWN, False)


def test_an_origin_is_canonical() -> None:
    assert origin_of("http://Tower-0.SVC:6066/") == Origin("http", "tower-0.svc", 6066)
    assert origin_of("https://a.svc").url() == "https://a.svc:443"  # type: ignore[union-attr]
    assert origin_of("http://[::1]:1").url() == "http://[::1]:1"  # type: ignore[union-attr]


def test_an_unusable_own_url_means_no_peers() -> None:
    policy = PeerPolicy.of("", "http://::1:6066", False)
    refusal = policy.check("http://127.0.0.1:6066")
    assert isinstance(refusal, Refusal) and "TOWER_WEB_PEERS" in refusal.detail

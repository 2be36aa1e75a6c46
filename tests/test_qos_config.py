"""Loading insane.yaml: lookup, QoS words and fields, pattern precedence, and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from insane.qos import (
    EMBEDDED_DEFAULT,
    ChannelQoS,
    Config,
    ConfigError,
    load_config,
    parse_peer,
)

EXAMPLE = """\
domain: 7
default: {qos: [reliable, ordered]}
channels:
  "orders.>":   {qos: [fast, reliable]}
  "orders.eu.*": {datapath: fast, reliability: best_effort, consumption: poll}
  "metrics.>":  {qos: [fast], overflow: drop}
transports:
  udp:  {bind: 127.0.0.1, port: 0, max_datagram: null, rcvbuf: 33554432, sndbuf: 8388608}
  xdp:  {enabled: true, interface: null, queue: 0, mode: auto, zero_copy: auto}
  dpdk: {enabled: true, eal_args: [], port: null}
  rdma: {enabled: true, device: null, port: 1, gid_index: null}
discovery:
  multicast: {enabled: true, group: 239.255.73.78, port: 7446, ttl: 1, interfaces: null}
  peers: ["10.0.0.2:7447"]
  host_registry: true
  heartbeat_interval: 0.5
  peer_timeout: 2.5
  settle: 0.25
metrics:
  port: null
  bind: 127.0.0.1
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No INSANE_CONFIG and an empty working directory unless a test sets them."""
    monkeypatch.delenv("INSANE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def error_of(source: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(source)  # type: ignore[arg-type]
    return str(info.value)


# --- lookup ----------------------------------------------------------------------------------


def test_embedded_default() -> None:
    cfg = load_config()
    assert cfg.source == EMBEDDED_DEFAULT == "<embedded default>"
    assert cfg.domain == 0
    assert cfg.channels == {}
    # The contract: channels with no QoS in YAML are reliable and ordered, on kernel UDP.
    assert cfg.default_qos == ChannelQoS(
        datapath="default",
        reliability="reliable",
        ordering="ordered",
        consumption="low",
        overflow="block",
    )
    assert cfg.qos_for("anything.at.all") == ("default", cfg.default_qos)
    assert cfg.transports.udp.bind == "127.0.0.1"
    assert cfg.transports.xdp.interface is None
    assert cfg.discovery.multicast.group == "239.255.73.78"
    assert cfg.discovery.multicast.port == 7446
    assert cfg.metrics.port is None


def test_cwd_insane_yaml_is_found(tmp_path: Path) -> None:
    write(tmp_path / "insane.yaml", "domain: 3\n")
    cfg = load_config()
    assert cfg.domain == 3
    assert cfg.source == "insane.yaml"


def test_env_var_wins_over_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "insane.yaml", "domain: 3\n")
    other = write(tmp_path / "other.yaml", "domain: 4\n")
    monkeypatch.setenv("INSANE_CONFIG", str(other))
    cfg = load_config()
    assert cfg.domain == 4
    assert cfg.source == str(other)


def test_env_var_naming_a_missing_file_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSANE_CONFIG", str(tmp_path / "nope.yaml"))
    msg = error_of(None)
    assert "nope.yaml" in msg
    assert "INSANE_CONFIG" in msg


def test_explicit_path_dict_and_config(tmp_path: Path) -> None:
    path = write(tmp_path / "x.yaml", EXAMPLE)
    from_file = load_config(path)
    assert from_file.source == str(path)
    assert load_config(str(path)).domain == 7
    from_dict = load_config({"domain": 5})
    assert from_dict.source == "<dict>"
    assert load_config(from_dict) is from_dict
    assert "missing.yaml: file not found" in error_of(tmp_path / "missing.yaml")


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "e.yaml", "# nothing yet\n"))
    assert cfg.default_qos == ChannelQoS()


def test_full_example_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "insane.yaml", EXAMPLE))
    assert cfg.domain == 7
    assert list(cfg.channel_qos) == ["orders.>", "orders.eu.*", "metrics.>"]
    assert cfg.channel_qos["metrics.>"] == ChannelQoS(datapath="fast", overflow="drop")
    assert cfg.channel_qos["orders.eu.*"] == ChannelQoS(
        datapath="fast", reliability="best_effort", consumption="poll"
    )
    assert cfg.peer_addresses() == (("10.0.0.2", 7447),)
    assert cfg.discovery.heartbeat_interval == 0.5


# --- words and fields ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"qos": ["fast"]}, {"datapath": "fast"}),
        ({"qos": ["default"]}, {"datapath": "default"}),
        ({"qos": ["best_effort"]}, {"reliability": "best_effort"}),
        ({"qos": ["unordered"]}, {"ordering": "none"}),
        ({"qos": ["poll"]}, {"consumption": "poll"}),
        ({"qos": ["fast", "reliable", "ordered", "low"]}, {"datapath": "fast"}),
        ({"datapath": "fast", "ordering": "none"}, {"datapath": "fast", "ordering": "none"}),
        ({"qos": ["fast"], "overflow": "error"}, {"datapath": "fast", "overflow": "error"}),
        ({"qos": ["reliable"], "reliability": "reliable"}, {}),  # agreeing is fine
        ({"qos": ["fast", "fast"]}, {"datapath": "fast"}),
        # ordered without reliable: ordering of what arrives.
        ({"qos": ["best_effort", "ordered"]}, {"reliability": "best_effort"}),
        (None, {}),
    ],
)
def test_words_and_fields(rule: object, expected: dict[str, str]) -> None:
    cfg = load_config({"channels": {"a.b": rule}})
    assert cfg.qos_for("a.b") == ("a.b", ChannelQoS.model_validate(expected))


def test_channel_rules_take_unset_fields_from_default() -> None:
    cfg = load_config(
        {
            "default": {"qos": ["fast", "best_effort"], "consumption": "poll"},
            "channels": {"a.>": {"qos": ["reliable"]}},
        }
    )
    assert cfg.default_qos == ChannelQoS(
        datapath="fast", reliability="best_effort", consumption="poll"
    )
    assert cfg.qos_for("a.b")[1] == ChannelQoS(
        datapath="fast", reliability="reliable", consumption="poll"
    )
    assert cfg.qos_for("z") == ("default", cfg.default_qos)


def test_channel_qos_is_frozen_and_hashable() -> None:
    qos = ChannelQoS(datapath="fast")
    assert hash(qos) == hash(ChannelQoS(datapath="fast"))
    assert {qos: 1}[ChannelQoS(datapath="fast")] == 1
    with pytest.raises(ValueError):
        qos.datapath = "default"
    assert qos.words == ("fast", "reliable", "ordered", "low")
    assert "datapath=fast" in qos.describe()


def test_word_contradicting_a_field() -> None:
    msg = error_of({"channels": {"orders.>": {"qos": ["reliable"], "reliability": "best_effort"}}})
    assert msg == (
        "<dict>: channels.\"orders.>\": qos word 'reliable' contradicts reliability: best_effort"
    )


def test_two_contradicting_words(tmp_path: Path) -> None:
    path = write(tmp_path / "insane.yaml", 'channels:\n  "a.*": {qos: [fast, default]}\n')
    msg = error_of(path)
    assert msg.startswith(f'{path}: channels."a.*".qos: ')
    assert "'fast' and 'default' contradict" in msg
    assert "datapath" in msg


def test_contradiction_in_default_rule() -> None:
    msg = error_of({"default": {"qos": ["poll", "low"]}})
    assert msg.startswith("<dict>: default.qos: ")


# --- precedence ------------------------------------------------------------------------------


def test_most_specific_pattern_wins() -> None:
    fast = {"qos": ["fast"]}
    cfg = load_config(
        {
            "channels": {
                ">": {"qos": ["best_effort"]},
                "orders.>": fast,
                "orders.*": fast,
                "orders.*.new": fast,
                "orders.eu.*": fast,
                "orders.eu.new": fast,
                "orders.*.*.>": fast,
            }
        }
    )
    assert cfg.qos_for("orders.eu.new")[0] == "orders.eu.new"  # literal beats wildcards
    assert cfg.qos_for("orders.eu.old")[0] == "orders.eu.*"  # literal token beats * early
    assert cfg.qos_for("orders.us.new")[0] == "orders.*.new"
    assert cfg.qos_for("orders.us")[0] == "orders.*"  # * beats >
    assert cfg.qos_for("orders.us.x")[0] == "orders.>"
    assert cfg.qos_for("orders.a.b.c")[0] == "orders.*.*.>"  # longer wins
    assert cfg.qos_for("other")[0] == ">"


def test_no_match_gives_default() -> None:
    cfg = load_config({"channels": {"orders.*": {"qos": ["fast"]}}})
    assert cfg.qos_for("orders")[0] == "default"
    assert cfg.qos_for("orders.a.b")[0] == "default"
    assert cfg.qos_for("orders.a")[0] == "orders.*"


def test_qos_for_is_cached_and_repeatable() -> None:
    cfg = load_config({"channels": {"a.>": {"qos": ["fast"]}}})
    first = cfg.qos_for("a.b")
    assert cfg.qos_for("a.b") is first
    assert load_config({"channels": {"a.>": {"qos": ["fast"]}}}) == cfg  # cache not compared


# --- errors ----------------------------------------------------------------------------------


def test_bad_enum_value_names_file_path_and_choices(tmp_path: Path) -> None:
    path = write(tmp_path / "insane.yaml", 'channels:\n  "orders.>": {reliability: sure}\n')
    assert error_of(path) == (
        f'{path}: channels."orders.>".reliability: '
        "expected one of 'best_effort', 'reliable', got 'sure'"
    )


def test_bad_port(tmp_path: Path) -> None:
    path = write(tmp_path / "insane.yaml", "transports:\n  udp: {port: abc}\n")
    assert error_of(path) == f"{path}: transports.udp.port: expected an integer 0..65535, got 'abc'"


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "insane.yaml", "domain: 1\nchannels:\n  a: [unclosed\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}: line ")
    assert "not valid YAML" in msg


def test_yaml_syntax_error_line_number(tmp_path: Path) -> None:
    path = write(tmp_path / "insane.yaml", "domain: 1\nmetrics:\n  port: 1\n port: 2\n")
    assert error_of(path).startswith(f"{path}: line 4: not valid YAML: ")


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "insane.yaml", "channels:\n  a.b: {}\n  a.b: {qos: [fast]}\n")
    msg = error_of(path)
    assert msg == f"{path}: line 3: not valid YAML: duplicate key 'a.b'"


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "insane.yaml", "- a\n- b\n")
    assert error_of(path) == f"{path}: top level: expected a mapping, got list"


def test_section_must_be_a_mapping() -> None:
    assert error_of({"transports": [1]}) == "<dict>: transports: expected a mapping, got list"
    assert error_of({"channels": "a"}) == "<dict>: channels: expected a mapping, got 'a'"


def test_unknown_key_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path / "insane.yaml", "transports:\n  udp: {bnd: 0.0.0.0}\n")
    assert error_of(path) == (
        f"{path}: transports.udp.bnd: unknown key "
        "(expected one of bind, port, max_datagram, rcvbuf, sndbuf)"
    )


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"colour": 1}, "colour"),
        ({"channels": {"a": {"speed": 1}}}, 'channels."a".speed'),
        ({"discovery": {"multicast": {"grp": 1}}}, "discovery.multicast.grp"),
        ({"metrics": {"prt": 1}}, "metrics.prt"),
        ({"transports": {"sctp": {}}}, "transports.sctp"),
    ],
)
def test_unknown_keys_anywhere(data: dict[str, object], path: str) -> None:
    msg = error_of(data)
    assert msg.startswith(f"<dict>: {path}: unknown key (expected one of ")


def test_several_problems_one_line_each() -> None:
    msg = error_of({"domain": -1, "transports": {"udp": {"port": 70000}}, "x": 1})
    lines = msg.splitlines()
    assert len(lines) == 3
    assert "<dict>: domain: expected an integer 0..4294967295, got -1" in lines
    assert "<dict>: transports.udp.port: expected an integer 0..65535, got 70000" in lines
    assert any(line.startswith("<dict>: x: unknown key") for line in lines)


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ({"channels": {"a.b": {"qos": ["quick"]}}}, 'channels."a.b".qos[0]: expected one of '),
        ({"channels": {"a.b": {"qos": "fast"}}}, 'channels."a.b".qos: expected a list of words'),
        ({"channels": {"a": {"datapath": "rocket"}}}, "expected one of 'default', 'fast'"),
        ({"channels": {"a": {"overflow": "spill"}}}, "expected one of 'block', 'drop', 'error'"),
        ({"transports": {"xdp": {"enabled": "yes"}}}, "xdp.enabled: expected true or false"),
        ({"transports": {"xdp": {"mode": "turbo"}}}, "xdp.mode: expected one of 'auto'"),
        ({"transports": {"xdp": {"zero_copy": 2}}}, "xdp.zero_copy: expected one of 'auto', true"),
        ({"transports": {"udp": {"bind": "localhost"}}}, "udp.bind: expected an IP address"),
        (
            {"transports": {"udp": {"port": True}}},
            "udp.port: expected an integer 0..65535, got true",
        ),
        ({"transports": {"rdma": {"port": 0}}}, "rdma.port: expected an integer 1..255, got 0"),
        ({"transports": {"dpdk": {"eal_args": "-l 0"}}}, "dpdk.eal_args: expected a list"),
        ({"discovery": {"multicast": {"group": "10.1.1.1"}}}, "expected an IPv4 multicast"),
        ({"discovery": {"heartbeat_interval": 0}}, "expected a number of seconds > 0, got 0"),
        ({"discovery": {"peer_timeout": 0.1}}, "discovery.peer_timeout: expected more than"),
        ({"discovery": {"settle": -1}}, "discovery.settle: expected a number of seconds >= 0"),
        ({"metrics": {"port": "9090"}}, "metrics.port: expected an integer 0..65535, got '9090'"),
        ({"domain": 2**32}, "domain: expected an integer 0..4294967295"),
    ],
)
def test_bad_values(data: dict[str, object], line: str) -> None:
    msg = error_of(data)
    assert msg.startswith("<dict>: ")
    assert line in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("a..b", "empty token"),
        ("a.>.b", "'>' must be the last token"),
        ("a b", "whitespace"),
        ("", "must not be empty"),
    ],
)
def test_invalid_patterns(pattern: str, why: str) -> None:
    msg = error_of({"channels": {pattern: {"qos": ["fast"]}}})
    assert msg.startswith(f'<dict>: channels."{pattern}": expected a subject pattern')
    assert why in msg


@pytest.mark.parametrize(
    "entry", ["10.0.0.2", "10.0.0.2:0", "10.0.0.2:70000", ":7447", "h:x", 7447]
)
def test_bad_peer_entries(entry: object) -> None:
    msg = error_of({"discovery": {"peers": ["ok:1", entry]}})
    assert (
        msg == f"<dict>: discovery.peers[1]: expected 'host:port' with port 1..65535, got {entry!r}"
    )


def test_peer_parsing() -> None:
    cfg = load_config({"discovery": {"peers": ["a.example:7447", "[::1]:9", "10.0.0.2:1"]}})
    assert cfg.peer_addresses() == (("a.example", 7447), ("::1", 9), ("10.0.0.2", 1))
    assert parse_peer("h:65535") == ("h", 65535)
    with pytest.raises(ValueError):
        parse_peer("h:65536")


def test_null_sections_are_empty() -> None:
    cfg = load_config({"channels": None, "discovery": {"peers": None}, "transports": None})
    assert cfg.channels == {}
    assert cfg.discovery.peers == ()
    assert cfg.transports == Config().transports


def test_describe_shows_the_qos_as_applied() -> None:
    """`insane qos explain`'s qos line: a best-effort channel keeps no order, whatever the
    rule or the default says about ordering."""
    cfg = load_config({"channels": {"md.>": {"qos": ["fast", "best_effort"]}}})
    _, qos = cfg.qos_for("md.x")
    assert qos.ordering == "ordered"  # resolved from the default rule
    assert qos.describe() == (
        "datapath=fast reliability=best_effort ordering=none consumption=low overflow=block"
    )
    _, qos = cfg.qos_for("other")
    assert qos.describe() == (
        "datapath=default reliability=reliable ordering=ordered consumption=low overflow=block"
    )

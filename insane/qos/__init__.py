"""Per-channel QoS: the YAML models, loading ``insane.yaml``, and the policy engine."""

from insane.qos.config import DEFAULT_FILE, ENV_VAR, ConfigError, load_config
from insane.qos.model import (
    EMBEDDED_DEFAULT,
    QOS_WORDS,
    ChannelQoS,
    Config,
    DiscoveryConfig,
    DpdkConfig,
    MetricsConfig,
    MulticastConfig,
    QoSRule,
    RdmaConfig,
    TransportsConfig,
    UdpConfig,
    XdpConfig,
    parse_peer,
)
from insane.qos.policy import NoRouteError, Route, candidate_order, choose_route, explain

__all__ = [
    "DEFAULT_FILE",
    "EMBEDDED_DEFAULT",
    "ENV_VAR",
    "QOS_WORDS",
    "ChannelQoS",
    "Config",
    "ConfigError",
    "DiscoveryConfig",
    "DpdkConfig",
    "MetricsConfig",
    "MulticastConfig",
    "NoRouteError",
    "QoSRule",
    "RdmaConfig",
    "Route",
    "TransportsConfig",
    "UdpConfig",
    "XdpConfig",
    "candidate_order",
    "choose_route",
    "explain",
    "load_config",
    "parse_peer",
]

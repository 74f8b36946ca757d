"""Configuration: the collector's YAML format, decoded into validated dataclasses."""

from relay.config.decode import Duration, decode, parse_duration
from relay.config.load import PipelineConfig, RelayConfig, load, load_file

__all__ = ["Duration", "decode", "parse_duration", "RelayConfig", "PipelineConfig", "load", "load_file"]

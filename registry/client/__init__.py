"""Modelkeep Python SDK: ``RegistryClient`` for the REST API."""

from registry.client.api import RegistryClient, parse_ref
from registry.client.monitor import Monitor
from registry.client.tracking import ActiveRun, start_run

__all__ = ["ActiveRun", "Monitor", "RegistryClient", "parse_ref", "start_run"]

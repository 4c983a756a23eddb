"""Modelkeep Python SDK: ``RegistryClient`` for the REST API."""

from registry.client.api import RegistryClient, parse_ref
from registry.client.tracking import ActiveRun, start_run

__all__ = ["ActiveRun", "RegistryClient", "parse_ref", "start_run"]

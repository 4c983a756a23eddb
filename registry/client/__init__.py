"""Modelkeep Python SDK: ``RegistryClient`` for the REST API."""

from registry.client.api import RegistryClient, parse_ref

__all__ = ["RegistryClient", "parse_ref"]

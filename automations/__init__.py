"""Automations: outbox events fanned out to signed webhooks (Standard Webhooks, at least once, retried),
rules that run gates and promote versions, inbound triggers, and scheduled jobs that run once per cluster.

Uses ``registry``'s domain and services; ``registry.api`` and ``registry.cli`` wire it in.
"""

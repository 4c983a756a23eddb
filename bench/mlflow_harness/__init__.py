"""Helpers for bench/bench_mlflow.py: load client, server processes, seeding/workloads, report."""

"""Shared plumbing of all four packages, not architectures: the project's error type,
atomic and fsynced files, strict YAML/JSON reading, value checks, seeds, thread counts,
size limits, weight files and the job contract that search and NetAdapt both hand out.

It lives under `search_spaces` because that is the lowest package (nothing below it to
import), so `nas`, `netadapt` and `latency` can all use it without a circle.
"""

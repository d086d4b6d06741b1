"""Helpers shared by the tests (no tests here): tiny models built offline, bad media, job
confs, loopback servers, the adapter runner, fault-test plumbing. Fixtures live in
``tests/conftest.py`` (the server fixtures come from :mod:`tests.helpers.servers` as a plugin).
"""

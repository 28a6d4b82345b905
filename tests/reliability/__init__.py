"""Reliability suite: the real server process under failures and load."""

"""Tests of nba.store: the customer-state store."""

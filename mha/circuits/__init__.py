"""Heads that work together (lesson 11)."""

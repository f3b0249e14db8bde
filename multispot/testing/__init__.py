"""Test helpers shipped with multispot, for first- and third-party provider adapters."""

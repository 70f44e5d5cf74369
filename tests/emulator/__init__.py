"""Tests of the archive emulator."""

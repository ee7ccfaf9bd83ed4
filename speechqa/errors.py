"""Exceptions raised by the library; only ``cli.py`` turns them into messages and exit codes."""

from __future__ import annotations


class SpeechQAError(Exception):
    """Base class for every error speechqa raises on purpose."""


class ConfigError(SpeechQAError):
    """A settings file, environment variable or flag has a bad value."""


class ModelError(SpeechQAError):
    """A Whisper model is missing, incomplete or fails its checksum."""


class InputError(SpeechQAError):
    """An input folder or manifest cannot be read as a batch."""


class AudioError(SpeechQAError):
    """One recording cannot be decoded (missing, empty, corrupt or without audio)."""


class LockedError(SpeechQAError):
    """Another run holds the output folder."""


class OutputError(SpeechQAError):
    """An output file cannot be written (a full disk, no permission)."""

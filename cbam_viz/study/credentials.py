"""Participant credentials: ids issued by the server, signed so that an id alone is worthless.

A credential is ``<id>.<signature>``, the signature an HMAC-SHA256 of the id under a key derived
from a server-side secret (the study's, kept in the database, so every app process of a deployment
accepts the same credentials). The browser keeps the credential and sends it with every call.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

MAX_LENGTH = 200


class Credentials:
    """Issues and checks credentials for one purpose ("participant", "free-vote", ...)."""

    def __init__(self, secret: Callable[[], str], purpose: str):
        self._secret = secret  # read on first use: the study may be registered after construction
        self._purpose = purpose.encode()
        self._key: bytes | None = None

    def issue(self, participant_id: str) -> str:
        """The credential of `participant_id`."""
        return f"{participant_id}.{self._signature(participant_id)}"

    def verify(self, credential: object) -> str | None:
        """The id of a valid credential; None for anything else (made up, tampered with, issued
        for another purpose or study, a bare id)."""
        if not isinstance(credential, str) or len(credential) > MAX_LENGTH:
            return None
        participant_id, _, signature = credential.rpartition(".")
        if not participant_id or not hmac.compare_digest(signature.encode(), self._signature(participant_id).encode()):
            return None
        return participant_id

    def _signature(self, participant_id: str) -> str:
        if self._key is None:
            self._key = hmac.new(self._secret().encode(), b"cbam-viz credential\x00" + self._purpose,
                                 hashlib.sha256).digest()
        return hmac.new(self._key, participant_id.encode(), hashlib.sha256).hexdigest()[:32]

"""Recruitment links and completion: the platform ids a study link carries (e.g. Prolific's
``?PROLIFIC_PID=...&STUDY_ID=...&SESSION_ID=...``) and what a participant gets at the end.

Platform ids are stored with the participant and looked up when the same link comes back; they are
never used as our participant ids (the server issues those, see `credentials`).
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, quote

from .config import Recruitment
from .records import StudyError

MAX_LINK_LENGTH = 2000


@dataclass(frozen=True)
class Completion:
    """What the end screen shows: the completion code and/or the URL to return to the platform."""

    code: str
    url: str
    redirect: bool


def platform_ids(query: object, recruitment: Recruitment) -> dict[str, str]:
    """The configured parameters present in a page URL's query string (``?a=1&b=2`` or ``a=1&b=2``);
    {} when the study has none or the link carries none. Raises StudyError for a malformed link
    (the store checks the values themselves)."""
    if not recruitment.params or query in (None, ""):
        return {}
    if not isinstance(query, str) or len(query) > MAX_LINK_LENGTH:
        raise StudyError("the study link is not a valid URL query")
    parsed = parse_qs(query.lstrip("?"), keep_blank_values=False)
    found = {}
    for name in recruitment.params:
        values = parsed.get(name, [])
        if len(set(values)) > 1:
            raise StudyError(f"the study link gives {name} more than once")
        if values:
            found[name] = values[0]
    return found


def completion(recruitment: Recruitment, ids: dict[str, str]) -> Completion | None:
    """The end screen's completion code and URL (placeholders filled, URL-quoted), or None when the
    study configures neither."""
    if not recruitment.completion_code and not recruitment.completion_url:
        return None
    values = {name: quote(ids.get(name, ""), safe="") for name in recruitment.params}
    url = recruitment.completion_url.format(code=quote(recruitment.completion_code, safe=""), **values)
    return Completion(recruitment.completion_code, url, recruitment.redirect and bool(url))

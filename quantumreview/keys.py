"""Every piece of app state, as typed aiohttp AppKeys (one place, no globals)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from quantumreview.credentials import CredentialsHolder
from quantumreview.crypto import SecretBox
from quantumreview.plugins import HandlerRegistry
from quantumreview.settings import Settings
from storage.db import Database

if TYPE_CHECKING:  # AppKey's type argument is a string here: these modules import keys.py themselves
    from quantumreview.delivery_fields import Arrival  # noqa: F401
    from quantumreview.github import GitHubApp  # noqa: F401
    from quantumreview.intake import IntakeWriter  # noqa: F401
    from quantumreview.jobs import JobRunner  # noqa: F401


settings = web.AppKey("settings", Settings)
db = web.AppKey("db", Database)
http = web.AppKey("http", aiohttp.ClientSession)
handlers = web.AppKey("handlers", HandlerRegistry)
# None in setup mode; replaced (not mutated) when the setup flow stores new credentials.
github = web.AppKey["GitHubApp | None"]("github")
credentials = web.AppKey("credentials", CredentialsHolder)
runner = web.AppKey["JobRunner"]("runner")
intake = web.AppKey["IntakeWriter[Arrival]"]("intake")
secret_box = web.AppKey("secret_box", SecretBox)

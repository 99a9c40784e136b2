"""Every piece of app state, as typed aiohttp AppKeys (one place, no globals)."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from quantumreview.credentials import CredentialsHolder
from quantumreview.crypto import SecretBox
from quantumreview.plugins import HandlerRegistry
from quantumreview.settings import Settings
from storage.db import Database

settings = web.AppKey("settings", Settings)
db = web.AppKey("db", Database)
http = web.AppKey("http", aiohttp.ClientSession)
handlers = web.AppKey("handlers", HandlerRegistry)
# The GitHub App client is hot-swapped when the setup flow stores new credentials, so it lives in a holder.
github = web.AppKey("github", Any)
credentials = web.AppKey("credentials", CredentialsHolder)
runner = web.AppKey("runner", Any)
intake = web.AppKey("intake", Any)
secret_box = web.AppKey("secret_box", SecretBox)

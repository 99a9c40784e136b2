"""HTML for the setup flow; every value from outside goes through html.escape."""

from __future__ import annotations

from html import escape

from quantumreview.setup_state import STATE_TTL_SECONDS

# Why a parameter: behind a proxy that serves this server under a path (PUBLIC_URL https://host/qr), a bare
# "/setup" link left the prefix out; the flow passes PUBLIC_URL's own setup address.
SETUP_PATH = "/setup"

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;line-height:1.5}"
    "button,.button{font-size:1rem;padding:.6rem 1.2rem;border-radius:6px;border:1px solid #1f883d;"
    "background:#1f883d;color:#fff;text-decoration:none;cursor:pointer}"
    ".secondary{background:#f6f8fa;color:#24292f;border-color:#d0d7de}"
    ".note{color:#57606a;font-size:.9rem}.error{color:#cf222e}input{font-size:1rem;padding:.4rem}"
)


def _lifetime(seconds: int) -> str:
    """"an hour", "10 minutes": how long a setup link works, as the page says it."""
    if seconds == 3600:
        return "an hour"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hours"
    return f"{max(1, seconds // 60)} minutes"


def page(title: str, body: str) -> str:
    """A complete HTML document; `body` must already be escaped."""
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{escape(title)} · QuantumReview</title><style>{STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def _overrides_note(overrides: list[str], html_url: str | None) -> str:
    """Which environment variables win over what GitHub generates for the App, and what to do about it."""
    if not overrides:
        return ""
    where = f"<a href=\"{escape(html_url)}\">the App's settings</a>" if html_url else "the App's settings on GitHub"
    notes = []
    if "GITHUB_WEBHOOK_SECRET" in overrides:
        notes.append("GITHUB_WEBHOOK_SECRET is set on this server and wins over the webhook secret GitHub "
                     "generates for the App: deliveries are refused until you enter the same value as the "
                     f"Webhook secret in {where}, or unset the variable and restart.")
    notes.extend(f"{escape(name)} are set on this server and win over the App's OAuth client for dashboard "
                 "login." for name in overrides if name != "GITHUB_WEBHOOK_SECRET")
    return "".join(f"<p class=\"note error\">{note}</p>" for note in notes)


def setup_page(*, action: str, manifest_json: str, organization: str, webhook_url: str, local: bool,
               overrides: list[str] | None = None, start: str = SETUP_PATH, token: str | None = None) -> str:
    """The page with the "Register GitHub App" button that posts the manifest to GitHub."""
    owner = f"the organization <strong>{escape(organization)}</strong>" if organization else "your personal account"
    warning = (
        "<p class=\"note error\">PUBLIC_URL is a local address, so GitHub cannot deliver webhooks to it. "
        "Use a webhook forwarder (see docs/deploy.md) or set PUBLIC_URL to a public address.</p>"
        if local else ""
    )
    return page("Set up QuantumReview", (
        "<p>No GitHub App is configured yet. Register one from this server's manifest: GitHub creates the App, "
        "then sends you back here and the server starts using it at once.</p>"
        f"<p>The App will be owned by {owner} and receive webhooks at "
        f"<code>{escape(webhook_url)}</code>.</p>{warning}{_overrides_note(overrides or [], None)}"
        f"<form method=\"post\" action=\"{escape(action)}\" id=\"register-form\">"
        f"<input type=\"hidden\" name=\"manifest\" value=\"{escape(manifest_json)}\">"
        "<button type=\"submit\" id=\"register\">Register GitHub App</button></form>"
        "<h2>Register it for an organization instead</h2>"
        f"<form method=\"get\" action=\"{escape(start)}\">"
        + (f"<input type=\"hidden\" name=\"token\" value=\"{escape(token)}\">" if token else "") +
        f"<label>Organization <input name=\"organization\" value=\"{escape(organization)}\" "
        "maxlength=\"39\" autocomplete=\"off\"></label> "
        "<button type=\"submit\" class=\"secondary\" id=\"use-organization\">Use this organization</button></form>"
        f"<p class=\"note\">This link works for {_lifetime(STATE_TTL_SECONDS)} and once.</p>"
    ))


def bad_public_url_page(public_url: str, problem: str) -> str:
    """PUBLIC_URL cannot be the base of the App's webhook and callback URLs."""
    return page("Set up QuantumReview", (
        f"<p class=\"error\">PUBLIC_URL <code>{escape(public_url)}</code> cannot be this server's address on "
        f"GitHub: {escape(problem)}. Set PUBLIC_URL to the address browsers and GitHub reach this server at, such as "
        "<code>https://quantumreview.example.com</code>, and restart. No App was registered.</p>"
    ))


def token_required_page() -> str:
    """/setup of a public server opened without the link from its log."""
    return page("Setup link needed", (
        "<p class=\"error\">This page registers the GitHub App this server will use, so it opens only from the "
        "link in the server's log: <code>no GitHub App configured: open …/setup?token=…</code> "
        "(on Fly.io: <code>fly logs</code>). The token keeps anyone else who finds this server from registering "
        "their own App on it before you do. Nothing was changed.</p>"
    ))


def bad_organization_page(organization: str, start: str = SETUP_PATH) -> str:
    """The organization name typed in is not a GitHub login."""
    return page("Set up QuantumReview", (
        f"<p class=\"error\">“{escape(organization)}” is not a valid organization name (letters, digits and "
        f"single hyphens, at most 39 characters).</p><p><a href=\"{escape(start)}\">Start again</a></p>"
    ))


def bad_state_page(start: str = SETUP_PATH, github_url: str = "https://github.com") -> str:
    """The callback's state is missing, wrong, expired or already used; the App may exist on GitHub all the same.

    Why say where: GitHub creates the App before it sends the browser back here, so after a refused callback the
    App is on GitHub (its name taken) and this server knows nothing of it.
    """
    apps = f"{github_url.rstrip('/')}/settings/apps"
    return page("Setup link not valid", (
        "<p class=\"error\">This setup link has expired, was already used, or was not started from this "
        f"browser. Nothing was stored.</p><p><a href=\"{escape(start)}\">Start again</a></p>"
        "<h2>If you already created the App on GitHub</h2>"
        "<p>GitHub creates the App before it sends you back here, so it may exist already. Find it under "
        f"<a href=\"{escape(apps)}\">Settings → Developer settings → GitHub Apps</a> (for an organization: the "
        "organization's Settings → Developer settings → GitHub Apps). Then either delete it and start again, or "
        "configure this server with it by hand: on the App's page note its App ID, generate a private key and set "
        "a webhook secret, then set <code>GITHUB_APP_ID</code>, <code>GITHUB_PRIVATE_KEY</code> (or "
        "<code>GITHUB_PRIVATE_KEY_PATH</code>) and <code>GITHUB_WEBHOOK_SECRET</code> on this server and "
        "restart it.</p>"
    ))


def conversion_failed_page(reason: str, start: str = SETUP_PATH) -> str:
    """GitHub did not turn the code into App credentials."""
    return page("GitHub App not registered", (
        f"<p class=\"error\">GitHub did not return the new App's credentials: {escape(reason)}. "
        "Nothing was stored.</p><p>If GitHub shows the App under Settings → Developer settings, delete it, "
        f"then <a href=\"{escape(start)}\">start again</a>.</p>"
    ))


def store_failed_page(html_url: str, start: str = SETUP_PATH) -> str:
    """The credentials came back but could not be saved."""
    return page("GitHub App not saved", (
        "<p class=\"error\">GitHub created the App but this server could not save its credentials.</p>"
        f"<p>Delete the App at <a href=\"{escape(html_url)}\">{escape(html_url)}</a>, "
        f"then <a href=\"{escape(start)}\">start again</a>.</p>"
    ))


def success_page(*, name: str, html_url: str, overrides: list[str] | None = None) -> str:
    """The App is registered and in use; the next step is installing it."""
    install = f"{html_url}/installations/new"
    return page("GitHub App registered", (
        f"<p>The GitHub App <strong>{escape(name)}</strong> is registered and this server is using it now; "
        f"no restart is needed.</p>{_overrides_note(overrides or [], html_url)}"
        f"<p><a class=\"button\" id=\"install\" href=\"{escape(install)}\">Install it on your repositories</a></p>"
        f"<p class=\"note\">You can change its settings at <a href=\"{escape(html_url)}\">{escape(html_url)}</a>."
        "</p>"
    ))


def installed_page(dashboard_url: str | None) -> str:
    """Where GitHub sends people after they install the App (the manifest's setup_url)."""
    link = ""
    if dashboard_url:
        link = f"<p><a class=\"button\" href=\"{escape(dashboard_url)}\">Open the dashboard</a></p>"
    return page("QuantumReview is installed", (
        "<p>The App is installed. It will comment on issues with acceptance criteria and check pull requests "
        f"from now on.</p>{link}"
    ))

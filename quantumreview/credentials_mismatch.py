"""Before a token mint's 404 marks an installation deleted for good: are these credentials this server's App?

Another App's id and key (a staging App's, say) get a 404 for every installation of the real App, at the mint
and at GET /app/installations/{id}, exactly as an uninstall does; taken for uninstalls, every installation was
marked deleted for good and its jobs cancelled. So a 404 means "deleted" only once the credentials are shown to be
the App of this server's installations, by any of:
- a token minted, or GitHub's record read, for one of the installations this server was asked to act for (their
  ids come from its own webhooks and database, and GitHub gives another App's credentials none of them);
- GitHub's record of another such installation, read at that moment (a few, the most recently asked first);
- the App id GitHub puts on this server's installation webhooks (`installation.app_id`) being the credentials'.
Webhooks from another App overrule the other two: credentials reaching some installation are still not the App
whose webhooks this server receives.
The proof is kept (a GitHubApp's credentials never change), so a normal mint costs no request more. Without it the
installation is tried again later. Webhooks from another App than the credentials', or two installations that the
credentials' App does not have while it has none of the others, are logged once as an error and kept in `problem`
for the operator.
While a 404 is not judged, token mints wait (`hold`, `waiting`): those of that installation, or all of them once
the credentials look like another App's, until the recheck time, when one mint asks GitHub again. Why: the job
runner retries those jobs uncounted, so without a wait every job would mint (and read records) at each recheck,
against the other App's rate limit.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

CHECK_OTHERS = 3  # other installations read from GitHub before a 404 is judged, the most recently asked first
MAX_ASKED = 1000  # installation ids remembered (the most recently asked)
MAX_NAMED = 5  # installation ids named in the error

# GET /app/installations/{id} for another installation: True (the App has it), False (404), None (cannot tell).
Lookup = Callable[[int], Awaitable[bool | None]]
# A name for the credentials' App, e.g. "App 2 (quantumreview-staging)", from GET /app.
Describe = Callable[[], Awaitable[str]]

log = logging.getLogger("quantumreview.github")


class CredentialsCheck:
    """What this process knows about whose credentials it holds; one per GitHubApp."""

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self._asked: OrderedDict[int, None] = OrderedDict()
        self._proven = False
        self._webhook_app_id: int | None = None
        self._missing: set[int] = set()  # asked-for installations that the credentials' App does not have
        self._held: OrderedDict[int, float] = OrderedDict()  # installation id -> no mint before (not judged)
        self._held_all: float | None = None  # while `problem` holds: no mint of any installation before
        self.problem: str | None = None

    @property
    def _own_id(self) -> int | None:
        return int(self.app_id) if self.app_id.isdigit() else None

    @property
    def webhook_app_id(self) -> int | None:
        """The App id on the latest webhook noted (None before any): kept by the job runner across restarts."""
        return self._webhook_app_id

    @property
    def shown(self) -> bool:
        """Whether the credentials are shown to be the App of this server's installations: a 404 is then judged at
        once (the job runner wakes the jobs that waited for this)."""
        if self._webhook_app_id is not None:
            return self._webhook_app_id == self._own_id
        return self._proven

    def hold(self, installation_id: int, until: float) -> None:
        """A 404 was not judged: no mint of this installation (of any, while `problem` holds) before `until`."""
        if self.problem is not None:
            self._held_all = until
            return
        self._held[installation_id] = until
        self._held.move_to_end(installation_id)
        while len(self._held) > MAX_ASKED:
            self._held.popitem(last=False)

    def waiting(self, installation_id: int, now: float, in_flight: float) -> float | None:
        """The time before which a mint of the installation must not ask GitHub, or None: then this mint is the
        recheck, and the others wait `in_flight` seconds more (its 404 holds them again, its token frees them)."""
        if self.problem is not None and self._held_all is not None:
            if now < self._held_all:
                return self._held_all
            self._held_all = now + in_flight
            return None
        until = self._held.get(installation_id)
        if until is None:
            return None
        if now < until:
            return until
        self._held[installation_id] = now + in_flight
        return None

    def _release(self) -> None:
        """The credentials are shown right: mints no longer wait."""
        self._held.clear()
        self._held_all = None

    def asked(self, installation_id: int) -> None:
        """Remember an installation this server acts for (the newest last)."""
        self._asked[installation_id] = None
        self._asked.move_to_end(installation_id)
        while len(self._asked) > MAX_ASKED:
            self._asked.popitem(last=False)

    def reached(self, installation_id: int) -> None:
        """The credentials minted a token for, or read GitHub's record of, an installation this server acts for."""
        if installation_id not in self._asked:
            return
        self._proven = True
        self._missing.discard(installation_id)
        self._held.clear()  # their 404s waited for this proof
        if self.problem is not None and self._webhook_app_id in (None, self._own_id):
            log.warning("GitHub App credentials (App %s) reached installation %d: the earlier credentials error "
                        "no longer holds", self.app_id, installation_id)
            self.problem = None
            self._release()

    def note_webhook_app(self, app_id: object) -> None:
        """Remember the App id GitHub put on one of this server's webhooks (`installation.app_id`)."""
        if isinstance(app_id, int) and not isinstance(app_id, bool) and app_id > 0:
            self._webhook_app_id = app_id
            # Why clear: the credentials are then the webhooks' App (another key's JWT gets 401, not 404), so an
            # error guessed from 404s alone (`_missing`) no longer holds, and no mint may come to clear it.
            if app_id != self._own_id:
                return
            self._release()
            if self.problem is not None:
                log.warning("this server's webhooks come from App %s, whose credentials are in use: the earlier "
                            "credentials error no longer holds", self.app_id)
                self.problem = None

    async def deleted(self, installation_id: int, lookup: Lookup, describe: Describe) -> bool:
        """After a mint and GET /app/installations/{id} both answered 404: True when that means the installation
        is gone, False when the credentials are not shown to be this server's App (then try again later)."""
        # Why the webhooks' word first: credentials reaching some installation (one of theirs stored from an
        # earlier time, say) are not this server's App when its webhooks come from another.
        if self._webhook_app_id is not None:
            if self._webhook_app_id == self._own_id:
                return True
            await self._report(describe, f"this server's webhooks come from App {self._webhook_app_id}: token "
                                         f"mints for its installations answer 404 (installation {installation_id})")
            return False
        if self._proven:
            return True
        others = [i for i in reversed(self._asked) if i != installation_id and i not in self._missing]
        for other in others[:CHECK_OTHERS]:
            found = await lookup(other)
            if found is None:
                break  # GitHub cannot tell now: judge later rather than read more
            if found:
                self.reached(other)
                return True
            self._missing.add(other)
        self._missing.add(installation_id)
        if len(self._missing) >= 2:
            named = ", ".join(str(i) for i in sorted(self._missing)[:MAX_NAMED])
            await self._report(describe, f"that App has none of the installations this server acts for: GitHub "
                                         f"answers 404 for {named}{' …' if len(self._missing) > MAX_NAMED else ''}")
        return False

    async def _report(self, describe: Describe, why: str) -> None:
        """Log the error once, and keep it where the operator can read it."""
        if self.problem is not None:
            return
        name = await describe()
        if self.problem is not None:  # another installation's check reported it meanwhile
            return
        self.problem = (f"The GitHub App credentials in use (GITHUB_APP_ID and GITHUB_PRIVATE_KEY, or those stored "
                        f"by /setup) are those of {name}, but {why}. They look like another App's; no "
                        "installation is marked deleted meanwhile, and their jobs are tried again later. Configure "
                        "the credentials of the App whose webhooks this server receives.")
        log.error("%s", self.problem)

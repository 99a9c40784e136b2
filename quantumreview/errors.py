"""Errors shared by the GitHub client, the job runner and handlers; each carries a stable code."""

from __future__ import annotations

import math


class QuantumReviewError(Exception):
    """Base class: `code` is stable and machine-readable, the message is for people."""

    code = "error"


class RetryLater(QuantumReviewError):
    """Transient failure: the job runner should retry, not before `at` (epoch seconds) when given."""

    code = "retry_later"

    def __init__(self, reason: str, *, at: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.at = at

    def seconds_left(self, now: float, default: int) -> int:
        """Whole seconds from `now` until `at` (at least 1), or `default` when GitHub gave no time: a Retry-After."""
        return default if self.at is None else max(1, math.ceil(self.at - now))


class RateLimited(RetryLater):
    """GitHub rate limit (primary or secondary): retry at `at`, never busy-loop."""

    code = "rate_limited"


class CredentialsUnproven(RetryLater):
    """A token mint answered 404 (or was not asked for since one did) while the App credentials are not shown to
    be the App of this server's installations: another App's, or nothing shows it yet (quantumreview.
    credentials_mismatch). The job runner puts the job back uncounted, until `at` or until the credentials are
    replaced or shown right; a RetryLater, so code that retries those retries it too."""

    code = "credentials_unproven"


class PermanentError(QuantumReviewError):
    """A failure that retrying cannot fix: the job ends as failed at once."""

    code = "permanent"


class PermissionDenied(PermanentError):
    """GitHub says the App lacks a permission (403 without a rate-limit signal)."""

    code = "permission_denied"


class InstallationGone(PermanentError):
    """The installation was deleted or the repository is no longer reachable (404/410)."""

    code = "installation_gone"


class InstallationSuspended(QuantumReviewError):
    """The installation is suspended: its jobs wait until it is unsuspended."""

    code = "installation_suspended"


class InstallationDeleted(InstallationGone):
    """Minting the installation's token answered 404, and GitHub's installation record agrees: the installation
    itself is gone, not one resource.

    The job runner records it as deleted (as the `installation.deleted` webhook would), which a 404 from
    `gone_when_missing` (a removed or renamed repository) must not do.
    """

    def __init__(self, reason: str, *, installation_id: int) -> None:
        super().__init__(reason)
        self.installation_id = installation_id


class InstallationSuspendedByGitHub(InstallationSuspended):
    """Minting the installation's token answered 403 and GitHub lists it suspended: the job runner records it."""

    def __init__(self, reason: str, *, installation_id: int) -> None:
        super().__init__(reason)
        self.installation_id = installation_id


class ArtifactError(PermanentError):
    """An artifact cannot be used: expired, too large, no redirect, not a zip."""

    code = "artifact_error"

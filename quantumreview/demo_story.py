"""The demo's story: install, an issue and its edit, a pull request, a failing then a passing CI run.

Each step changes the fake GitHub the way GitHub would change, sends the matching signed delivery, waits for
the job queue to drain, and prints what QuantumReview posted back — read from the fake, exactly as posted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from quantumreview import demo_fixtures as data

if TYPE_CHECKING:
    from quantumreview.demo import DemoEnv

STEPS = 8
INDENT = "    │ "
# The checklist comment ends with the same tagging help every time: shown in full once, then cut here.
HELP_HEADING = "### How to tag tests"
ADMIN = {"admin": True, "maintain": True, "push": True, "triage": True, "pull": True}


class Narrator:
    """Writes numbered progress lines and the posted texts, indented so they stand apart."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.step = 0
        self.shown_help = False

    def progress(self, text: str) -> None:
        """One numbered step line: "[3/8] Opening ... ..."."""
        self.step += 1
        self.out.write(f"\n[{self.step}/{STEPS}] {text} ...\n")
        self.out.flush()

    def say(self, text: str) -> None:
        """A plain line under the current step."""
        self.out.write(f"  {text}\n")

    def quote(self, title: str, body: str | None) -> None:
        """A posted text, verbatim, under a heading."""
        self.out.write(f"  {title}:\n")
        for line in (body or "(empty)").rstrip("\n").splitlines():
            self.out.write(f"{INDENT}{line}".rstrip() + "\n")


def bot_comments(env: DemoEnv, number: int) -> list[dict[str, Any]]:
    """The comments on an issue or pull request (only the App writes any in the demo)."""
    return list(env.fake.comments.get((data.REPO, number), []))


def check_runs_for(env: DemoEnv, head_sha: str) -> list[dict[str, Any]]:
    """The check runs posted on a commit."""
    return [r for r in env.fake.check_runs.get(data.REPO, []) if r.get("head_sha") == head_sha]


def show_comment(env: DemoEnv, story: Narrator, number: int, what: str) -> None:
    """Print the one comment on #number (and say how many there are)."""
    comments = bot_comments(env, number)
    if not comments:
        story.say(f"(no comment on #{number})")
        return
    count = "one comment, edited in place" if len(comments) == 1 else f"{len(comments)} comments"
    body = str(comments[-1].get("body") or "")
    if HELP_HEADING in body:
        if story.shown_help:
            body = body.split(HELP_HEADING, 1)[0] + "(… the tagging help shown in step 3, unchanged)"
        story.shown_help = True
    story.quote(f"{what} on #{number} ({count})", body)


def show_check_run(env: DemoEnv, story: Narrator, head_sha: str) -> dict[str, Any] | None:
    """Print the check run on head_sha: its state and its output (title, summary, details)."""
    runs = check_runs_for(env, head_sha)
    if not runs:
        story.say(f"(no check run on {head_sha[:7]})")
        return None
    run = runs[-1]
    output: Mapping[str, Any] = run.get("output") or {}
    verdict = run.get("conclusion") or run.get("status")
    story.say(f"Check run {run.get('name')!r} on {head_sha[:7]}: {str(verdict).upper()}"
              f" ({len(runs)} check run(s) on this commit)")
    story.quote("title", output.get("title"))
    story.quote("summary", output.get("summary"))
    if str(output.get("text") or "").strip():
        story.quote("details", output.get("text"))
    annotations = env.fake.check_run_annotations.get(int(run["id"]), [])
    for note in annotations:
        story.say(f"annotation {note.get('annotation_level')} {note.get('path')}:{note.get('start_line')}: "
                  f"{note.get('title') or ''} {note.get('message')}".rstrip())
    return run


async def install(env: DemoEnv, story: Narrator) -> None:
    """The App is installed on the sample repository; the demo user, who administers it, logs in."""
    story.progress(f"Installing the App on {data.REPO} (installation.created)")
    installation = env.fake.add_installation(data.INSTALLATION_ID, account=data.OWNER, repositories=[data.REPO])
    env.fake.add_user(data.DEMO_LOGIN, data.DEMO_USER_ID, installations={data.INSTALLATION_ID: [data.REPO]},
                      permissions={data.REPO: ADMIN})
    env.fake.authorize_as(data.DEMO_LOGIN)
    repository = env.fake.state.repos[data.REPO]
    await env.deliver("installation", data.installation_created(installation, [repository]))
    await env.wait_idle()
    me = await env.log_in("/api/me")
    story.say(f"Installation {data.INSTALLATION_ID} recorded. {me['login']} logged in through the fake GitHub's "
              f"OAuth and manages {me['repositories']} repository: they will get notifications from now on.")


async def open_issue(env: DemoEnv, story: Narrator) -> dict[str, Any]:
    """An issue with four acceptance criteria gets a checklist comment with test IDs."""
    story.progress(f"Opening issue #{data.ISSUE_NUMBER} with 4 acceptance criteria (issues.opened)")
    issue = env.fake.add_issue(data.REPO, data.ISSUE_NUMBER, title=data.ISSUE_TITLE, body=data.ISSUE_BODY)
    story.quote("issue body", data.ISSUE_BODY)
    await env.deliver("issues", data.issue_event("opened", env.fake.state.repos[data.REPO], issue))
    await env.wait_idle()
    show_comment(env, story, data.ISSUE_NUMBER, "QuantumReview's checklist")
    return issue


async def edit_issue(env: DemoEnv, story: Narrator, issue: dict[str, Any]) -> None:
    """Rewording a criterion keeps its ID; a new criterion gets the next one."""
    story.progress(f"Editing issue #{data.ISSUE_NUMBER}: criterion 2 reworded, criterion 5 added (issues.edited)")
    issue["body"] = data.EDITED_ISSUE_BODY  # the fake serves this dict: the handler re-reads the issue from it
    before, after = set(data.ISSUE_BODY.splitlines()), data.EDITED_ISSUE_BODY.splitlines()
    for line in (line for line in after if line not in before):
        story.say(f"new or reworded: {line.removeprefix('- [ ] ')}")
    await env.deliver("issues", data.issue_event("edited", env.fake.state.repos[data.REPO], issue,
                                                 previous_body=data.ISSUE_BODY))
    await env.wait_idle()
    show_comment(env, story, data.ISSUE_NUMBER, "QuantumReview's checklist")


async def push_commit(env: DemoEnv, story: Narrator, head_sha: str, tests: tuple[tuple[str, str], ...],
                      *, before: str | None) -> None:
    """Open the pull request (before=None) or push a new head to it; print the manifest check run and comment."""
    pull = env.fake.add_pull(data.REPO, data.PULL_NUMBER, title=data.PULL_TITLE, body=data.PULL_BODY,
                             head_sha=head_sha, head_ref="discount-codes", files=data.pull_files(tests))
    repository = env.fake.state.repos[data.REPO]
    if before is None:
        story.quote("pull request body", data.PULL_BODY)
        payload = data.pull_request_event("opened", repository, pull)
    else:
        payload = data.pull_request_event("synchronize", repository, pull, before=before)
    story.say(f"{data.TEST_FILE} at {head_sha[:7]} has tests for {', '.join(tid for tid, _ in tests)}")
    await env.deliver("pull_request", payload)
    await env.wait_idle()
    show_check_run(env, story, head_sha)
    show_comment(env, story, data.PULL_NUMBER, "QuantumReview's pull request comment")


async def finish_ci(env: DemoEnv, story: Narrator, run_id: int, head_sha: str, junit: bytes, health: bytes,
                    conclusion: str) -> None:
    """A workflow run completes with the report artifact; print the verdict, the health and the checklist."""
    run = env.fake.add_workflow_run(data.REPO, run_id, head_sha=head_sha, conclusion=conclusion,
                                    pull_requests=[data.PULL_NUMBER],
                                    artifacts=data.report_artifacts(junit, health))
    story.say(f"workflow run {run_id} on {head_sha[:7]} finished ({conclusion}) with autoqa-test-report.xml "
              f"and code_health.json")
    await env.deliver("workflow_run", data.workflow_run_completed(env.fake.state.repos[data.REPO], run))
    await env.wait_idle()
    show_check_run(env, story, head_sha)
    show_comment(env, story, data.PULL_NUMBER, "QuantumReview's pull request comment")
    show_comment(env, story, data.ISSUE_NUMBER, "the checklist")


async def summarise(env: DemoEnv, story: Narrator) -> None:
    """What GitHub holds now, and what the dashboard API shows the demo user."""
    story.out.write("\nOn the fake GitHub now:\n")
    story.say(f"issue #{data.ISSUE_NUMBER}: {len(bot_comments(env, data.ISSUE_NUMBER))} comment(s); "
              f"pull request #{data.PULL_NUMBER}: {len(bot_comments(env, data.PULL_NUMBER))} comment(s)")
    for run in env.fake.check_runs.get(data.REPO, []):
        story.say(f"check run on {str(run.get('head_sha'))[:7]}: {run.get('conclusion') or run.get('status')}")
    notes = await env.get_json("/api/notifications")
    items = notes.get("items") or [] if isinstance(notes, dict) else []
    story.out.write(f"\nNotifications for {data.DEMO_LOGIN} (GET /api/notifications):\n")
    for note in items:
        story.say(f"- {note.get('title')}")


async def play_story(env: DemoEnv, out: TextIO) -> None:
    """Play every step in order."""
    story = Narrator(out)
    story.progress("Started the fake GitHub and the QuantumReview server")
    story.say(f"fake GitHub: {env.fake.url}   QuantumReview: {env.base_url}   "
              f"database: {env.settings.database_path}")
    await install(env, story)
    issue = await open_issue(env, story)
    await edit_issue(env, story, issue)
    story.progress(f"Opening pull request #{data.PULL_NUMBER} that links #{data.ISSUE_NUMBER} (pull_request.opened)")
    await push_commit(env, story, data.FIRST_SHA, data.FIRST_TESTS, before=None)
    story.progress("CI finished: T2 fails, T3 has no test yet (workflow_run.completed)")
    await finish_ci(env, story, data.FIRST_RUN_ID, data.FIRST_SHA,
                    data.junit_report(data.FIRST_TESTS, data.FIRST_FAILURES),
                    data.health_report(data.FIRST_FINDINGS), "failure")
    story.progress("Pushing a fix: T2 repaired, a T3 test added (pull_request.synchronize)")
    await push_commit(env, story, data.FIXED_SHA, data.FIXED_TESTS, before=data.FIRST_SHA)
    story.progress("CI finished again: every test passes (workflow_run.completed)")
    await finish_ci(env, story, data.FIXED_RUN_ID, data.FIXED_SHA, data.junit_report(data.FIXED_TESTS, {}),
                    data.health_report(data.FIXED_FINDINGS), "success")
    await summarise(env, story)


def print_browse_hints(env: DemoEnv, out: TextIO) -> None:
    """How to log in and browse the JSON API while the server keeps running."""
    base, repo = env.base_url, data.REPO
    out.write(f"\nQuantumReview keeps running at {base} (Ctrl-C to stop).\n")
    out.write(f"Log in as {data.DEMO_LOGIN} (the fake GitHub approves at once) by opening:\n")
    out.write(f"  {base}/auth/github?next=/api/me\n")
    out.write("Then browse the JSON API:\n")
    for path in ("/api/me", f"/api/repos/{repo}/issues/{data.ISSUE_NUMBER}",
                 f"/api/repos/{repo}/prs/{data.PULL_NUMBER}", "/api/notifications"):
        out.write(f"  {base}{path}\n")

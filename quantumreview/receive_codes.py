"""The exit codes of `quantumreview receive`, apart so the command line's --help can name them at no import cost."""

from __future__ import annotations

# 0 is kept for "every matching handler ran": scripts written before skips were told apart still see success.
OK, FAILED, BAD_INPUT, SKIPPED = 0, 1, 2, 3
EXIT_CODES_HELP = (
    "exit codes: 0 every matching handler ran (or none matched); 1 a handler failed; 2 the event name or payload "
    "cannot be used; 3 none failed, but a handler skipped: it needed GitHub and had none (no GitHub App is "
    "configured, or the event carries no installation); 130 interrupted"
)

"""Process exit codes shared by the services and the supervisor that restarts them."""

OK = 0
# A condition no restart can fix (bad credentials, no data plan, expired token, bad config):
# the service has said what is wrong and how to fix it; a supervisor must NOT restart it.
FATAL = 78  # EX_CONFIG in sysexits.h
# Interrupted by the user (Ctrl-C): not a crash.
INTERRUPTED = 130

NO_RESTART = frozenset({FATAL})

#!/bin/sh
# example-exec.sh — a handler for scaleno-worker(8)'s "exec" protocol.
#
# scaleno runs it once per message, with the message as one JSON object on
# stdin and SCALENO_QUEUE, SCALENO_STREAM, SCALENO_ID and SCALENO_DELIVERY
# in the environment. The exit status is the verdict:
#   0 done, 75 (EX_TEMPFAIL) retry later, 65 (EX_DATAERR) never retry,
#   anything else (or a signal, or worker.timeout) retry.
# Write diagnostics to stderr; they land in the worker's log.
#
#   worker: { command = [ "/usr/local/libexec/example-exec.sh" ]; protocol = "exec"; };
set -u

msg=$(cat) || exit 75

# jq, when present, makes fields easy to read; without it, just log the size.
if command -v jq >/dev/null 2>&1; then
	url=$(printf '%s' "$msg" | jq -er '.fields.url') || {
		echo "example-exec: message $SCALENO_ID has no url field" >&2
		exit 65
	}
	# Log ids, never message content (it may be personal data).
	echo "example-exec: message $SCALENO_ID: would fetch ${#url}-byte url" >&2
else
	echo "example-exec: message $SCALENO_ID, ${#msg} bytes, delivery $SCALENO_DELIVERY" >&2
fi

# A transient failure (a network error, say) would be: exit 75
exit 0

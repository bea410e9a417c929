"""How large a message may be on each path, in one place, so that the two ends of every
channel agree and whatever the service stores can be read back through every path.

- A REST body is at most MAX_BODY_BYTES (413 beyond).
- The gateway makes a gRPC request of at most GATEWAY_MAX_REQUEST_BYTES from such a body (the
  body re-encoded compactly, plus the ids and framing); the gRPC server must receive at least
  this much (see grpc/server.py), or a valid REST write could not be made. Only a body whose
  numbers grow when written out (`1e15` is `1000000000000000.0`) can exceed it: 413.
- An answer (one assignment or segment, or a page) is at most MAX_ANSWER_BYTES: the server's
  send limit and the gateway's receive limit. One stored object is never cut: this is room
  for the largest one the server accepts, even once its numbers are written out.
- A page holds as many items as fit in PAGE_BUDGET_BYTES, under the 4 MiB that a gRPC client
  receives by default, and always at least one: a page that would be larger ends early, with
  the cursor of the rest (next_page_token / X-Next-Cursor).
"""

from __future__ import annotations

MIB = 1024 * 1024

MAX_BODY_BYTES = 10 * MIB
GATEWAY_MAX_REQUEST_BYTES = MAX_BODY_BYTES + MIB
MAX_ANSWER_BYTES = 64 * MIB
# grpc's default max_receive_message_length, less room for the HTTP/2 and gRPC framing and
# for cursors longer than the ones the page was first measured with.
DEFAULT_CLIENT_RECEIVE_BYTES = 4 * MIB
PAGE_BUDGET_BYTES = DEFAULT_CLIENT_RECEIVE_BYTES - 64 * 1024
# A caller's request id (REST X-Request-Id, gRPC x-request-id), logged and passed on.
MAX_REQUEST_ID_LENGTH = 128

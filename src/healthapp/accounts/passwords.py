"""The password policy: what a user may choose as a password (SPEC §4: at least 10 long).

Checked where a password is chosen (registration, a change, the first admin on the command
line); hashing and verifying belong to authentication (``healthapp.auth.passwords``).
"""

from __future__ import annotations

MIN_PASSWORD_LENGTH = 10
#: Any passphrase fits; a longer body would only make each hash cost more to compute.
MAX_PASSWORD_LENGTH = 256

"""Who the caller is and what they may do: password hashing, token checks, the access policy."""

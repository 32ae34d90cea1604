"""Users, their profile (1:1) and their diseases (1:n)."""

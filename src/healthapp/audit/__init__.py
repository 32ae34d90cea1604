"""The audit trail: who read or changed whose health data, when (HIPAA audit controls)."""

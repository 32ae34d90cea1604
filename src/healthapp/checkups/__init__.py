"""Check-ups taken by the instruments and bulk-uploaded by the mobile client."""

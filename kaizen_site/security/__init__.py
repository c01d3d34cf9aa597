"""The console's door: owners only, past a second factor, from allowed addresses, with every
session recorded and revocable, and every action in the audit log."""

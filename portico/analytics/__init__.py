"""Usage analytics: the reports REST API and its export (the data backups leave out)."""

"""Disaster recovery: backup and restore of services.

`portico.dr.storage` (blob storage backends) and `portico.dr.archive` (the backup format) are the
building blocks; the operations that use them live beside them.
"""

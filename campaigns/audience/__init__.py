"""Who receives: contact lists imported from CSV (validated, normalised addresses), the
warning when an import changes attributes a campaign relies on, CSV cells made safe for
spreadsheets. Writes contacts and lists, never the ledger.

May import: models, db, errors, settings. Never the ledger, delivery, Celery or Redis."""

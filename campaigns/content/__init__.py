"""What a message is made of: templates (sandboxed Jinja2 with limits), rendering,
MIME building, attachments, our headers and signed tokens, the preflight and test copies.
Reads the database (a campaign's template and contacts); writes nothing of the ledger.

May import: ledger.reads, models, db, errors, settings, rates.windows. Never delivery,
intake or Celery."""

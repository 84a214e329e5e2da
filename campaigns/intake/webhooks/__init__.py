"""Provider webhooks: what SES (through SNS), SendGrid, Mailgun and Postmark report about
our messages, verified as each provider documents and fed to the same intake as returned
messages (`campaigns.intake.apply`), so one suppression policy holds for every source.

One module per provider (`verify`, `events`); `common` holds the shared types and the
ledger step; `config` the `[webhooks]` TOML table. The HTTP side is `campaigns.web.webhooks`."""
from __future__ import annotations

from functools import partial

from campaigns.intake.webhooks import mailgun, postmark, sendgrid, ses
from campaigns.intake.webhooks.common import (MalformedPayload, Provider, ProviderEvent,
                                       WebhookError, WebhookRejected, WebhookRequest,
                                       WebhookUnavailable, record_events)
from campaigns.intake.webhooks.config import WebhookConfig, load_webhook_config

__all__ = ["MalformedPayload", "Provider", "ProviderEvent", "WebhookConfig", "WebhookError",
           "WebhookRejected", "WebhookRequest", "WebhookUnavailable", "load_webhook_config",
           "providers", "record_events"]


def providers(*, fetch: ses.Fetch = ses.fetch_url,
              certificates: ses.CertificateCache | None = None,
              tokens: mailgun.TokenCache | None = None) -> dict[str, Provider]:
    """Every provider by the name in its URL. `fetch` is how SNS certificates and
    subscription URLs are fetched (tests pass their own); the caches default to the
    process-wide ones."""
    certs = certificates or ses.CERTIFICATES
    return {
        ses.NAME: Provider(ses.NAME, partial(ses.verify, fetch=fetch, certificates=certs),
                           ses.events, partial(ses.confirm_subscription, fetch=fetch)),
        sendgrid.NAME: Provider(sendgrid.NAME, sendgrid.verify, sendgrid.events),
        mailgun.NAME: Provider(mailgun.NAME,
                               partial(mailgun.verify, tokens=tokens or mailgun.TOKENS),
                               mailgun.events),
        postmark.NAME: Provider(postmark.NAME, postmark.verify, postmark.events),
    }

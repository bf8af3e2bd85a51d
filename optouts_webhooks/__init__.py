"""optouts-webhooks: the providers' opt-out webhooks received and propagated in seconds."""

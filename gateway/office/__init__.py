"""The back office: transactions listed and exported, from the core's transactions database."""

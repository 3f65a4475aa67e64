"""Issuing for card bureaus: personalization jobs (the job file format) and the bureau's results."""
